"""Cluster shapes and worker loss: 1 and 3 workers, a worker killed mid-graph, a nanny worker
restarted by its nanny.  Each test starts its own scheduler and workers."""

import os
import signal

import dask
import dask.array as da
import numpy as np
import pytest
from dask import delayed

from conftest import RESULT_TIMEOUT, wait_until
from e2e_remote import add, double, inc, pid, slow_inc, slow_inc_on, total


def representative_computation(client):
    out = [delayed(add)(delayed(inc)(i), delayed(double)(i)) for i in range(20)]
    tot = delayed(sum)(out)
    assert tot.compute() == dask.compute(tot, scheduler="sync")[0] == sum(3 * i + 1 for i in range(20))

    x = da.random.default_rng(1).random((300, 300), chunks=(100, 100))
    y = (x + x.T)[::2, 100:].mean(axis=1)
    np.testing.assert_allclose(y.compute(), y.compute(scheduler="sync"), rtol=1e-12)


@pytest.mark.parametrize("nworkers", [1, 3])
def test_worker_count(cluster_factory, nworkers):
    cluster = cluster_factory()
    cluster.add_workers(nworkers)
    addrs = set(cluster.worker_addresses().values())
    assert len(addrs) == nworkers
    with cluster.client() as client:
        assert client.nthreads() == {a: 1 for a in addrs}
        representative_computation(client)
        # independent work is spread over all workers
        res = client.gather(client.map(slow_inc_on, range(12), delay=0.1, pure=False))
        assert [r[0] for r in res] == list(range(1, 13))
        assert {r[1] for r in res} == addrs


def test_worker_killed_mid_graph(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(2)
    addrs = cluster.worker_addresses()
    victim, survivor = addrs["w1"], addrs["w0"]
    with cluster.client() as client:
        futs = client.map(slow_inc, range(16), delay=0.25)
        s = client.submit(total, futs)

        # wait until the victim holds some results (they will be lost with it)
        def victim_keys():
            held = set(client.has_what().get(victim, ()))
            return held & {f.key for f in futs}

        wait_until(lambda: len(victim_keys()) >= 2, "results on the victim worker")
        assert not s.done(), "the graph finished before the worker could be killed"
        cluster.workers["w1"].kill()

        assert s.result(timeout=RESULT_TIMEOUT) == sum(range(1, 17))
        assert client.gather(futs) == list(range(1, 17))
        # everything was (re)computed on the survivor
        who = client.who_has(futs)
        assert all(set(v) == {survivor} for v in who.values()), who
        wait_until(lambda: set(cluster.worker_addresses().values()) == {survivor},
                   what="the scheduler to drop the killed worker")
        assert client.submit(inc, 1).result(timeout=RESULT_TIMEOUT) == 2


def test_nanny_worker_restart(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(1, nanny=True)
    [first_addr] = cluster.worker_addresses().values()
    with cluster.client() as client:
        representative_computation(client)
        pids = client.run(pid)
        assert list(pids) == [first_addr]
        worker_pid = pids[first_addr]
        assert worker_pid != cluster.workers["w0"].pid  # the worker is a child of the nanny

        # kill the worker process only: the nanny starts a new one, which registers again
        os.kill(worker_pid, signal.SIGKILL)
        new_addrs = wait_until(
            lambda: [a for a in cluster.worker_addresses().values() if a != first_addr],
            "the nanny to restart its worker",
        )
        cluster.wait_for_workers(1)
        assert cluster.workers["w0"].alive()
        assert client.run(pid, workers=new_addrs) != {}
        assert client.submit(inc, 10).result(timeout=RESULT_TIMEOUT) == 11
        representative_computation(client)
