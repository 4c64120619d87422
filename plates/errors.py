"""The one exception type that means 'the user asked for something we cannot do'.

The CLI prints its message as a one-line error and exits 2; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input, a missing file, an invalid option: reported without a traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C raises KeyboardInterrupt (see :mod:`plates.signals`), so every
    path that already stops children, removes temporary files and keeps finished work on Ctrl-C does the same
    when `timeout`, `kill`, a scheduler or a closed terminal ends the command. ``signum`` sets the exit status
    (128 + signum: 143 for SIGTERM, 129 for SIGHUP)."""

    def __init__(self, signum: int):
        import signal

        self.signum = int(signum)
        self.name = signal.Signals(self.signum).name
        super().__init__(self.name)
