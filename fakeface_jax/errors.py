"""The one error type meant for the user: every entry point prints it as a single line.

A `UserError` says what went wrong and what to do, in one line (`str(error)`); entry
points print it as `error: MESSAGE` on stderr and exit non-zero, without a traceback.
Anything else that escapes is a bug, and keeps its traceback.
"""


class UserError(Exception):
  """A mistake or condition the user can act on; the message is one line."""
