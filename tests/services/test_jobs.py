"""The job queue alone: affinity order, the fairness bound, FIFO, cancel, errors (no HTTP, no model)."""

from __future__ import annotations

import threading

import pytest

from loradeck.errors import Cancelled
from loradeck.services.jobs import CANCELLED, DONE, FAILED, JobQueue
from loradeck.vocab import Progress


def _switches(keys: list[str]) -> int:
    return sum(1 for a, b in zip(keys, keys[1:], strict=False) if a != b)


def _run_batch(queue: JobQueue, keys: list[str]):
    """Hold the worker on a gate job, queue ``keys`` while it waits, release; return the keys in run order."""
    gate, ran = threading.Event(), []
    queue.submit(lambda job: gate.wait(10), key="gate")
    jobs = [queue.submit(lambda job, k=k: ran.append(k), key=k) for k in keys]
    gate.set()
    for job in jobs:
        job.result(10)
    return ran, jobs


@pytest.fixture
def make_queue():
    queues = []

    def make(**kw):
        queues.append(JobQueue(**kw).start())
        return queues[-1]

    yield make
    for q in queues:
        q.stop()


def test_fifo_runs_in_arrival_order(make_queue):
    keys = list("abcdabcdabcd")
    ran, _ = _run_batch(make_queue(affinity=False), keys)
    assert ran == keys


def test_affinity_groups_equal_keys_and_counts_switches(make_queue):
    keys = list("abcdabcdabcd")
    queue = make_queue(fairness=100)  # no fairness pressure: each key runs as one block
    ran, jobs = _run_batch(queue, keys)
    assert sorted(ran) == sorted(keys)
    assert ran == list("aaabbbcccddd")
    assert queue.switches == 1 + _switches(ran)  # + the switch from the gate job's key
    assert _switches(ran) == 3 < _switches(keys) == 11


def test_fairness_bound_limits_overtaking(make_queue):
    keys = ["a"] + ["b"] + ["a"] * 10
    queue = make_queue(fairness=3)
    ran, jobs = _run_batch(queue, keys)
    # After "a" runs, later "a"s overtake "b" at most 3 times, then "b" must run.
    assert ran == ["a", "a", "a", "a", "b"] + ["a"] * 7
    assert max(j.passed for j in jobs) == 3
    assert all(j.state == DONE for j in jobs)


@pytest.mark.parametrize("bound", [0, 1, 2, 5])
def test_no_job_waits_behind_more_than_the_bound(make_queue, bound):
    keys = list("abacadaeafagahaiaj")
    queue = make_queue(fairness=bound)
    ran, jobs = _run_batch(queue, keys)
    start = {j.id: i for i, j in enumerate(sorted(jobs, key=lambda j: queue.order.index(j.id)))}
    for j in jobs:  # count later-arrived jobs that started before j, from the recorded order
        overtaken_by = sum(1 for o in jobs if o.seq > j.seq and start[o.id] < start[j.id])
        assert overtaken_by == j.passed <= bound
    if bound == 0:
        assert ran == keys


def test_cancel_a_queued_job_and_interrupt_a_running_one(make_queue):
    queue = make_queue()
    started, ran = threading.Event(), []

    def long(job):
        started.set()
        job.interrupted.wait(10)
        return "stopped" if job.interrupted.is_set() else "finished"

    running = queue.submit(long, key="x")
    waiting = queue.submit(lambda job: ran.append("waiting"), key="y")
    assert started.wait(10)
    assert queue.cancel(waiting.id) is waiting
    assert waiting.state == CANCELLED
    with pytest.raises(Cancelled):
        waiting.result(1)
    queue.cancel(running.id)
    assert running.result(10) == "stopped"
    assert queue.wait_idle(10)
    assert ran == []
    assert queue.cancel("nope") is None


def test_a_failing_job_does_not_stop_the_worker(make_queue):
    queue = make_queue()

    def boom(job):
        raise ValueError("broken")

    bad = queue.submit(boom)
    good = queue.submit(lambda job: 42)
    with pytest.raises(ValueError):
        bad.result(10)
    assert good.result(10) == 42
    assert bad.state == FAILED and "broken" in bad.error


def test_progress_fraction_follows_batches_and_steps(make_queue):
    queue = make_queue()
    seen = []

    heard = []

    def work(job):
        for batch in range(2):
            for step in range(1, 5):
                job.report(Progress(step, 4, batch=batch, batches=2))
                seen.append(job.fraction)

    job = queue.submit(work, on_progress=heard.append)
    job.result(10)
    assert seen == [(b + s / 4) / 2 for b in range(2) for s in range(1, 5)]
    assert [(p.batch, p.step) for p in heard] == [(b, s) for b in range(2) for s in range(1, 5)]
    assert job.fraction == 1.0


def test_a_waiter_that_gives_up_never_kills_the_worker(make_queue):
    """An asyncio wrapper of a job's future cancelled (a client gone behind Ray Serve): a waiting job is skipped, a
    running one still settles, and the worker goes on with the next job."""
    import asyncio

    queue = make_queue(affinity=False)
    gate, ran = threading.Event(), []
    running = queue.submit(lambda job: (gate.wait(10), ran.append("running"))[1] or "first", key="a")
    waiting = queue.submit(lambda job: ran.append("waiting"), key="b")
    while queue.running is not running:
        threading.Event().wait(0.01)

    async def give_up(job):
        task = asyncio.ensure_future(asyncio.wrap_future(job.future))
        await asyncio.sleep(0)
        task.cancel()

    asyncio.run(give_up(running))
    asyncio.run(give_up(waiting))
    gate.set()
    later = queue.submit(lambda job: "later", key="c")
    assert later.result(10) == "later"  # the worker survived
    assert running.result(0) == "first" and running.state == DONE  # a running job's future could not be cancelled
    assert waiting.state == CANCELLED and "went away" in waiting.error and ran == ["running"]
