"""A real Dask workload on a rask cluster: delayed, futures, arrays and dataframes.

Every result is checked against the same computation under Dask's local synchronous
scheduler; a mismatch exits 1. Usage:

    rask run examples/quickstart.py          # a local rask cluster for the script's lifetime
    python examples/quickstart.py --scheduler-file FILE   # (or ADDRESS) an existing cluster

Without an address or a file, ``Client()`` connects to ``DASK_SCHEDULER_ADDRESS``, which
``rask run`` sets.
"""

import argparse
import sys
import time

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client


def inc(x):
    return x + 1


def double(x):
    return 2 * x


def add(x, y):
    return x + y


def main():
    p = argparse.ArgumentParser()
    p.add_argument("address", nargs="?")
    p.add_argument("--scheduler-file")
    args = p.parse_args()
    client = Client(args.address, scheduler_file=args.scheduler_file, timeout=30)
    client.wait_for_workers(1, timeout=60)
    info = client.scheduler_info()
    print(f"connected to {info['address']} with {len(info['workers'])} workers")

    t0 = time.perf_counter()
    # dask.delayed, as in the Dask docs
    total = dask.delayed(sum)([add(dask.delayed(inc)(i), dask.delayed(double)(i)) for i in range(100)])
    assert total.compute() == total.compute(scheduler="sync") == 14950
    print("delayed:   sum(inc(i) + double(i) for i < 100) =", total.compute())

    # futures
    futures = client.map(inc, range(1000))
    s = client.submit(sum, futures)
    assert s.result() == sum(range(1, 1001))
    print("futures:   sum(map(inc, range(1000))) =", s.result())

    # dask.array
    x = da.random.RandomState(0).random((2000, 2000), chunks=(500, 500))
    y = (x + x.T)[::2, 1000:].mean(axis=1)
    got, want = y.compute(), y.compute(scheduler="sync")
    np.testing.assert_allclose(got, want)
    print(f"array:     (x + x.T)[::2, 1000:].mean(axis=1) -> shape {got.shape}, sum {got.sum():.4f}")

    # dask.dataframe: groupby, and a merge (Dask's default P2P shuffle)
    pdf = pd.DataFrame({"k": np.arange(10_000) % 17, "v": np.arange(10_000, dtype=float)})
    df = dd.from_pandas(pdf, npartitions=8)
    g = df.groupby("k").v.agg(["sum", "mean", "count"])
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):  # the local reference
        want = df.groupby("k").v.agg(["sum", "mean", "count"]).compute(scheduler="sync")
    pd.testing.assert_frame_equal(g.compute().sort_index(), want.sort_index())
    m = df.merge(dd.from_pandas(pdf.groupby("k").v.max().rename("vmax").reset_index(), npartitions=2), on="k")
    assert len(m.compute()) == len(pdf)
    print(f"dataframe: groupby agg over {len(pdf)} rows, {len(g.compute())} groups; merge ok")

    print(f"all results match Dask's local scheduler ({time.perf_counter() - t0:.1f} s)")
    client.close()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"MISMATCH: a result differs from Dask's local scheduler: {e}", file=sys.stderr)
        sys.exit(1)
