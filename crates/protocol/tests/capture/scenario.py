"""Golden-capture scenario for rask-protocol: one client exercising the message shapes the
golden tests pin (run by capture.sh against a stock `dask scheduler` and 2 stock workers).

Phases, in order (pick_golden.py relies on the order of the update-graph messages):
  1. delayed graph            -> update-graph #1 (HLG expr), compute-task/task-finished
  2. dask.array with tuple keys -> update-graph #2, compute-task with tuple keys in who_has
  3. dask.dataframe read_csv+groupby -> update-graph #3 (many out-of-band pickle-5 buffers)
  4. scatter via the scheduler -> scheduler->worker update_data with Serialized data
  5. submit on a tuple key + gather -> get_data reply with Serialized data
  6. a raising task           -> task-erred with Serialized exception/traceback
"""
import os
import tempfile

import dask.array as da
import dask.dataframe as dd
import pandas as pd
from dask import delayed
from distributed import Client


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def fail(x):
    raise ValueError(f"boom {x}")


if __name__ == "__main__":
    c = Client(os.environ["DASK_SCHED"])

    total = delayed(sum)([delayed(add)(delayed(inc)(i), i) for i in range(3)])
    print("RESULT delayed", total.compute())

    x = da.ones((6, 6), chunks=3)
    print("RESULT array", (x + x.T)[::2].mean().compute())

    tmp = tempfile.mkdtemp(prefix="rask_golden_csv_")
    for i in range(2):
        pd.DataFrame(
            {"g": ["a", "b", "c", "a"], "x": [1, 2, 3, 4 + i], "y": [10, 20, 30, 40]}
        ).to_csv(f"{tmp}/part-{i}.csv", index=False)
    df = dd.read_csv(f"{tmp}/part-*.csv")
    print("RESULT dataframe", df[df.x > 1].groupby("g").y.sum().compute().to_dict())

    [s] = c.scatter([10])
    print("RESULT scattered+1", c.submit(inc, s).result())

    t = c.submit(inc, 5, key=("tuple-key", 0))
    print("RESULT tuple gather", c.gather(t))

    e = c.submit(fail, 1)
    try:
        e.result()
    except ValueError as err:
        print("RESULT caught", repr(err))

    c.close()
