"""`swift deploy` started by `plates serve` without the API key on any command line or in any log.

``swift deploy --api_key KEY`` puts the key in two processes' argv (readable by every user through ``ps`` and
``/proc/PID/cmdline``) and ms-swift prints it twice (its ``run sh:`` line and its ``args:`` dump). This launcher
runs ms-swift's own deploy pipeline in this process instead: the key arrives in the environment variable
:data:`KEY_ENV` (``/proc/PID/environ`` is readable by its owner only), is removed from the environment before any
child starts, and is set on the parsed arguments as a string whose ``repr`` is ``<redacted>``.

It also keeps the port asked for: ms-swift's ``DeployArguments`` silently moves to the next free port when the
port is taken; here the server binds the requested one or fails (`plates serve` has already refused a busy port).

Usage (what `plates serve` runs): ``python -m plates.deploy_launcher deploy --model M --port 8000 …``.
"""

from __future__ import annotations

import os
import sys

KEY_ENV = "PLATES_DEPLOY_API_KEY"


class Secret(str):
    """A string that shows as ``<redacted>`` in reprs (ms-swift logs its arguments' dataclass repr)."""

    def __repr__(self) -> str:
        return "'<redacted>'"


def _requested_port(argv: list[str]) -> int | None:
    for flag, value in zip(argv, argv[1:]):
        if flag == "--port":
            return int(value)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["deploy"]:
        argv = argv[1:]
    key = os.environ.pop(KEY_ENV, None)
    if any(item == "--api_key" or item.startswith("--api_key=") for item in argv):
        print("plates serve: error: the API key is passed through the environment, never argv", file=sys.stderr)
        return 2
    from swift.arguments import DeployArguments
    from swift.pipelines import deploy_main
    from swift.utils import parse_args

    sys.argv = [sys.argv[0], *argv]
    args, remaining = parse_args(DeployArguments, argv)
    if remaining:
        print(f"plates serve: error: arguments ms-swift does not know: {' '.join(remaining)}", file=sys.stderr)
        return 2
    port = _requested_port(argv)
    if port is not None:
        args.port = port  # never the next free one: a client would not find the server
    if key:
        args.api_key = Secret(key)
    deploy_main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
