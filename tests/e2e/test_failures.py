"""Failure semantics and cluster administration, against both schedulers: Client.restart
and restart_workers through nannies, retire_workers keeping the data, worker-ttl removing
a worker that stops heartbeating, a disconnecting client's keys released, root-task
queuing, and work stealing onto a worker that joins late."""

from __future__ import annotations

import os
import signal
import time

import dask
import pytest
from distributed import wait

from conftest import RESULT_TIMEOUT, wait_until


def inc(x):
    return x + 1


def slow_inc(x, delay=0.2):
    time.sleep(delay)
    return x + 1


def test_client_restart_through_nannies_gives_a_fresh_cluster(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(2, nanny=True)
    before = set(cluster.worker_addresses().values())
    with cluster.client() as c:
        held = c.submit(inc, 1)
        assert held.result(timeout=RESULT_TIMEOUT) == 2
        c.restart(timeout=60)
        # the futures of before the restart are gone; the workers are new processes
        assert held.status == "cancelled"
        after = set(c.scheduler_info(n_workers=-1)["workers"])
        assert len(after) == 2 and not (after & before)
        assert c.submit(inc, 10).result(timeout=RESULT_TIMEOUT) == 11
        assert c.who_has() == {} or all(v for v in c.who_has().values())


def test_restart_workers_restarts_only_those(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(2, nanny=True)
    addresses = cluster.worker_addresses()
    with cluster.client() as c:
        out = c.restart_workers([addresses["w0"]], timeout=60)
        assert out == {addresses["w0"]: "OK"}
        now = cluster.worker_addresses()
        assert now["w1"] == addresses["w1"]
        assert now["w0"] != addresses["w0"]
        assert c.submit(inc, 1).result(timeout=RESULT_TIMEOUT) == 2


def test_retire_workers_moves_unique_data_off_first(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(2)
    addresses = cluster.worker_addresses()
    with cluster.client() as c:
        futures = [c.submit(inc, i, workers=[addresses["w0"]], pure=False) for i in range(20)]
        wait(futures, timeout=RESULT_TIMEOUT)
        assert all(set(v) == {addresses["w0"]} for v in c.who_has(futures).values())
        retired = c.retire_workers(workers=[addresses["w0"]], close_workers=True)
        assert list(retired) == [addresses["w0"]]
        wait_until(lambda: len(c.scheduler_info()["workers"]) == 1, "w0 to leave")
        # every result survived on w1
        assert all(set(v) == {addresses["w1"]} for v in c.who_has(futures).values())
        assert c.gather(futures) == [i + 1 for i in range(20)]


def test_worker_ttl_removes_a_worker_that_stops_heartbeating(cluster_factory, monkeypatch):
    # effective ttl is max(worker-ttl, 10 heartbeat intervals) = 5 s on a small cluster
    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL", "1s")
    cluster = cluster_factory()
    cluster.add_workers(2)
    frozen = cluster.workers["w1"]
    os.killpg(frozen.pid, signal.SIGSTOP)
    try:
        with cluster.client() as c:
            wait_until(
                lambda: len(c.scheduler_info()["workers"]) == 1,
                "the frozen worker to be removed",
                timeout=60,
            )
            assert c.submit(inc, 41).result(timeout=RESULT_TIMEOUT) == 42
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)
        frozen.kill()


def test_a_disconnecting_client_has_its_keys_released(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(1)
    c = cluster.client()
    futures = c.map(inc, range(10))
    wait(futures, timeout=RESULT_TIMEOUT)
    assert len(cluster.control.who_has()) >= 10
    c.close()
    wait_until(lambda: cluster.control.who_has() == {}, "the keys to be released")
    held = sum(len(v) for v in cluster.control.has_what().values())
    assert held == 0


def test_root_tasks_are_queued_not_flooded_onto_workers(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(1)
    with cluster.client() as c:
        # 40 root tasks of one group on a 1-thread worker: at most ceil(1.1) = 2 at a time
        futures = c.map(slow_inc, range(40), delay=0.05)
        seen = 0
        deadline = time.monotonic() + RESULT_TIMEOUT
        while not all(f.done() for f in futures):
            assert time.monotonic() < deadline
            processing = c.processing()
            seen = max(seen, max((len(v) for v in processing.values()), default=0))
            time.sleep(0.02)
        assert 1 <= seen <= 2
        assert c.gather(futures) == [i + 1 for i in range(40)]


def test_work_goes_to_a_worker_that_joins_late(cluster_factory, monkeypatch):
    # queuing off: every task goes to the first worker at once, only stealing can move it
    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION", "inf")
    cluster = cluster_factory()
    cluster.add_workers(1)
    with cluster.client() as c:
        # warm the duration estimate so tasks are not "tiny"
        c.submit(slow_inc, -1, delay=0.3, pure=False).result(timeout=RESULT_TIMEOUT)
        futures = c.map(slow_inc, range(40), delay=0.3, pure=False)
        cluster.add_workers(1)
        late = cluster.worker_addresses()["w1"]
        wait(futures, timeout=RESULT_TIMEOUT)
        where = c.who_has(futures)
        moved = sum(1 for holders in where.values() if late in holders)
        assert moved > 0, "no task ran on the worker that joined late"
        assert c.gather(futures) == [i + 1 for i in range(40)]
        expected = dask.compute(*[dask.delayed(inc)(i) for i in range(40)], scheduler="sync")
        assert c.gather(futures) == list(expected)
