"""Generate test cases for rask-order: graphs, and what ``dask.order.order`` (dask 2026.8.0)
returns for them.

Run with the pinned environment's interpreter (``.venv/bin/python``)::

    gen_cases.py fixtures              # rewrite the committed fixtures in tests/fixtures/:
                                       # collections, dask's test_order.py graphs, random
                                       # DAGs (two hash seeds), keys (str/hash)
    gen_cases.py random START COUNT    # COUNT random graphs (seeds START..) to stdout
    gen_cases.py collections SCALE     # the collection graphs, SCALE times bigger, to stdout
    gen_cases.py big PATH              # the 1M-task and 100k-node graphs to PATH (+ timings)

Options: --hashseed N (default 0), --with-hashes, --max-n N (random graphs' size cap).

Python's set iteration order -- which dask.order's result depends on -- follows ``hash()``,
which is salted per process by PYTHONHASHSEED. Modes run under PYTHONHASHSEED=0 (the script
re-executes itself if needed) unless ``--hashseed N`` is given; with ``--with-hashes`` every
node's ``hash(key)`` is written too, so the Rust side uses Python's hashes instead of
computing them.

Graphs are produced the way the scheduler gets them: a collection goes through
``collections_to_expr`` + ``FinalizeCompute`` + ``optimize`` (``Client.compute``), a pickle
round trip (client -> scheduler), ``distributed.scheduler._materialize_graph`` and, for
``LLGExpr``, ``_cull``; ``dask.order.order(dsk)`` is then called on that very ``dsk``.

Binary format (all integers LEB128; "sv" = zigzag-encoded signed)::

    file  := b"RKORD1\\n" case*
    case  := name:str flags:uv [error:str] n:uv nstrings:uv str* node{n} hashsum:u64le
    str   := len:uv utf8-bytes
    node  := key kind:u8 ndeps:uv (i - dep):sv{ndeps} table_size:uv nlegacy:uv (i - arg):sv{nlegacy}
             [hash:i64le] expected:sv
    key   := 0 strindex:uv | 1 int:sv | 2 float:f64le | 3 len:uv bytes | 4 len:uv key*
    kind  := 0 task | 1 data (not istask) | 2 external (a dependency not in dsk)
    flags := bit 0: per-node hashes present; bit 1: dask.order.order raised (error: the
             exception type; expected values are then 0)
    table_size: 0 = what frozenset(set) would give, else the deps set's hash table size
    legacy: for a non-GraphNode value, get_dependencies(dsk, task=value, as_list=True)
    hashsum: sum of hash(key) over all nodes, mod 2**64 (checks the Rust hash emulation)
    expected: dask.order.order(dsk)[key] (0 for externals)
"""

from __future__ import annotations

import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
MAGIC = b"RKORD1\n"


def _ensure_hashseed(want: str):
    if os.environ.get("PYTHONHASHSEED") != want:
        env = dict(os.environ, PYTHONHASHSEED=want)
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


# --------------------------------------------------------------------------- encoding


def uv(out: bytearray, x: int) -> None:
    assert x >= 0
    while True:
        b = x & 0x7F
        x >>= 7
        if x:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def sv(out: bytearray, x: int) -> None:
    uv(out, (x << 1) if x >= 0 else ((-x) << 1) - 1)


class Writer:
    def __init__(self, with_hashes: bool):
        self.with_hashes = with_hashes
        self.buf = bytearray(MAGIC)
        self.ncases = 0

    def case(self, name: str, dsk: dict, expected: dict | None = None):
        import struct

        from dask._task_spec import DataNode, GraphNode
        from dask.core import get_dependencies, istask
        from dask.order import order

        keys = list(dsk)
        index = {k: i for i, k in enumerate(keys)}
        deps_of = []
        for k in list(dsk):
            v = dsk[k]
            deps = v.dependencies if isinstance(v, GraphNode) else get_dependencies(dsk, task=v)
            deps_of.append(deps)
        for deps in list(deps_of):
            for d in deps:
                if d not in index:
                    index[d] = len(keys)
                    keys.append(d)
                    deps_of.append(frozenset())
        error = None
        if expected is None:
            try:
                expected = order(dsk)
            except Exception as e:  # dask.order's own failures (cycles, legacy-graph bugs)
                error = type(e).__name__
                expected = {}
        empty = sys.getsizeof(frozenset())
        strings: dict[str, int] = {}
        body = bytearray()

        def key(k):
            t = type(k)
            if t is str:
                body.append(0)
                uv(body, strings.setdefault(k, len(strings)))
            elif t is int:
                body.append(1)
                sv(body, k)
            elif t is float:
                body.append(2)
                body.extend(struct.pack("<d", k))
            elif t is bytes:
                body.append(3)
                uv(body, len(k))
                body.extend(k)
            elif t is tuple:
                body.append(4)
                uv(body, len(k))
                for e in k:
                    key(e)
            else:
                raise TypeError(f"unsupported key {k!r}")

        hashsum = 0
        for i, k in enumerate(keys):
            key(k)
            if k in dsk:
                body.append(0 if istask(dsk[k]) else 1)
            else:
                body.append(2)
            deps = deps_of[i]
            uv(body, len(deps))
            for d in deps:
                sv(body, i - index[d])
            size = (sys.getsizeof(deps) - empty) // 16 or 8
            n = len(deps)
            rule = 8
            if n * 5 >= 21:
                while rule <= 2 * n:
                    rule <<= 1
            uv(body, 0 if size == rule else size)
            if k in dsk and not isinstance(dsk[k], GraphNode):
                args = get_dependencies(dsk, task=dsk[k], as_list=True)
                uv(body, len(args))
                for a in args:
                    sv(body, i - index[a])
            else:
                uv(body, 0)
            h = hash(k)
            hashsum = (hashsum + h) % (1 << 64)
            if self.with_hashes:
                body += struct.pack("<q", h)
            sv(body, expected.get(k, 0) if k in dsk else 0)
        head = bytearray()
        nb = name.encode()
        uv(head, len(nb))
        head += nb
        uv(head, (1 if self.with_hashes else 0) | (2 if error else 0))
        if error:
            eb = error.encode()
            uv(head, len(eb))
            head += eb
        uv(head, len(keys))
        uv(head, len(strings))
        for s in strings:
            b = s.encode("utf-8", "surrogatepass")
            uv(head, len(b))
            head += b
        self.buf += head + body + struct.pack("<Q", hashsum)
        self.ncases += 1
        assert not [k for k in dsk if isinstance(dsk[k], DataNode) and dsk[k].dependencies]


# --------------------------------------------------------------------------- graphs


def scheduler_dsk(collections) -> dict:
    """The dsk Scheduler.update_graph orders for ``client.compute(collections)``."""
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    expr = collections_to_expr(list(collections), True)
    expr = FinalizeCompute(expr)
    expr = expr.optimize()
    return scheduler_dsk_from_expr(expr)


def scheduler_dsk_persist(collections) -> dict:
    """The dsk Scheduler.update_graph orders for ``client.persist(collections)``."""
    from dask.base import collections_to_expr

    return scheduler_dsk_from_expr(collections_to_expr(list(collections), True).optimize())


def scheduler_dsk_from_expr(expr, keys=None) -> dict:
    from dask._expr import LLGExpr
    from dask.core import flatten

    from distributed.protocol import deserialize, serialize, to_serialize
    from distributed.scheduler import _cull, _materialize_graph

    keys = set(flatten(expr.__dask_keys__())) if keys is None else set(keys)
    header, frames = serialize(to_serialize(expr), on_error="raise")
    expr = deserialize(header, frames)
    dsk, _ = _materialize_graph(expr, validate=False)
    if isinstance(expr, LLGExpr):
        dsk = _cull(dsk, keys)
    return dsk


def _inc(x):
    return x + 1


def _add(*args):
    return sum(args)


def llg(dsk: dict) -> dict:
    """Tasks built client-side (submit/delayed-like): pickled to the scheduler."""
    from dask._expr import LLGExpr

    return scheduler_dsk_from_expr(LLGExpr(dsk))


def collection_graphs(scale: int = 1):
    """(name, dsk) for graphs of real dask collections."""
    import numpy as np
    import pandas as pd

    import dask
    import dask.array as da
    import dask.bag as db
    import dask.dataframe as dd
    from dask._task_spec import Task, TaskRef

    x = da.ones((200 * scale, 200 * scale), chunks=(20, 20))
    yield "array-sum", scheduler_dsk([x.sum()])
    yield "array-mean-axis0", scheduler_dsk([x.mean(axis=0)])
    yield "array-mean-split4", scheduler_dsk([x.mean(split_every=4)])
    yield "array-x-plus-xT", scheduler_dsk([x + x.T])
    yield "array-rechunk", scheduler_dsk([x.rechunk((40, 10))])
    yield "array-rechunk-irregular", scheduler_dsk([x.rechunk((30, 70))])
    y = da.ones((120 * scale, 120 * scale), chunks=(20, 20))
    yield "array-matmul", scheduler_dsk([y @ y])
    yield "array-map-overlap", scheduler_dsk([x.map_overlap(lambda a: a, depth=1, boundary="none")])
    yield "array-map-overlap-2", scheduler_dsk(
        [x.map_overlap(lambda a: a + 1, depth=2).map_overlap(lambda a: a, depth=1).sum()]
    )
    z = da.random.default_rng(42).random((100 * scale, 100 * scale), chunks=(10, 10))
    yield "array-random-std-persist-like", scheduler_dsk([(z - z.mean(axis=0)).std(), z.max()])
    a = da.from_array(np.arange(4000 * scale).reshape(40 * scale, 100), chunks=(10, 10))
    yield "array-from-numpy", scheduler_dsk([(a * 2).sum(axis=1)])
    yield "array-svd-tsqr", scheduler_dsk(list(da.linalg.tsqr(da.ones((400 * scale, 20), chunks=(40, 20)))))
    yield "array-cumsum", scheduler_dsk([x.cumsum(axis=1)])
    yield "array-argmin", scheduler_dsk([x.argmin(axis=0)])
    yield "array-persist-sum-axis0", scheduler_dsk_persist([(x + 1).sum(axis=0), x.T + 1])
    target = np.empty((200 * scale, 200 * scale))
    yield "array-store", scheduler_dsk([da.store((x + 1).T, target, lock=False, compute=False)])
    yield "array-concat-stack", scheduler_dsk([da.concatenate([x, x.T], axis=0)[::3].sum(axis=0)])

    df = dd.from_pandas(
        pd.DataFrame({"a": np.arange(2000) % 17, "b": np.arange(2000), "c": np.arange(2000) % 5}),
        npartitions=16 * scale,
    )
    yield "df-groupby-agg", scheduler_dsk([df.groupby("a").b.sum()])
    yield "df-groupby-agg-split", scheduler_dsk([df.groupby("a").agg({"b": "mean", "c": "max"}, split_out=4)])
    yield "df-sum-mean", scheduler_dsk([df.b.sum(), df.c.mean()])
    with dask.config.set({"dataframe.shuffle.method": "tasks"}):
        df2 = dd.from_pandas(pd.DataFrame({"a": np.arange(1000) % 23, "d": np.arange(1000)}), npartitions=12 * scale)
        yield "df-merge-tasks", scheduler_dsk([df.merge(df2, on="a")])
        yield "df-set-index-tasks", scheduler_dsk([df.set_index("b")])
        yield "df-shuffle-tasks-32", scheduler_dsk(
            [dd.from_pandas(pd.DataFrame({"a": np.arange(3200)}), npartitions=32 * scale).shuffle("a")]
        )
    with dask.config.set({"dataframe.shuffle.method": "p2p"}):
        yield "df-merge-p2p", scheduler_dsk([df.merge(df2, on="a")])
        yield "df-set-index-p2p", scheduler_dsk([df.set_index("b")])

    b = db.from_sequence(range(2000 * scale), npartitions=25 * scale)
    yield "bag-map-filter-fold", scheduler_dsk([b.map(_inc).filter(lambda v: v % 3).fold(_add)])
    yield "bag-frequencies", scheduler_dsk([b.map(lambda v: v % 7).frequencies()])
    yield "bag-groupby", scheduler_dsk([b.groupby(lambda v: v % 5)])

    rnd = random.Random(7)

    @dask.delayed(pure=True)  # deterministic keys: reproducible fixtures
    def f(*args):
        return 1

    leaves = [f(i) for i in range(60 * scale)]
    level = leaves
    while len(level) > 1:
        nxt = []
        i = 0
        while i < len(level):
            k = rnd.randint(2, 5)
            nxt.append(f(*level[i : i + k]))
            i += k
        level = nxt
    yield "delayed-tree", scheduler_dsk(level)
    many = [f(*(leaves[j] for j in rnd.sample(range(60 * scale), rnd.randint(1, 12)))) for _ in range(40 * scale)]
    yield "delayed-dag", scheduler_dsk([f(*many)])

    for n in (10 * scale, 100 * scale, 1000 * scale):
        dsk = {("inc", i): Task(("inc", i), _inc, i) for i in range(n)}
        dsk["merge"] = Task("merge", _add, *(TaskRef(("inc", i)) for i in range(n)))
        yield f"merge-{n}", llg(dsk)
    for n in (16 * scale, 1000 * scale):
        dsk = {("leaf", i): Task(("leaf", i), _inc, i) for i in range(n)}
        level = [("leaf", i) for i in range(n)]
        depth = 0
        while len(level) > 1:
            depth += 1
            nxt = []
            for j in range(0, len(level), 2):
                k = (f"tree-{depth}", j // 2)
                dsk[k] = Task(k, _add, *(TaskRef(t) for t in level[j : j + 2]))
                nxt.append(k)
            level = nxt
        yield f"tree-{n}", llg(dsk)

    def mapped(n, **kwargs):
        return map_dsk(n, **kwargs)

    # total_dependencies grows like 2**depth: exceeds u128 (Python ints are unbounded)
    dsk = {("a", 0): Task(("a", 0), _inc, 0), ("b", 0): Task(("b", 0), _inc, 1)}
    for i in range(1, 200 * scale):
        for n in ("a", "b", "c"[: i % 7 == 0]):
            if n:
                dsk[(n, i)] = Task((n, i), _add, TaskRef(("a", i - 1)), TaskRef(("b", i - 1)))
    dsk["end"] = Task("end", _add, TaskRef(("a", 200 * scale - 1)), TaskRef(("b", 200 * scale - 1)))
    yield "lattice-200", llg(dsk)

    yield "client-map-500", mapped(500 * scale)
    yield "client-map-big-kwarg", mapped(50 * scale, big=np.zeros(20000))


def map_dsk(n, **kwargs):
    """client.map(_inc, range(n), **kwargs) (the client sends its own priorities for map,
    but the graph is the canonical 'n independent tasks')."""
    from distributed.client import _MapExpr

    expr = _MapExpr(_inc, [list(range(n))], key="inc", pure=True, annotations={}, kwargs=kwargs)
    return scheduler_dsk_from_expr(expr, keys=list(expr.keys))


# --------------------------------------------------------------------------- random graphs


NAMES = ["x", "y", "inc-3f2a", "sum", "f", "getitem-aa", "a", "b"]


def random_key(rnd: random.Random, i: int, used: set):
    while True:
        r = rnd.random()
        name = rnd.choice(NAMES)
        if r < 0.45:
            k = (name, rnd.randint(0, 3 * (i + 1)))
        elif r < 0.6:
            k = (name, rnd.randint(0, 9), rnd.randint(0, 12))
        elif r < 0.85:
            k = f"{name}-{rnd.randint(0, 5 * (i + 1))}"
        elif r < 0.9:
            k = rnd.randint(-50, 10**6)
        elif r < 0.93:
            k = rnd.choice([0.5, 1.25, -3.0, 1e20, 2.5e-7]) * rnd.randint(1, 9)
        elif r < 0.96:
            k = f"{name}-{rnd.randint(0, 99)}".encode()
        elif r < 0.97:
            k = (name, (rnd.randint(0, 3), "it's"), rnd.randint(0, 3))
        elif r < 0.98:
            k = (rnd.choice(["é", "Ω\n", "a\x00b", "zero\u200b", "\U0001f600", "b\\s"]), rnd.randint(0, 9))
        else:
            k = rnd.choice(["é-", "ü\t", "Ω", "snow☃", 'q"uote', "zero\u200b"]) + str(rnd.randint(0, 99))
        s = str(k)
        if k not in used and s not in used:
            used.add(k)
            used.add(s)
            return k


def random_graph(seed: int, max_n: int = 1500):
    """A random DAG with a mix of node types (incl. legacy values the scheduler never
    sees, to cover dask.order's removal of non-task leaves)."""
    import pickle

    from dask._task_spec import Alias, DataNode, Task, TaskRef

    rnd = random.Random(seed)
    shape = rnd.random()
    if shape < 0.5:
        n = rnd.randint(1, 40)
    elif shape < 0.9:
        n = rnd.randint(40, 250)
    else:
        n = rnd.randint(250, 1500)
    n = min(n, max_n)
    used: set = set()
    keys = [random_key(rnd, i, used) for i in range(n)]
    ncomp = 1 if rnd.random() < 0.6 else rnd.randint(2, 6)
    comp = [rnd.randrange(ncomp) for _ in range(n)]
    p_root = rnd.choice([0.05, 0.15, 0.4])
    fan = rnd.choice([1, 2, 3, 6, 20])
    hubs = [i for i in range(n) if rnd.random() < 0.03]
    n_ext = rnd.choice([0, 0, 0, 1, 3])
    ext_keys = [("ext-future", j) for j in range(n_ext)]
    dsk = {}
    for i in range(n):
        cands = [j for j in range(max(0, i - rnd.choice([5, 30, n])), i) if comp[j] == comp[i]]
        deps = []
        if cands and rnd.random() > p_root:
            m = min(len(cands), max(1, int(rnd.expovariate(1 / fan))))
            deps = [keys[j] for j in rnd.sample(cands, m)]
            for h in hubs:
                if h < i and comp[h] == comp[i] and rnd.random() < 0.5 and keys[h] not in deps:
                    deps.append(keys[h])
        if ext_keys and rnd.random() < 0.1:
            deps.append(rnd.choice(ext_keys))
        k = keys[i]
        r = rnd.random()
        if any(d in ext_keys for d in deps):
            # legacy values only find dependencies among dsk's keys: with external keys
            # dask.order itself fails (KeyError), so those get a Task
            r = max(r, 0.16)
        if not deps:
            if r < 0.25:
                dsk[k] = DataNode(k, i)
            else:
                dsk[k] = Task(k, _inc, i)
        elif len(deps) == 1 and r < 0.15:
            dsk[k] = Alias(k, deps[0])
        elif len(deps) >= 2 and r < 0.08:
            dsk[k] = list(deps)  # legacy value: not a task (dask.core.istask is False)
        elif r < 0.16:
            dsk[k] = (_add, *deps)  # legacy tuple task
        else:
            args = [TaskRef(d) for d in deps]
            if rnd.random() < 0.2 and len(args) > 1:
                # nested GraphNode argument
                from dask._task_spec import List

                args = [List(*args[: len(args) // 2]), *args[len(args) // 2 :]]
            dsk[k] = Task(k, _add, *args)
            if rnd.random() < 0.3:
                dsk[k] = pickle.loads(pickle.dumps(dsk[k]))  # built client-side
    items = list(dsk.items())
    if rnd.random() < 0.5:
        rnd.shuffle(items)  # dsk order need not be topological
    return dict(items)


# --------------------------------------------------------------------------- modes


def dask_test_suite_graphs():
    """Every graph dask's own tests (dask/tests/test_order.py) pass to dask.order.order:
    hand-made tricky topologies, mostly in the legacy tuple format."""
    import pytest

    import dask.order

    recorded = []
    real = dask.order.order

    def recording(dsk, dependencies=None, **kwargs):
        recorded.append(dict(dsk))
        return real(dsk, dependencies, **kwargs)

    class Plugin:
        def pytest_runtest_setup(self, item):
            if getattr(item.module, "order", None) is real:
                item.module.order = recording
            dask.order.order = recording

        def pytest_runtest_teardown(self, item):
            dask.order.order = real

    import dask.tests.test_order as t

    path = t.__file__
    rc = pytest.main(["-q", "-p", "no:cacheprovider", "-x", "--no-header", "-W", "ignore", path], plugins=[Plugin()])
    if rc not in (0, 1):
        raise RuntimeError(f"pytest failed: {rc}")
    seen = set()
    for i, dsk in enumerate(recorded):
        sig = repr(sorted(map(str, dsk)))
        if sig in seen:
            continue
        seen.add(sig)
        yield f"dask-test-order-{i}", dsk


def key_json(k):
    """A key as tagged JSON (tests/keys.rs decodes it)."""
    t = type(k)
    if t is str:
        return {"s": k}
    if t is bytes:
        return {"b": k.hex()}
    if t is int:
        return {"i": str(k)}
    if t is float:
        import struct

        return {"f": struct.pack("<d", k).hex()}
    if t is tuple:
        return {"t": [key_json(e) for e in k]}
    raise TypeError(k)


def sample_keys():
    """Keys exercising str()/repr() and hash(): quotes, escapes, non-ASCII (1, 2 and 4 byte
    PEP 393 kinds), non-printable code points, floats, big ints, nesting."""
    rnd = random.Random(3)
    strs = [
        "", "x", "inc-5f3a9b", "it's", 'say "hi"', "both ' and \"", "back\\slash", "tab\tnl\ncr\r",
        "nul\x00", "del\x7f", "\x1b[0m", "é", "ÿ", "\x80\x9f\xa0\xad", "Ω≈", "\u200b\u2028\u3000", "日本語",
        "\ud7ff", "\ue000", "\ufeff", "\U0001f600", "\U000e0001", "\U0010ffff", "mixé\U0001f600", "\xa0nbsp",
    ]
    ints = [0, 1, -1, -2, 7, 2**31, -(2**31), 2**61 - 1, 2**61, 2**63 - 1, -(2**63), 2**64 - 1, 10**30, -(10**30)]
    floats = [0.0, -0.0, 1.0, -1.5, 0.1, 1e16, 1e15, 123456789.125, 1e-5, 1e-4, 2.5e-300, 5e-324,
              1.7976931348623157e308, float("inf"), float("-inf"), 3.0, 1e22, 0.3333333333333333]
    keys = list(strs) + ints + floats + [s.encode("utf-8", "surrogatepass") for s in strs[:12]]
    keys += [b"\x00\xff'", b'"', b"'\"", b"\\"]
    for s in strs:
        keys.append((s,))
        keys.append((s, rnd.randint(0, 99), rnd.choice(floats)))
    keys += [(), ((),), ("a", ("b", (1, 2.5, b"x"))), (1,), (1, 2), (-1, "x"), ("x", 10), ("x", 9)]
    for _ in range(200):
        keys.append((rnd.choice(strs), rnd.randint(-5, 10**6), rnd.choice(ints), rnd.choice(floats)))
    return keys


def write(path: str, w: Writer, what: str):
    with open(path, "wb") as f:
        f.write(w.buf)
    print(f"{os.path.relpath(path)}: {w.ncases} cases, {what}, {len(w.buf)} bytes", file=sys.stderr)


def mode_fixtures():
    """The committed fixtures (run under PYTHONHASHSEED=0)."""
    import subprocess

    os.makedirs(FIXTURES, exist_ok=True)
    w = Writer(with_hashes=False)
    nodes = 0
    for name, dsk in collection_graphs():
        w.case(name, dsk)
        nodes += len(dsk)
    write(os.path.join(FIXTURES, "collections.bin"), w, f"{nodes} tasks")

    w = Writer(with_hashes=False)
    nodes = 0
    for name, dsk in dask_test_suite_graphs():
        try:
            w.case(name, dsk)
        except TypeError as e:
            print(f"  skipped {name}: {e}", file=sys.stderr)
            continue
        nodes += len(dsk)
    write(os.path.join(FIXTURES, "dask-test-order.bin"), w, f"{nodes} tasks")

    w = Writer(with_hashes=False)
    nodes = 0
    for seed in range(400):
        dsk = random_graph(seed, max_n=400)
        nodes += len(dsk)
        w.case(f"random-{seed}", dsk)
    write(os.path.join(FIXTURES, "random.bin"), w, f"{nodes} tasks")

    import json

    keys = sample_keys()
    data = {
        "hashseed": int(os.environ["PYTHONHASHSEED"]),
        "keys": [{"key": key_json(k), "str": str(k), "hash": str(hash(k))} for k in keys],
    }
    path = os.path.join(FIXTURES, "keys.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=True, separators=(",", ":"))
    print(f"{os.path.relpath(path)}: {len(keys)} keys", file=sys.stderr)

    # Another process hash seed, Python's hash() values stored: what the graph helper would
    # pass from a process with a random seed.
    out = subprocess.run(
        [sys.executable, __file__, "random", "1000", "60", "--hashseed", "987654", "--with-hashes", "--max-n", "400"],
        check=True,
        capture_output=True,
    ).stdout
    path = os.path.join(FIXTURES, "random-hashseed-987654.bin")
    with open(path, "wb") as f:
        f.write(out)
    print(f"{os.path.relpath(path)}: 60 cases, {len(out)} bytes", file=sys.stderr)


def mode_collections(scale: int):
    w = Writer(with_hashes=False)
    for name, dsk in collection_graphs(scale):
        w.case(f"{name}-x{scale}", dsk)
    sys.stdout.buffer.write(w.buf)


def mode_random(start: int, count: int, with_hashes: bool, max_n: int = 1500):
    w = Writer(with_hashes=with_hashes)
    for seed in range(start, start + count):
        w.case(f"random-{seed}", random_graph(seed, max_n=max_n))
    sys.stdout.buffer.write(w.buf)


def mode_big(path: str):
    import dask.array as da
    from dask._task_spec import Task
    from dask.order import order

    w = Writer(with_hashes=False)
    timings = []
    dsk = map_dsk(1_000_000)
    assert all(isinstance(v, Task) for v in dsk.values())
    t = time.perf_counter()
    o = order(dsk)
    timings.append(("map-1M", len(dsk), time.perf_counter() - t))
    w.case("map-1M", dsk, o)
    x = da.ones((6850, 6850), chunks=(25, 25))  # 75k chunks, ~100k tasks
    dsk = scheduler_dsk([(x + 1).sum(split_every=4)])
    t = time.perf_counter()
    o = order(dsk)
    timings.append(("array-reduction", len(dsk), time.perf_counter() - t))
    w.case("array-reduction", dsk, o)
    with open(path, "wb") as f:
        f.write(w.buf)
    for name, n, s in timings:
        print(f"python dask.order.order {name}: {n} tasks, {s:.3f} s", file=sys.stderr)


def main():
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["fixtures", "random", "collections", "big"])
    p.add_argument("args", nargs="*")
    p.add_argument("--hashseed", default="0", help="PYTHONHASHSEED to run under")
    p.add_argument("--with-hashes", action="store_true", help="store hash(key) per node")
    p.add_argument("--max-n", type=int, default=1500, help="random graphs: max tasks")
    a = p.parse_args()
    _ensure_hashseed(a.hashseed)
    if a.mode == "fixtures":
        mode_fixtures()
    elif a.mode == "collections":
        mode_collections(int(a.args[0]))
    elif a.mode == "random":
        mode_random(int(a.args[0]), int(a.args[1]), a.with_hashes, a.max_n)
    else:
        mode_big(a.args[0])


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    main()
