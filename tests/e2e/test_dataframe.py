"""dask.dataframe: groupby aggregations, merge / set_index with the task-based shuffle, and an
explicit P2P merge (more P2P in test_p2p.py)."""


import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest



@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(7)
    n = 400
    pdf = pd.DataFrame(
        {
            "g": rng.choice(list("abcdefg"), size=n),
            "x": rng.integers(0, 1000, size=n),
            "y": rng.random(size=n),
        }
    )
    return pdf, dd.from_pandas(pdf, npartitions=6)


def _sorted(obj):
    return obj.sort_index()


def key_names(collection) -> set[str]:
    return {k[0] if isinstance(k, tuple) else k for k in collection.__dask_graph__()}


AGGS = {
    "sum": (lambda gb: gb.x.sum(), lambda gb: gb.x.sum()),
    "mean": (lambda gb: gb.y.mean(), lambda gb: gb.y.mean()),
    "count": (lambda gb: gb.x.count(), lambda gb: gb.x.count()),
    "size": (lambda gb: gb.size(), lambda gb: gb.size()),
    "agg-multi": (
        lambda gb: gb.agg({"x": ["sum", "min", "max"], "y": ["mean", "std", "count"]}),
        lambda gb: gb.agg({"x": ["sum", "min", "max"], "y": ["mean", "std", "count"]}),
    ),
    # split_out > 1 makes the groupby itself shuffle (P2P by default)
    "sum-split-out": (lambda gb: gb.x.sum(split_out=3), lambda gb: gb.x.sum()),
}


@pytest.mark.parametrize("agg", list(AGGS))
def test_groupby(client, frames, agg):
    distributed_fn, pandas_fn = AGGS[agg]
    pdf, ddf = frames
    assert ddf.npartitions == 6
    res = distributed_fn(ddf.groupby("g"))

    got = _sorted(res.compute())
    # the local scheduler cannot run a P2P shuffle: its reference uses the task shuffle
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):
        expected = _sorted(distributed_fn(ddf.groupby("g")).compute(scheduler="sync"))
    plain = _sorted(pandas_fn(pdf.groupby("g")))
    if isinstance(got, pd.DataFrame):
        pd.testing.assert_frame_equal(got, expected)
        pd.testing.assert_frame_equal(got, plain, check_exact=False, rtol=1e-12, check_dtype=False, check_index_type=False)
    else:
        pd.testing.assert_series_equal(got, expected)
        pd.testing.assert_series_equal(got, plain, check_exact=False, rtol=1e-12, check_dtype=False, check_index_type=False)


@pytest.fixture
def tasks_shuffle():
    """The task-based shuffle, as a user picks it with `dataframe.shuffle.method: tasks`."""
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):
        yield


def test_merge_tasks_shuffle(client, tasks_shuffle):
    assert dask.config.get("dataframe.shuffle.method") == "tasks"
    rng = np.random.default_rng(3)
    left = pd.DataFrame({"k": rng.integers(0, 60, size=300), "v": np.arange(300)})
    right = pd.DataFrame({"k": np.arange(0, 60, 2), "w": np.arange(30) * 10})
    a = dd.from_pandas(left, npartitions=5)
    b = dd.from_pandas(right, npartitions=3)

    m = a.merge(b, on="k", how="inner")
    names = key_names(m)
    assert any("taskshuffle" in n for n in names), names
    assert not any("p2p" in n or "barrier" in n for n in names), names
    cols = ["k", "v", "w"]
    got = m.compute().sort_values(cols).reset_index(drop=True)[cols]
    expected = m.compute(scheduler="sync").sort_values(cols).reset_index(drop=True)[cols]
    plain = left.merge(right, on="k", how="inner").sort_values(cols).reset_index(drop=True)[cols]
    assert len(got) > 0
    pd.testing.assert_frame_equal(got, expected)
    pd.testing.assert_frame_equal(got, plain, check_dtype=False)

    left_join = a.merge(b, on="k", how="left")
    assert len(left_join) == len(left)


def test_set_index_tasks_shuffle(client, frames, tasks_shuffle):
    pdf, ddf = frames
    s = ddf.set_index("x")
    got = s.compute()
    assert got.index.is_monotonic_increasing
    assert s.known_divisions
    expected = s.compute(scheduler="sync")
    key = ["x", "g", "y"]
    pd.testing.assert_frame_equal(
        got.reset_index().sort_values(key).reset_index(drop=True),
        expected.reset_index().sort_values(key).reset_index(drop=True),
    )
    pd.testing.assert_frame_equal(
        got.reset_index().sort_values(key).reset_index(drop=True),
        pdf[key].sort_values(key).reset_index(drop=True),
        check_dtype=False,  # dask converts object strings to pyarrow strings
    )

    sh = ddf.shuffle("g", npartitions=4)
    out = sh.compute()
    assert sorted(out.x.tolist()) == sorted(pdf.x.tolist())
    # every group lives in exactly one output partition
    owners = {}
    for i in range(sh.npartitions):
        for g in sh.partitions[i].compute().g.unique():
            owners.setdefault(g, set()).add(i)
    assert all(len(v) == 1 for v in owners.values())


def test_merge_p2p_explicit(client):
    a = dd.from_pandas(pd.DataFrame({"k": range(40), "v": range(40)}), npartitions=4)
    b = dd.from_pandas(pd.DataFrame({"k": range(0, 40, 2), "w": range(20)}), npartitions=3)
    m = a.merge(b, on="k", how="inner", shuffle_method="p2p")
    assert any(n.startswith("shuffle-barrier-") for n in key_names(m))
    got = m.compute().sort_values("k").reset_index(drop=True)
    assert len(got) == 20
    assert got.w.tolist() == list(range(20))
