"""The one exception type a user sees as a single line (the CLI prints it without a traceback)."""


class UserError(Exception):
  """Bad input the user can fix; the message says what is wrong and what to do."""
