"""A bounded pool of worker threads whose caller decides, outcome by outcome, whether more work starts.

`plates teach` (teacher requests) and `plates predict --endpoint` (requests to served models) share it: both
send network requests from a few threads while one thread writes every output line, so each key is written
at most once and an early stop is exact.
"""

from __future__ import annotations

import itertools
import queue
import threading
from typing import Any, Callable, Iterable, Iterator


_DONE = object()


class _Raised:
    def __init__(self, exc: BaseException):
        self.exc = exc


def run_pool(job: Callable[[Any], Any], items: Iterable[Any], concurrency: int,
             stop: threading.Event) -> Iterator[Any]:
    """Yield ``job(item)`` for each item handed out, in the order they finish, from ``concurrency`` worker
    threads (the work is network-bound). This thread hands out the items, one more only after the caller has
    taken an outcome (and decided whether to stop), so at most ``concurrency`` are in flight, memory stays
    flat on large inputs, and no item starts once ``stop`` is set: at ``concurrency`` 1 an early stop is
    exact, otherwise at most the items already in flight finish after it (a job should check ``stop`` first
    and return quickly). Items never handed out are not yielded. A job that raises hands its exception to
    this thread, which re-raises it. Daemon threads, so Ctrl-C (or SIGTERM) never waits for a slow request."""
    tasks: queue.Queue = queue.Queue()
    results: queue.Queue = queue.Queue()

    def work() -> None:
        while True:
            item = tasks.get()
            if item is _DONE:
                return
            try:
                results.put(job(item))
            except BaseException as exc:  # a bug: hand it to the main thread, which re-raises it
                results.put(_Raised(exc))

    threads = [threading.Thread(target=work, name=f"pool-{i}", daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    pending = iter(items)
    in_flight = 0
    try:
        for item in itertools.islice(pending, concurrency):
            tasks.put(item)
            in_flight += 1
        while in_flight:
            while True:
                try:
                    outcome = results.get(timeout=0.5)  # a timeout, so Ctrl-C and signals are seen
                    break
                except queue.Empty:
                    continue
            in_flight -= 1
            if isinstance(outcome, _Raised):
                raise outcome.exc
            yield outcome
            if not stop.is_set():
                item = next(pending, _DONE)
                if item is not _DONE:
                    tasks.put(item)
                    in_flight += 1
    finally:
        stop.set()
        for _ in threads:
            tasks.put(_DONE)
