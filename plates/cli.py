"""``plates`` command line: one subcommand per pipeline stage.

Each stage module exposes ``COMMANDS = {name: (configure, run, help)}`` where ``configure(parser)`` adds the
arguments and ``run(args) -> int`` does the work. Modules keep heavy imports (torch, swift) inside functions so
``plates --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import signal
import sys

from plates import __version__
from plates.errors import Terminated, UserError
from plates.signals import terminate_like_interrupt
from plates.outputs import guard_command, path_options

STAGE_MODULES = (
    "plates.parse",
    "plates.teaching.stage",
    "plates.build",
    "plates.tiny_model",
    "plates.train",
    "plates.infer",
    "plates.evaluate",
    "plates.schema",
    "plates.demo",
    "plates.predict",
    "plates.serve",
    "plates.export",
    "plates.audit",
)

EPILOG = """pipeline: parse -> teach -> build -> train -> infer -> eval (see README.md; `plates demo` runs it all on CPU)."""


def _load_commands() -> dict:
    commands = {}
    for name in STAGE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        commands.update(module.COMMANDS)
    return commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plates",
        description="Teach a Qwen vision-language model to read vehicles and licence plates and answer in JSON.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"plates {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (configure, run, help_text) in _load_commands().items():
        p = sub.add_parser(name, help=help_text, description=inspect.cleandoc(run.__doc__ or help_text),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        configure(p)
        p.set_defaults(_run=run, _path_options=path_options(p))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. SIGTERM and SIGHUP are handled like Ctrl-C (see :mod:`plates.signals`): the command
    stops its children and removes its temporary files, finished work stays, one line says so, and the exit
    status is 128 + the signal number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    with terminate_like_interrupt():
        code = _main(argv)
    if argv is None:  # the program itself, done: a late Ctrl-C or SIGTERM must not print a traceback at exit
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
    return code


def _main(argv: list[str] | None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except UserError as exc:  # the stage modules read labels/ as they load: an edited table that breaks a rule
        print(f"plates: error: {exc}", file=sys.stderr)
        return 2
    except Terminated as exc:
        print(f"plates: terminated ({exc.name})", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:  # Ctrl-C while the stage modules load: nothing started, nothing to show
        print("plates: interrupted", file=sys.stderr)
        return 130
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        guard_command(args)  # every declared output, before the command can write anything
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"plates {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Terminated as exc:
        print(f"plates {args.command}: terminated ({exc.name}); what was finished is kept, temporary files "
              "removed, children stopped", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print(f"plates {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
