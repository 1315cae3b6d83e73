"""Behaviour Dask's own test_client.py checks, against both schedulers: tasks that secede
and submit sub-tasks through the worker's client (`test_dynamic_workloads_sync`), the
dependents of scattered data that is lost with its only worker (`test_lose_scattered_data`,
`test_scatter_compute_store_lose_processing`), and a client that does not accept pickle
(`test_turn_off_pickle`): what comes back through the scheduler (gather, run,
run_on_scheduler) is serialized only with what the client can read."""

from __future__ import annotations

import time
from concurrent.futures import CancelledError

import pytest
from distributed import get_client, secede, wait

from conftest import RESULT_TIMEOUT, wait_until


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def slow_inc(x, delay):
    time.sleep(delay)
    return x + 1


def dynamic_workload(x, delay=0.02):
    """test_client.py `_dynamic_workload`: each task below 5 secedes and waits on two
    sub-tasks and their sum, submitted through the worker's client."""
    time.sleep(delay)
    if x > 4:
        return 4
    secede()
    client = get_client()
    futures = client.map(dynamic_workload, [x + i + 1 for i in range(2)], pure=False, delay=delay)
    total = client.submit(sum, futures)
    return total.result(timeout=RESULT_TIMEOUT)


def give_a_function(_=None):
    return inc


def test_seceded_tasks_that_submit_subtasks_finish(client):
    future = client.submit(dynamic_workload, 0, delay=0.02)
    assert future.result(timeout=RESULT_TIMEOUT) == 52


def test_seceded_tasks_finish_with_random_delays(client):
    futures = client.map(dynamic_workload, [0, 1, 2], delay=0.01, pure=False)
    assert client.gather(futures) == [52, 32, 20]


def test_dependents_of_lost_scattered_data_are_cancelled(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(2)
    addrs = cluster.worker_addresses()
    with cluster.client() as c:
        [x] = c.scatter([1], workers=[addrs["w0"]])
        # y runs where x is; z waits on y
        y = c.submit(slow_inc, x, 1.0, workers=[addrs["w0"]])
        z = c.submit(add, y, 1)
        wait_until(lambda: c.processing(workers=[addrs["w0"]]).get(addrs["w0"]), "y processing on w0")
        assert x.status == "finished"
        cluster.workers["w0"].kill()
        wait_until(
            lambda: (x.status, y.status, z.status) == ("cancelled",) * 3,
            "x, y and z cancelled",
        )
        for f in (x, y, z):
            with pytest.raises(CancelledError):
                f.result(timeout=RESULT_TIMEOUT)
        # the scheduler forgot them all ("forgotten" for pure data, scheduler.py:5675)
        assert not {x.key, y.key, z.key} & set(c.who_has())
        # the cluster goes on
        assert c.submit(inc, 1, pure=False).result(timeout=RESULT_TIMEOUT) == 2


def test_lost_scattered_data_alone_is_cancelled(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(2)
    addrs = cluster.worker_addresses()
    with cluster.client() as c:
        [x] = c.scatter([1], workers=[addrs["w0"]])
        cluster.workers["w0"].kill()
        wait_until(lambda: x.status == "cancelled", "x cancelled")
        with pytest.raises(CancelledError):
            x.result(timeout=RESULT_TIMEOUT)


@pytest.mark.parametrize("direct", [False, True])
def test_a_client_without_pickle_gets_no_pickles(cluster, direct):
    with cluster.client(serializers=["dask", "msgpack"]) as c:
        # an int travels as msgpack, through the scheduler or straight from the worker
        assert c.gather(c.submit(inc, 1, pure=False), direct=direct) == 2
        assert c.run(inc, 1) == {a: 2 for a in c.scheduler_info()["workers"]}
        # tasks are still pickled; the result is a function, which only pickle can carry
        f = c.submit(give_a_function, pure=False)
        wait(f, timeout=RESULT_TIMEOUT)
        assert f.status == "finished"
        with pytest.raises(TypeError):
            c.gather(f, direct=direct)
        with pytest.raises(TypeError):
            c.run(give_a_function)
        # the same for what a function run on the scheduler returns (core.py:816)
        assert c.run_on_scheduler(inc, 1) == 2
        with pytest.raises(TypeError):
            c.run_on_scheduler(give_a_function)
