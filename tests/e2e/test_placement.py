"""Where root-ish tasks go (`Scheduler.is_rootish` and the two `decide_worker_rootish_*`):
without queuing (`worker-saturation: inf`) sibling roots go to one worker in runs, and a
data producer (a `DataNode`, a reader's task) counts as root-ish whatever its group's size,
so it is queued. Each test starts its own scheduler and two one-thread workers."""

from __future__ import annotations

import time

import dask.array as da
from distributed import wait
from dask._task_spec import Task

from conftest import RESULT_TIMEOUT, wait_until
from e2e_remote import inc, sleep_until_file


def test_without_queuing_neighbouring_roots_share_a_worker(cluster_factory, monkeypatch):
    """8 roots on 2 one-thread workers: in priority order, two runs of 4 (each worker's share
    of the group), so blocks that are combined later are made in one place."""
    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION", "inf")
    cluster = cluster_factory()
    cluster.add_workers(2)
    with cluster.client() as client:
        x = da.ones(8, chunks=1).persist()
        # before anything reads the blocks: a dependent's transfer leaves a replica, and
        # who_has lists a key's holders in no particular order
        wait(x, timeout=RESULT_TIMEOUT)
        who_has = client.who_has(x)
        where = [next(iter(who_has[k])) for k in sorted(who_has, key=lambda k: k[1])]
        assert len(set(where[:4])) == 1 and len(set(where[4:])) == 1, where
        assert where[0] != where[4], where


def test_a_data_producer_is_queued_in_a_small_group(cluster_factory, tmp_path):
    """One worker, its thread held by a plain task: of two data producers (a group too small
    to be root-ish by size) only one more goes to the worker (ceil(1.1 x 1) = 2 slots); the
    other waits in the scheduler's queue until a slot frees."""
    cluster = cluster_factory()
    cluster.add_workers(1)
    gate = tmp_path / "go"
    with cluster.client() as client:
        blocker = client.submit(sleep_until_file, str(gate), key="blocker")

        def processing():
            return {k for ks in client.processing().values() for k in ks}

        wait_until(lambda: "blocker" in processing(), "the blocker to run")
        dsk = {("read", i): Task(("read", i), inc, i, _data_producer=True) for i in range(2)}
        futures = client.get(dsk, list(dsk), sync=False)
        wait_until(lambda: len(processing()) >= 2, "a producer to reach the worker")
        time.sleep(1)  # time for a wrongly dispatched second producer to show
        assert len(processing() & set(dsk)) == 1, processing()
        gate.touch()
        assert blocker.result(timeout=RESULT_TIMEOUT) is True
        assert client.gather(futures) == [1, 2]
