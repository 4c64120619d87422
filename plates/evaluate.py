"""`plates eval` and `plates compare`: kept as the stage module `plates.cli` loads and as the import path older
code uses. The implementation lives in the :mod:`plates.evaluation` package, one small module per step."""

from plates.evaluation import *  # noqa: F401,F403 - the public names, re-exported
from plates.evaluation import __all__ as _public
from plates.evaluation.cli import COMMANDS

__all__ = [*_public, "COMMANDS"]
