"""`plates eval` and `plates compare`: kept as the stage module `plates.cli` loads and as the import path older
code uses. The implementation lives in the :mod:`plates.evaluation` package, one small module per step."""

from plates.evaluation import *  # noqa: F401,F403 - the public names, re-exported
from plates.evaluation import __all__ as _public
from plates.evaluation.cli import COMMANDS, _configure_compare, _configure_eval, _run_compare, _run_eval  # noqa: F401
from plates.evaluation.plots import _cjk_font  # noqa: F401 - patched by tests of the ASCII fallback

__all__ = [*_public, "COMMANDS"]
