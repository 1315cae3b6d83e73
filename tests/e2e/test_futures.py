"""The futures API: submit, map, gather, scatter, as_completed, wait, cancel, persist,
introspection (who_has, has_what, nthreads), Client.run, tuple keys."""

from concurrent.futures import CancelledError

import dask
import dask.array as da
import numpy as np
import pytest
from dask import delayed
from distributed import as_completed, futures_of, wait

from conftest import RESULT_TIMEOUT, wait_until
from e2e_remote import (
    add,
    inc,
    key_state_on_worker,
    pid,
    run_address,
    sleep_and_return,
    sleep_until_file,
    total,
)


def test_submit_map_gather(client):
    x = client.submit(inc, 1)
    assert x.result(timeout=RESULT_TIMEOUT) == 2

    futs = client.map(inc, range(20))
    assert client.gather(futs) == [i + 1 for i in range(20)]

    s = client.submit(total, futs)
    assert s.result(timeout=RESULT_TIMEOUT) == sum(range(1, 21))

    # futures as arguments, several levels deep
    y = client.submit(add, x, s)
    z = client.submit(add, y, y)
    assert z.result(timeout=RESULT_TIMEOUT) == 2 * (2 + sum(range(1, 21)))

    # pure submissions with the same arguments share a key, impure ones don't
    assert client.submit(inc, 41).key == client.submit(inc, 41).key
    a, b = client.submit(pid, pure=False), client.submit(pid, pure=False)
    assert a.key != b.key
    assert all(isinstance(v, int) for v in client.gather([a, b]))


def test_scatter(client, cluster):
    addrs = set(cluster.worker_addresses().values())

    [s] = client.scatter([10])
    assert client.submit(inc, s).result(timeout=RESULT_TIMEOUT) == 11

    d = client.scatter({"e2e-direct": 5}, direct=True)
    assert client.submit(inc, d["e2e-direct"]).result(timeout=RESULT_TIMEOUT) == 6

    arr = np.arange(1000)
    fa = client.scatter(arr)
    np.testing.assert_array_equal(fa.result(timeout=RESULT_TIMEOUT), arr)
    assert client.submit(np.sum, fa).result(timeout=RESULT_TIMEOUT) == arr.sum()

    b = client.scatter([1, 2, 3], broadcast=True)
    who = client.who_has(b)
    for f in b:
        assert set(who[f.key]) == addrs, who
    assert client.gather(client.map(inc, b)) == [2, 3, 4]


def test_as_completed_and_wait(client):
    delays = [0.3, 0.05, 0.2, 0.1]
    futs = client.map(sleep_and_return, delays, range(len(delays)))
    seen = [f.result() for f in as_completed(futs, timeout=RESULT_TIMEOUT)]
    assert sorted(seen) == list(range(len(delays)))

    futs2 = client.map(sleep_and_return, [0.01] * 5, range(100, 105))
    pairs = list(as_completed(futs2, with_results=True, timeout=RESULT_TIMEOUT))
    assert sorted(r for _, r in pairs) == list(range(100, 105))

    futs3 = client.map(inc, range(10, 20))
    done, not_done = wait(futs3, timeout=RESULT_TIMEOUT)
    assert len(done) == 10 and not not_done
    assert all(f.status == "finished" for f in futs3)

    first = wait(client.map(sleep_and_return, [0.01, 0.5], ["a", "b"]),
                 return_when="FIRST_COMPLETED", timeout=RESULT_TIMEOUT)
    assert len(first.done) >= 1


def test_cancel(client, tmp_path):
    flag = tmp_path / "release-the-task"
    slow = client.submit(sleep_until_file, str(flag), 30, pure=False)

    def executing():
        states = client.run(key_state_on_worker, slow.key)
        return [a for a, s in states.items() if s == "executing"]

    try:
        wait_until(executing, "the task to start executing", timeout=15.0)
        client.cancel(slow)
        assert slow.cancelled()
        with pytest.raises(CancelledError):
            slow.result(timeout=RESULT_TIMEOUT)

        # the scheduler tells the worker to drop the key; it stays only as a "cancelled"
        # execution that will be thrown away
        wait_until(lambda: all(s in (None, "cancelled") for s in
                               client.run(key_state_on_worker, slow.key).values()),
                   "the worker to release the cancelled key", timeout=15.0)
    finally:
        flag.touch()
    wait_until(lambda: all(s is None for s in client.run(key_state_on_worker, slow.key).values()),
               "the worker to forget the cancelled key", timeout=15.0)
    assert client.who_has().get(slow.key, ()) == ()

    # the cluster is still fine
    assert client.submit(inc, 100).result(timeout=RESULT_TIMEOUT) == 101


def test_persist(client):
    arr = da.arange(100, chunks=10) * 2
    p = client.persist(arr)
    fs = futures_of(p)
    assert len(fs) == 10
    wait(fs, timeout=RESULT_TIMEOUT)
    assert all(f.status == "finished" for f in fs)
    np.testing.assert_array_equal(p.compute(), np.arange(100) * 2)
    assert (p + 1).sum().compute() == (arr + 1).sum().compute(scheduler="sync")

    d = delayed(add)(delayed(inc)(1), 10)
    dp = client.persist(d)
    assert dask.compute(dp)[0] == 12
    assert client.compute(dp).result(timeout=RESULT_TIMEOUT) == 12


def test_introspection(client, cluster):
    addrs = set(cluster.worker_addresses().values())
    assert len(addrs) == 2

    f = client.submit(inc, 7)
    f.result(timeout=RESULT_TIMEOUT)
    who = client.who_has(f)
    assert list(who) == [f.key]
    assert len(who[f.key]) == 1 and who[f.key][0] in addrs
    assert f.key in client.who_has()

    hw = client.has_what()
    assert set(hw) == addrs
    assert f.key in hw[who[f.key][0]]

    assert client.nthreads() == {a: 1 for a in addrs}
    assert client.ncores() == {a: 1 for a in addrs}
    assert client.nthreads(workers=[who[f.key][0]]) == {who[f.key][0]: 1}

    info = client.scheduler_info()
    assert info["type"] == "Scheduler"
    assert set(info["workers"]) == addrs
    assert {ws["name"] for ws in info["workers"].values()} == {"w0", "w1"}

    link = client.dashboard_link
    assert link is None or isinstance(link, str)


def test_client_run(client, cluster):
    addrs = set(cluster.worker_addresses().values())
    res = client.run(run_address)
    assert res == {a: a for a in addrs}

    pids = client.run(pid)
    assert set(pids) == addrs
    assert len(set(pids.values())) == 2

    one = sorted(addrs)[0]
    assert client.run(run_address, workers=[one]) == {one: one}


def test_tuple_keys(client):
    t = client.submit(inc, 5, key=("tuple-key", 0))
    assert t.key == ("tuple-key", 0)
    assert t.result(timeout=RESULT_TIMEOUT) == 6
    assert ("tuple-key", 0) in client.who_has()

    u = client.submit(add, t, 10, key=("tuple-key", 1))
    assert u.result(timeout=RESULT_TIMEOUT) == 16

    nested = client.submit(inc, 1, key=("tuple-key", 2, "nested", 3))
    assert nested.result(timeout=RESULT_TIMEOUT) == 2

    futs = client.map(inc, range(3), key=[("mapped", i) for i in range(3)])
    assert [f.key for f in futs] == [("mapped", i) for i in range(3)]
    assert client.gather(futs) == [1, 2, 3]


def test_scatter_explicit_keys(client):
    fs = client.scatter({"e2e-scatter-a": 5, ("e2e-scatter", 1): 6})
    assert set(fs) == {"e2e-scatter-a", ("e2e-scatter", 1)}
    assert fs["e2e-scatter-a"].key == "e2e-scatter-a"
    assert fs[("e2e-scatter", 1)].key == ("e2e-scatter", 1)
    assert client.gather(fs) == {"e2e-scatter-a": 5, ("e2e-scatter", 1): 6}
    s = client.submit(add, fs["e2e-scatter-a"], fs[("e2e-scatter", 1)])
    assert s.result(timeout=RESULT_TIMEOUT) == 11
    who = client.who_has(list(fs.values()))
    assert set(who) == {"e2e-scatter-a", ("e2e-scatter", 1)}
    assert all(len(v) >= 1 for v in who.values())
