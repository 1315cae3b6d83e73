"""Writes tests/data/ordering.msgpack: graph helper records made with "rust_order" (no
`order`; `hash` and `deps_table` instead) next to the priorities Python's dask.order gives
the same graphs in the same helper process. `ordering.rs` checks that rask's ordering
reproduces them exactly.

    .venv/bin/python crates/server/tests/gen_ordering_fixture.py
"""

import operator
import os
import sys
import tempfile
from pathlib import Path

import msgpack

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "tests" / "helper"))

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
from dask import delayed  # noqa: E402
from test_graph_helper import (  # noqa: E402
    Helper, collection_expr, helper_request, update_graph_frames)


def graphs():
    x = da.ones((60, 60), chunks=10)
    yield "array", ((x + x.T) - x.mean(axis=0)).std(axis=1).sum()
    yield "rechunk", da.ones((40, 40), chunks=(5, 40)).rechunk((40, 5)).sum()
    yield "bag", db.from_sequence(range(200), npartitions=20).map(operator.neg).fold(operator.add)
    parts = [delayed(operator.add)(i, 1) for i in range(30)]
    yield "merge", delayed(sum)(parts)
    level = parts
    while len(level) > 1:
        level = [delayed(operator.add)(a, b) for a, b in zip(level[::2], level[1::2])] + (
            [level[-1]] if len(level) % 2 else [])
    yield "tree", level[0]
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):
        df = dask.datasets.timeseries(end="2000-01-03", freq="1h", partition_freq="6h", seed=1)
        yield "groupby", df.groupby("name").x.mean()
        yield "merge_df", df.merge(df, on="id").x_x.sum()


def main():
    out = []
    with tempfile.TemporaryDirectory() as d:
        # a hash seed other than 0 (rask-order's default), so that the hashes the records
        # carry are what makes the result match
        helper = Helper(Path(d), env=dict(os.environ, PYTHONHASHSEED="4242"))
        for name, coll in graphs():
            expr, keys = collection_expr(coll)
            req = helper_request(update_graph_frames(expr, keys))
            py = helper.call("update_graph", **req)
            rust = helper.call("update_graph", rust_order=True, **req)
            assert py["status"] == rust["status"] == "OK", (py, rust)
            expected = {repr(t["key"]): t["order"] for t in py["tasks"]}
            records = [dict(t, run_spec=b"") for t in rust["tasks"]]
            assert all("order" not in r for r in records)
            out.append({"name": name, "records": records,
                        "expected": [expected[repr(r["key"])] for r in records]})
        helper.close()
    path = HERE / "data" / "ordering.msgpack"
    path.write_bytes(msgpack.packb(out, use_bin_type=True))
    print(f"wrote {path} ({path.stat().st_size} bytes, "
          f"{sum(len(g['records']) for g in out)} tasks in {len(out)} graphs)")


if __name__ == "__main__":
    main()
