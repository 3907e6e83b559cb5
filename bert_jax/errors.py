"""The exceptions a user sees as a single line (the CLI prints them without a traceback)."""


class UserError(Exception):
  """Bad input the user can fix; the message says what is wrong and what to do. Exit status 2."""
  exit_code = 2


class RunError(UserError):
  """A run that cannot go on for a reason outside its input (a full disk, a failed write); the message names the
  cause and what was kept. Exit status 1."""
  exit_code = 1


def is_disk_full(error: BaseException) -> bool:
  """Whether an error (or one that caused it) is a full disk or quota, from the OS, TensorFlow or TensorStore."""
  import errno

  current: BaseException | None = error
  while current is not None:
    if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if "no space left on device" in str(current).lower():
      return True
    current = current.__cause__ or current.__context__
  return False
