"""plates.workpool.run_pool with real threads: every item once, bounded concurrency, exact early stop, errors.

Covered elsewhere: teach's early stop on a failing teacher and its records in flight (tests/test_teach.py).
"""

from __future__ import annotations

import itertools
import threading

import pytest

from plates.workpool import run_pool


class Recorder:
    """A job that notes what started and how many ran at once."""

    def __init__(self, fail_on: object = None, raise_type: type[BaseException] = ValueError):
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.active = self.most = 0
        self.fail_on, self.raise_type = fail_on, raise_type

    def __call__(self, item: int) -> int:
        with self.lock:
            self.started.append(item)
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            if item == self.fail_on:
                raise self.raise_type(f"item {item}")
            return item * 10
        finally:
            with self.lock:
                self.active -= 1


def _pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pool-")]


def test_every_item_once_and_never_more_than_concurrency_at_once():
    job = Recorder()
    before = set(_pool_threads())
    outcomes = list(run_pool(job, range(50), 4, threading.Event()))
    ours = set(_pool_threads()) - before
    assert sorted(outcomes) == [i * 10 for i in range(50)]
    assert sorted(job.started) == list(range(50))
    assert 1 <= job.most <= 4
    for thread in ours:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in ours), "the workers end with the pool"


def test_early_stop_at_concurrency_one_is_exact():
    """The caller decides after each outcome; once it has set stop, not one more item starts, and the input
    (here endless) is read no further than needed."""
    job = Recorder()
    pulled = []
    items = (pulled.append(i) or i for i in itertools.count())
    stop = threading.Event()
    got = []
    for outcome in run_pool(job, items, 1, stop):
        got.append(outcome)
        if outcome == 60:
            stop.set()
    assert got == [0, 10, 20, 30, 40, 50, 60]
    assert job.started == [0, 1, 2, 3, 4, 5, 6] and pulled == [0, 1, 2, 3, 4, 5, 6]


def test_early_stop_lets_only_the_items_in_flight_finish():
    """At concurrency 3 three items are in flight when the first outcome arrives; stopping then means those three
    finish and are yielded, and nothing else starts."""
    job = Recorder()
    stop = threading.Event()
    got = []
    for outcome in run_pool(job, range(100), 3, stop):
        got.append(outcome)
        stop.set()
    assert sorted(got) == [0, 10, 20] and sorted(job.started) == [0, 1, 2]


def test_a_job_that_raises_raises_in_the_caller_and_stops_the_pool():
    job = Recorder(fail_on=3)
    stop = threading.Event()
    got = []
    with pytest.raises(ValueError, match="item 3"):
        for outcome in run_pool(job, range(1000), 2, stop):
            got.append(outcome)
    assert stop.is_set()
    assert len(job.started) <= len(got) + 2, "at most the items in flight started after the failure"
    job = Recorder(fail_on=0, raise_type=KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        list(run_pool(job, range(5), 1, threading.Event()))
    assert job.started == [0]


def test_a_caller_that_stops_reading_stops_the_pool():
    job = Recorder()
    stop = threading.Event()
    pulled = []
    outcomes = run_pool(job, (pulled.append(i) or i for i in range(100)), 2, stop)
    first = next(outcomes)
    outcomes.close()
    assert first in (0, 10) and stop.is_set()
    assert pulled == [0, 1] and set(job.started) <= {0, 1}, "closing the generator hands out nothing more"
    assert list(run_pool(job, [], 3, threading.Event())) == []
