"""The one error type meant for the user rather than for a traceback.

Every error whose message says what went wrong and what to do derives from
`UserError`, so the entry points print it as one line (`error: ...`) and exit,
while any other exception keeps its traceback for a bug report.
"""


class UserError(Exception):
  """A one-line message for the user: what is wrong and what to do about it."""
