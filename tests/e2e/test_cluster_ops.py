"""Cluster managers on both schedulers: the metadata store, a ``SpecCluster`` built around an
already running scheduler process (it subscribes to worker status and adapts), ``replicate``
and ``Client.shutdown()``.

The ``SpecCluster`` here is what dask-jobqueue and similar managers are: its scheduler spec
is a ``ProcessInterface`` that only names the external scheduler's address, its worker spec a
``ProcessInterface`` that runs ``dask worker`` as a subprocess.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess

import pytest
from distributed import wait
from distributed.deploy import SpecCluster
from distributed.deploy.spec import ProcessInterface

import e2e_remote
from conftest import CLIENT_TIMEOUT, DASK_CLI, RESULT_TIMEOUT, wait_until

_unique = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_unique)}"


# --------------------------------------------------------------------------------------------
# metadata


def test_metadata_round_trips_through_nested_keys(client):
    top = unique("cluster-ops-meta")
    client.set_metadata([top, "b"], {"x": 1})
    assert client.get_metadata([top, "b"]) == {"x": 1}
    assert client.get_metadata([top]) == {"b": {"x": 1}}
    client.set_metadata(top + "-flat", [1, 2])
    assert list(client.get_metadata(top + "-flat")) == [1, 2]
    with pytest.raises(KeyError):
        client.get_metadata([top, "missing"])
    assert client.get_metadata([top, "missing"], default="d") == "d"


# --------------------------------------------------------------------------------------------
# a SpecCluster around an external scheduler


class ExternalScheduler(ProcessInterface):
    """The scheduler spec: the scheduler already runs; this only names its address."""

    def __init__(self, address: str):
        super().__init__()
        self.address = address
        self.external_address = address


class DaskWorkerProcess(ProcessInterface):
    """The worker spec: one ``dask worker`` subprocess, started through the test's process
    manager (logs, and killed at teardown); its exit is expected, since adaptive scaling
    retires it."""

    procs = None  # the test's ProcessManager
    workdir = None

    def __init__(self, scheduler: str, name: str):
        super().__init__(scheduler=scheduler, name=name)
        self.scheduler_address = scheduler
        self.name = name
        self.process = None

    async def start(self):
        argv = [
            DASK_CLI, "worker", self.scheduler_address,
            "--name", str(self.name),
            "--nthreads", "1",
            "--no-dashboard",
            "--memory-limit", "2GB",
            "--no-nanny",
            "--local-directory", str(self.workdir / f"spec-{self.name}-space"),
        ]
        self.process = self.procs.start(f"spec-worker-{self.name}", argv)
        self.process.expected_exit = True
        await super().start()

    async def close(self):
        if self.process is not None and self.process.alive():
            self.process._signal_group(signal.SIGTERM)
            try:
                await asyncio.get_running_loop().run_in_executor(
                    None, lambda: self.process.popen.wait(timeout=20)
                )
            except subprocess.TimeoutExpired:
                self.process._signal_group(signal.SIGKILL)
        await super().close()


class ExternalSpecCluster(SpecCluster):
    """String worker names (``spec-0``, ...), as the workers register them."""

    def _new_worker_name(self, worker_number):
        return f"spec-{worker_number}"


def spec_cluster(address: str, procs, workdir) -> ExternalSpecCluster:
    DaskWorkerProcess.procs = procs
    DaskWorkerProcess.workdir = workdir
    return ExternalSpecCluster(
        workers={},
        scheduler={"cls": ExternalScheduler, "options": {"address": address}},
        worker={"cls": DaskWorkerProcess, "options": {}},
        shutdown_on_close=False,
        # the scheduler belongs to the test's fixture: closing the cluster must not
        # `terminate` it
        shutdown_scheduler=False,
    )


def test_a_cluster_object_hears_workers_arrive_and_leave(cluster_factory, procs, tmp_path):
    c = cluster_factory()
    sc = spec_cluster(c.address, procs, tmp_path)
    try:
        assert sc.scheduler_info["workers"] == {}
        assert sc.scheduler_info["address"] == c.address
        (name,) = c.add_workers(1)
        wait_until(
            lambda: [w["name"] for w in sc.scheduler_info["workers"].values()] == [name],
            "the cluster object to hear of the worker",
        )
        c.workers[name].kill()
        wait_until(
            lambda: sc.scheduler_info["workers"] == {},
            "the cluster object to hear the worker left",
        )
    finally:
        sc.close(timeout=30)


def test_adapt_scales_up_for_queued_work_and_down_when_idle(cluster_factory, procs, tmp_path):
    c = cluster_factory()
    sc = spec_cluster(c.address, procs, tmp_path)
    try:
        with c.client() as client:
            adaptive = sc.adapt(minimum=0, maximum=2, interval="200ms", wait_count=2)
            futures = client.map(e2e_remote.slow_inc, range(8), delay=0.5)
            wait(futures, timeout=RESULT_TIMEOUT)
            assert client.gather(futures) == [x + 1 for x in range(8)]
            # the cluster grew from nothing, within its maximum
            assert 1 <= len(sc.plan) <= 2
            assert any(rec.get("status") == "up" for _, rec in list(adaptive.log))
            del futures
            wait_until(
                lambda: not client.scheduler_info()["workers"] and not sc.workers,
                "the idle cluster to scale down to zero workers",
                timeout=60,
            )
    finally:
        sc.close(timeout=30)


# --------------------------------------------------------------------------------------------
# replicate


def test_replicate_leaves_a_copy_on_two_workers(client):
    key = unique("cluster-ops-replicate")
    future = client.submit(e2e_remote.inc, 1, key=key)
    assert future.result(timeout=RESULT_TIMEOUT) == 2
    assert len(client.who_has([future])[key]) == 1
    client.replicate([future], n=2)
    assert len(client.who_has([future])[key]) == 2
    # back to one: the extra copy is dropped, the value is still there
    client.replicate([future], n=1)
    assert len(client.who_has([future])[key]) == 1
    assert future.result(timeout=RESULT_TIMEOUT) == 2


# --------------------------------------------------------------------------------------------
# shutdown


def test_shutdown_stops_the_scheduler_and_its_workers(cluster_factory):
    c = cluster_factory()
    c.add_workers(2)
    c.scheduler.expected_exit = True
    for w in c.workers.values():
        w.expected_exit = True
    client = c.client()
    client.shutdown()
    assert c.scheduler.popen.wait(timeout=CLIENT_TIMEOUT) == 0, c.scheduler.report()
    for w in c.workers.values():
        w.popen.wait(timeout=CLIENT_TIMEOUT)
        assert not w.alive(), w.report()


# --------------------------------------------------------------------------------------------
# rebalance


def test_rebalance_keeps_every_value_where_the_scheduler_says_it_is(client):
    prefix = unique("cluster-ops-rebalance")
    futures = client.map(e2e_remote.inc, range(10), key=[f"{prefix}-{i}" for i in range(10)])
    wait(futures, timeout=RESULT_TIMEOUT)
    client.rebalance(futures)
    client.rebalance()
    assert client.gather(futures) == [i + 1 for i in range(10)]
    who_has = client.who_has(futures)
    assert all(who_has[f.key] for f in futures), who_has
