"""The one exception type that means 'the user asked for something we cannot do'.

The CLI prints its message as a one-line error and exits 2; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input, a missing file, an invalid option: reported without a traceback."""
