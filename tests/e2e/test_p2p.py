"""The P2P shuffle with Dask's default settings (no `dataframe.shuffle.method` override: with
a distributed client and pyarrow, Dask 2026.8.0 picks P2P by itself): merges, joins,
set_index, sort_values, split-output groupby, a P2P rechunk, and a worker lost in the middle
of a shuffle. Each test checks that the graph really is P2P (it has a barrier task) and
compares with the same computation on the local synchronous scheduler."""

from __future__ import annotations

import time

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd

import e2e_remote as remote
from conftest import RESULT_TIMEOUT

def frames():
    pdf = pd.DataFrame({"k": np.arange(2000) % 37, "v": np.arange(2000), "s": np.arange(2000)[::-1]})
    other = pd.DataFrame({"k": np.arange(37), "w": np.arange(37) * 2})
    return dd.from_pandas(pdf, npartitions=6), dd.from_pandas(other, npartitions=3)


def reference(collection):
    with dask.config.set({"dataframe.shuffle.method": "tasks", "array.rechunk.method": "tasks"}):
        return collection.compute(scheduler="sync")


def barrier_keys(collection):
    return [k for k in collection.__dask_graph__() if isinstance(k, str) and k.startswith("shuffle-barrier-")]


def test_merge_and_join(client):
    a, b = frames()
    m = a.merge(b, on="k")
    assert barrier_keys(m)
    got = m.compute().sort_values(["k", "v"]).reset_index(drop=True)
    got_j = a.set_index("k").join(b.set_index("k"), how="inner").compute()
    want = reference(a.merge(b, on="k")).sort_values(["k", "v"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert len(got_j) == len(want)


def test_set_index_and_sort_values(client):
    a, _ = frames()
    s = a.set_index("s")
    assert barrier_keys(s)
    got = s.compute()
    srt = a.sort_values("s").compute()
    assert got.index.is_monotonic_increasing and len(got) == 2000
    assert srt.s.is_monotonic_increasing and sorted(srt.v) == list(range(2000))


def test_groupby_split_out(client):
    a, _ = frames()
    g = a.groupby("k").v.agg(["sum", "count"], split_out=4)
    assert barrier_keys(g)
    got = g.compute().sort_index()
    want = reference(a.groupby("k").v.agg(["sum", "count"])).sort_index()
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_rechunk_p2p(client):
    x = da.random.RandomState(1).random((300, 300), chunks=(300, 10))
    y = x.rechunk((10, 300), method="p2p")
    assert barrier_keys(y)
    np.testing.assert_array_equal(y.compute(), x.compute(scheduler="sync"))


def test_worker_killed_during_a_shuffle(cluster_factory):
    """A participant dies while inputs are being transferred: the shuffle restarts on the
    remaining workers and the result is still right."""
    c = cluster_factory()
    c.add_workers(3)
    with c.client() as client:
        parts = [dask.delayed(remote.slow_frame)(i) for i in range(24)]
        df = dd.from_delayed(parts, meta=pd.DataFrame({"k": pd.Series(dtype=int), "v": pd.Series(dtype=int)}))
        other = dd.from_pandas(pd.DataFrame({"k": range(23), "w": range(100, 123)}), npartitions=2)
        out = df.merge(other, on="k", broadcast=False)
        assert barrier_keys(out)
        fut = client.compute(out)
        deadline = time.monotonic() + RESULT_TIMEOUT
        # wait until the shuffle is under way: a transfer task runs or has run
        def transferring():
            running = [k for keys in client.processing().values() for k in keys]
            held = [k for k, holders in client.who_has().items() if holders]
            return any("transfer" in str(k) for k in running + held)

        while not transferring():
            assert time.monotonic() < deadline, "the shuffle never started"
            assert not fut.done(), fut
            time.sleep(0.05)
        victim = c.workers["w1"]
        victim.kill()
        got = fut.result(timeout=RESULT_TIMEOUT)
    got = got.sort_values("v").reset_index(drop=True)
    assert got.v.tolist() == list(range(24 * 200))
    assert (got.w == got.k + 100).all()
