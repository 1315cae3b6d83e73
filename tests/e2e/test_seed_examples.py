"""The seed examples from the Dask-on-HPC documentation: delayed, dataframe from CSV, array."""

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask import delayed

from conftest import RESULT_TIMEOUT
from e2e_remote import add, double, inc


def test_delayed_inc_double_add_sum(client):
    out = []
    for x in range(10):
        a = delayed(inc)(x)
        b = delayed(double)(x)
        out.append(delayed(add)(a, b))
    total = delayed(sum)(out)

    expected = sum((x + 1) + 2 * x for x in range(10))
    assert dask.compute(total, scheduler="sync")[0] == expected
    assert total.compute() == expected
    assert client.compute(total).result(timeout=RESULT_TIMEOUT) == expected


def test_read_csv_filter_plus_one(client, tmp_path):
    rng = np.random.default_rng(42)
    for i in range(4):
        pd.DataFrame(
            {
                "x": rng.integers(0, 1000, size=50),
                "y": rng.choice(["a", "b", "c"], size=50),
            }
        ).to_csv(tmp_path / f"part-{i}.csv", index=False)

    df = dd.read_csv(str(tmp_path / "part-*.csv"))
    assert df.npartitions >= 2
    res = df[df.y == "a"].x + 1

    expected = res.compute(scheduler="sync")
    got = res.compute()
    assert len(got) > 0
    pd.testing.assert_series_equal(got, expected)

    # and against plain pandas
    full = pd.concat(pd.read_csv(tmp_path / f"part-{i}.csv") for i in range(4))
    plain = full[full.y == "a"].x + 1
    np.testing.assert_array_equal(got.to_numpy(), plain.to_numpy())


def test_array_transpose_slice_mean(client):
    n = 120
    x = da.random.default_rng(0).random((2 * n, 2 * n), chunks=(60, 60))
    y = (x + x.T)[::2, n:].mean(axis=1)

    expected = y.compute(scheduler="sync")
    got = y.compute()
    assert got.shape == (n,)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)

    # the seeded random array is the same on both sides, and numpy agrees
    xs = x.compute(scheduler="sync")
    np.testing.assert_array_equal(client.compute(x).result(timeout=RESULT_TIMEOUT), xs)
    np.testing.assert_allclose(got, (xs + xs.T)[::2, n:].mean(axis=1), rtol=1e-12)


def test_examples_with_every_graph_taken_as_a_big_one(scheduler_kind, cluster_factory, monkeypatch, tmp_path):
    """rask's graph helper makes a big graph's records in forked processes (100,000 tasks
    or more), and the scheduler takes a big graph in over several turns (more than 10,000
    tasks); told to treat every graph so, the examples give the same results. The
    variables mean nothing to the stock scheduler."""
    monkeypatch.setenv("RASK_HELPER_PARALLEL_MIN", "2")
    monkeypatch.setenv("RASK_HELPER_PICKLERS", "3")
    monkeypatch.setenv("RASK_INGEST_BATCH", "5")
    cluster = cluster_factory()
    cluster.add_workers(2)
    client = cluster.client()
    try:
        test_delayed_inc_double_add_sum(client)
        test_read_csv_filter_plus_one(client, tmp_path)
        test_array_transpose_slice_mean(client)
    finally:
        client.close(timeout=10)
    if scheduler_kind == "rask":
        log = cluster.scheduler.log_path.read_text(errors="replace")
        # (as many as the CPUs, at most 3)
        assert " processes, the largest child's" in log
        assert "graph taken in over " in log
