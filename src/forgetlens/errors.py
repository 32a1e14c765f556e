"""The one exception type forgetlens raises for problems a user can fix.

The CLI turns a :class:`ForgetlensError` into a single line on stderr and a
non-zero exit; anything else is a bug and keeps its traceback.
"""


class ForgetlensError(Exception):
    """A user-facing error: the message names the file, field or option and what was expected."""
