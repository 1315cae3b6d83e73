"""The benchmark graphs: the RSDS suite (merge-N, tree-N, array reduction, bag, pandas
groupby and join), `client.map` of N no-op tasks, delayed graphs, the seed document's
examples and a 1M-task graph.

Every case is built before the clock starts (`Case.build()`), then submitted and waited
for (`Case.run(client, built)`). Task functions are builtins or `operator` functions so the
graphs pickle small and every worker can import them. With zero workers the results are
placeholders, so only stock-worker runs compare results (`Case.check`).
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class Case:
    name: str
    # what the case is, for the report
    about: str
    build: Callable[[], Any]
    run: Callable[[Any, Any], Any]
    # the sync-scheduler result, computed once; None: nothing to compare
    expected: Callable[[Any], Any] | None = None
    # a task count known up front (low-level graphs); otherwise counted by the zero worker
    tasks: int | None = None


def _get(client, built):
    dsk, keys = built
    return client.get(dsk, keys, sync=True)


def _get_sync(built):
    import dask

    dsk, keys = built
    return dask.get(dsk, keys)


def merge(n: int) -> Case:
    """RSDS merge-N: N independent tasks and one that takes them all."""

    def build():
        dsk = {("noop", i): (operator.add, i, 1) for i in range(n)}
        dsk["merge"] = (sum, [("noop", i) for i in range(n)])
        return dsk, "merge"

    return Case(f"merge-{_size(n)}", f"{n:,} independent tasks + 1 reducer", build, _get,
                _get_sync, tasks=n + 1)


def tree(depth: int) -> Case:
    """RSDS tree-N: a binary reduction of 2**N leaves."""

    def build():
        width = 2**depth
        dsk = {("tree-0", i): (operator.add, i, 1) for i in range(width)}
        level = 0
        while width > 1:
            width //= 2
            for i in range(width):
                dsk[(f"tree-{level + 1}", i)] = (
                    operator.add, (f"tree-{level}", 2 * i), (f"tree-{level}", 2 * i + 1))
            level += 1
        return dsk, (f"tree-{level}", 0)

    return Case(f"tree-{depth}", f"binary reduction of 2^{depth} leaves", build, _get, _get_sync,
                tasks=2 ** (depth + 1) - 1)


def reduce_1m(n: int = 1_000_000, fan_in: int = 1000) -> Case:
    """A 1M-task graph: n independent tasks summed in groups of `fan_in`, then in one."""

    def build():
        dsk = {("leaf", i): (operator.add, i, 1) for i in range(n)}
        groups = n // fan_in
        for g in range(groups):
            dsk[("part", g)] = (sum, [("leaf", i) for i in range(g * fan_in, (g + 1) * fan_in)])
        dsk["total"] = (sum, [("part", g) for g in range(groups)])
        return dsk, "total"

    return Case(f"reduce-{_size(n)}", f"{n:,} tasks summed {fan_in} at a time", build, _get,
                _get_sync, tasks=n + n // fan_in + 1)


def delayed_merge(n: int) -> Case:
    """A merge written with dask.delayed, `delayed(max)(*parts)` over n calls, timed from
    building the delayed objects (graph construction on the client is in the time). The
    scheduler culls a delayed graph one layer per task; Dask's cull is quadratic there."""

    def run(client, _):
        from dask import delayed

        parts = [delayed(operator.add)(i, 1) for i in range(n)]
        return client.compute(delayed(max)(*parts), sync=True)

    return Case(f"delayed-merge-{_size(n)}", f"dask.delayed: {n:,} calls + 1 taking them all, "
                "graph construction included", lambda: None, run, lambda _: n, tasks=n + 1)


def seed_delayed(n: int) -> Case:
    """The seed document's delayed example over n items (inc, double, add per item, then
    `delayed(sum)` of all), with operator functions the workers can import, timed from
    building the delayed objects: `delayed(sum)(list)` optimizes its argument on the client,
    which is quadratic in Dask (the same on both schedulers)."""

    def run(client, _):
        from dask import delayed

        out = []
        for x in range(n):
            a = delayed(operator.add)(x, 1)
            b = delayed(operator.mul)(x, 2)
            out.append(delayed(operator.add)(a, b))
        return client.compute(delayed(sum)(out), sync=True)

    return Case(f"seed-delayed-{_size(n)}", f"the seed's delayed example over {n:,} items "
                "(3 calls each + sum), graph construction included", lambda: None, run,
                lambda _: sum((x + 1) + 2 * x for x in range(n)), tasks=3 * n + 1)


def client_map(n: int) -> Case:
    """`client.gather(client.map(f, range(n)))` with a builtin no-op-like function."""

    def run(client, _):
        return client.gather(client.map(operator.neg, range(n), pure=False))

    return Case(f"map-{_size(n)}", f"client.map of {n:,} no-op tasks", lambda: None, run,
                lambda _: [-i for i in range(n)], tasks=n)


def compute_many(n: int) -> Case:
    """`dask.compute(*parts)` over n two-call delayed chains (2n tasks), timed from building
    them."""

    def run(client, _):
        import dask
        from dask import delayed

        parts = [delayed(operator.mul)(delayed(operator.add)(i, 1), 2) for i in range(n)]
        return list(dask.compute(*parts))

    return Case(f"compute-many-{_size(n)}", f"dask.compute(*parts) over {n:,} delayed "
                "chains of 2 calls, construction included", lambda: None, run,
                lambda _: [(i + 1) * 2 for i in range(n)], tasks=2 * n)


@functools.cache
def _csv_files(partitions: int, rows: int) -> str:
    """A directory of `partitions` CSV files of `rows` random rows, removed at exit."""
    import atexit
    import shutil
    import tempfile

    import numpy as np
    import pandas as pd

    path = tempfile.mkdtemp(prefix="rask-bench-csv-")
    atexit.register(shutil.rmtree, path, True)
    rng = np.random.default_rng(0)
    for i in range(partitions):
        pd.DataFrame({"g": rng.choice(list("abcdefgh"), rows),
                      "x": rng.integers(-100, 100, rows),
                      "y": rng.random(rows)}).to_csv(f"{path}/part-{i:03d}.csv", index=False)
    return path


def read_csv_filter(partitions: int, rows: int = 20_000) -> Case:
    """The seed's dataframe example: read_csv over one CSV file per partition, a filter and
    a groupby sum. The files are written by `build`, before the clock starts."""

    def build():
        import dask.dataframe as dd

        df = dd.read_csv(f"{_csv_files(partitions, rows)}/part-*.csv")
        return df[df.x > 0].groupby("g").y.sum()

    return Case(f"read-csv-{partitions}p", f"dask.dataframe read_csv of {partitions} files "
                f"x {rows:,} rows, filter, groupby('g').y.sum()", build, _compute,
                lambda x: x.compute(scheduler="sync").sort_index())


def seed_array(side: int = 10_000, chunk: int = 1000) -> Case:
    """The seed's (and Dask's quick-start's) array example: `(x + x.T)[::2, side/2:]
    .mean(axis=1)` on random data; 8 MB blocks, so it also shows what queuing holds back."""

    def build():
        import dask.array as da

        x = da.random.random((side, side), chunks=(chunk, chunk))
        return (x + x.T)[::2, side // 2:].mean(axis=1)

    return Case(f"random-array-{(side // chunk) ** 2}b", f"dask.array random {side}x{side}, "
                f"{chunk}x{chunk} chunks: (x + x.T)[::2, {side // 2}:].mean(axis=1)", build,
                _compute, lambda x: x.compute(scheduler="sync"))


def _compute(client, x):
    return client.compute(x, sync=True)


def array(side: int, chunk: int) -> Case:
    """numpy/xarray-like: anomalies from the column mean, then a reduction."""

    def build():
        import dask.array as da

        x = da.ones((side, side), chunks=(chunk, chunk))
        return ((x + x.T) - x.mean(axis=0)).std(axis=1).sum()

    blocks = (side // chunk) ** 2
    return Case(f"array-{blocks}b", f"dask.array {side}x{side}, {chunk}x{chunk} chunks: "
                "((x + x.T) - x.mean(axis=0)).std(axis=1).sum()", build, _compute,
                lambda x: x.compute(scheduler="sync"))


def bag(n: int, partitions: int) -> Case:
    """dask.bag map / filter / fold."""

    def build():
        import dask.bag as db

        b = db.from_sequence(range(n), npartitions=partitions)
        return b.map(operator.neg).filter(operator.truth).fold(operator.add)

    return Case(f"bag-{partitions}p", f"dask.bag of {n:,} items in {partitions} partitions: "
                "map/filter/fold", build, _compute, lambda x: x.compute(scheduler="sync"))


def _timeseries(partitions: int, seed: int):
    import dask

    # one partition per hour; dask.datasets builds each partition inside its task
    return dask.datasets.timeseries(
        start="2000-01-01", end=f"2000-01-{1 + partitions // 24:02d}T{partitions % 24:02d}",
        freq="10s", partition_freq="1h", seed=seed, dtypes={"name": str, "id": int, "x": float})


def groupby(partitions: int) -> Case:
    """pandas groupby-aggregation over a timeseries dataframe."""

    def build():
        df = _timeseries(partitions, 0)
        return df.groupby("name").x.mean()

    return Case(f"groupby-{partitions}p", f"dask.dataframe groupby('name').x.mean(), "
                f"{partitions} partitions", build, _compute,
                lambda x: x.compute(scheduler="sync").sort_index())


def join(partitions: int) -> Case:
    """pandas join with the task-based shuffle (all-to-all; no P2P)."""

    def build():
        left = _timeseries(partitions, 1)[["id", "x"]]
        right = _timeseries(partitions, 2)[["id", "x"]].groupby("id").x.sum().to_frame("y")
        return left.merge(right, left_on="id", right_index=True, shuffle_method="tasks").x.sum()

    return Case(f"join-{partitions}p", f"dask.dataframe merge on 'id' with the task shuffle, "
                f"{partitions} partitions", build, _compute,
                lambda x: x.compute(scheduler="sync"))


def _size(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def zero_worker_suite() -> list[Case]:
    """Scheduler alone: every task finishes at once, so only the scheduler is measured."""
    return [
        merge(1_000), merge(20_000), delayed_merge(20_000), tree(10), tree(15),
        client_map(10_000), array(3000, 50), bag(200_000, 2_000), groupby(720), join(240),
    ]


def stock_worker_suite() -> list[Case]:
    """Real execution on stock Python workers: sizes a 2-core machine runs in seconds."""
    return [
        merge(1_000), merge(10_000), tree(12), array(2000, 100), bag(100_000, 500),
        groupby(240), join(72),
    ]


def users_suite() -> list[Case]:
    """The graphs users write (the seed document's examples, `client.map`, `dask.compute`
    of many delayed objects), on stock workers; run with Dask's default config and with
    `worker-saturation: inf`."""
    return [
        seed_delayed(3_000), seed_delayed(10_000), read_csv_filter(100), seed_array(),
        client_map(10_000), compute_many(5_000),
    ]


def million() -> Case:
    return reduce_1m()


def by_name() -> dict[str, Case]:
    cases = zero_worker_suite() + stock_worker_suite() + users_suite() + [million()]
    return {c.name: c for c in cases}
