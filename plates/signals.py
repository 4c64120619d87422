"""SIGTERM and SIGHUP handled like Ctrl-C, at one depth.

`plates` installs :func:`terminate_like_interrupt` around every command: the handler raises
:class:`plates.errors.Terminated` (a KeyboardInterrupt) in the main thread, so the code paths Ctrl-C already
takes run unchanged: children are stopped (:func:`plates.swift_cli.run_streaming` forwards the signal to the
child's whole process group), ``atomic_write`` and ``finally`` blocks remove temporary files and folders, and
what was finished stays. :func:`deferred` holds these signals for a few statements that must not be cut in
two (the renames of a file-set commit, creating a temporary file and remembering its name, starting a child
and remembering its pid).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

from plates.errors import Terminated

TERMINATING = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def terminate_like_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread. Only the first
    one raises: a second signal while the first one's cleanup runs is ignored, so the cleanup finishes. A
    signal the parent set to be ignored (``nohup`` ignores SIGHUP) stays ignored. The previous handlers come
    back afterwards (tests call ``plates.cli.main`` in-process)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised: list[int] = []

    def handler(signum: int, _frame) -> None:
        if raised:
            return
        raised.append(signum)
        raise Terminated(signum)

    previous = {}
    for sig in TERMINATING:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP for the few statements of the block; one that arrives is delivered right
    after it (so an assignment made in the block is visible to the handler's cleanup). Python-level handlers
    are swapped (not only the OS mask) because a signal that arrived just before the block is already pending
    in the interpreter and would otherwise raise inside it. Outside the main thread it does nothing (signals
    are delivered to the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, _frame: received.append(number))
                for sig in (signal.SIGINT, *TERMINATING)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            signal.raise_signal(received[0])


def reset_in_child() -> None:
    """Default SIGTERM and SIGHUP handling in a forked worker process (multiprocessing workers inherit the
    parent's Python handler, which would raise Terminated with a traceback inside the worker when the parent's
    pool is terminated): the worker simply ends."""
    for sig in TERMINATING:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
