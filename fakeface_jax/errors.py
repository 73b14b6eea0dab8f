"""The error types meant for the user: every entry point prints them as a single line.

A `UserError` says what went wrong and what to do, in one line (`str(error)`); entry
points print it as `error: MESSAGE` on stderr and exit non-zero, without a traceback.
Anything else that escapes is a bug, and keeps its traceback.
"""


class UserError(Exception):
  """A mistake or condition the user can act on; the message is one line."""


class ConfigError(UserError, ValueError):
  """A config that cannot work; the message is one line meant for the user."""
