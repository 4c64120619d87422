"""The command line itself: every subcommand's ``--help`` renders (argparse %-formats help strings, so a stray
``%`` in one crashed ``plates demo --help``); walking the parser covers the next subcommand added too."""

from __future__ import annotations

import argparse

import pytest

from plates.cli import build_parser, main


def _subcommands() -> list[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("plates has no subcommands")


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_help_renders(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out, err = capsys.readouterr()
    assert f"usage: plates {command}" in out
    assert "Traceback" not in err


def test_walk_finds_the_demo():
    assert {"demo", "eval", "serve", "export", "parse", "predict"} <= set(_subcommands())
