"""`plates eval` and `plates compare`: the stage module `plates.cli` loads. The subcommands live in
:mod:`plates.evaluation.cli`, the scoring library in the :mod:`plates.evaluation` package, one small module per
step (import from those modules)."""

from plates.evaluation.cli import COMMANDS

__all__ = ["COMMANDS"]
