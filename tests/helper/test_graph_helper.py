"""Tests for python/rask_graph_helper.py.

The helper is driven exactly like the Rust scheduler drives it: ``PYTHON -u -c <source>
serve`` in an unrelated working directory, u64-LE-length + msgpack framing on
stdin/stdout. Requests are built the way a stock client builds ``update-graph``
(``Client._graph_to_futures``, client.py:3373-3454), encoded with
``distributed.protocol.dumps`` and decoded again with a msgpack-only decoder like the
Rust codec, so the helper sees what it will see in production.

Results are checked against the stock scheduler itself: the same wire message is fed to
a real in-process ``distributed.Scheduler.update_graph`` (no workers), and the helper's
keys, deps, order, run_spec pickles, prefixes, groups, annotations and restrictions are
compared with the resulting ``TaskState``s; error replies are compared with the
``task-erred`` reports the stock scheduler produces.

Run: /work/venv/bin/python -m pytest tests/helper -q
"""

from __future__ import annotations

import json
import operator
import os
import pickle
import struct
import subprocess
import sys
import types
from pathlib import Path

import msgpack
import numpy as np
import pandas as pd
import pytest

import dask
import dask.array as da
import dask.dataframe as dd
from dask import delayed
from dask._expr import FinalizeCompute, LLGExpr
from dask._task_spec import DataNode, GraphNode, Task, TaskRef
from dask.base import collections_to_expr
from dask.core import flatten
from dask.utils import key_split

import distributed
from distributed.client import _MapExpr
from distributed.comm.addressing import resolve_address
from distributed.core import clean_exception
from distributed.protocol import dumps as wire_dumps
from distributed.protocol.serialize import Serialized, ToPickle, serialize, to_serialize
from distributed.spans import SpanMetadata

pytestmark = pytest.mark.timeout(180)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SOURCE = (ROOT / "python" / "rask_graph_helper.py").read_text()
PYTHON = os.environ.get("RASK_TEST_PYTHON", sys.executable)
# Helper and stock reference run with the same string-hash seed (see _stock_scheduler.py).
ENV = dict(os.environ, PYTHONHASHSEED="0")

DESERIALIZATION_TEXT = (
    "Error during deserialization of the task graph. This frequently\n"
    "occurs if the Scheduler and Client have different environments.\n"
    "For more information, see\n"
    "https://docs.dask.org/en/stable/deployment-considerations.html"
    "#consistent-software-environments\n"
)


# ---------------------------------------------------------------------------
# Driving the helper like the Rust scheduler
# ---------------------------------------------------------------------------


def _poisoned_cwd(path: Path) -> Path:
    """A working directory whose stray modules would break the helper if `python -c`
    left the CWD on sys.path."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("msgpack", "dask", "distributed"):
        (path / f"{name}.py").write_text("raise ImportError('poisoned module from the CWD')\n")
    return path


class Helper:
    def __init__(self, cwd: Path, env: dict | None = None):
        env = ENV if env is None else env
        self.stderr_path = cwd / f"helper-{id(self)}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [PYTHON, "-u", "-c", SOURCE, "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=cwd,
            env=env,
        )
        self._next_id = 0
        self.ready = self.read()

    def send_raw(self, body: bytes) -> None:
        self.proc.stdin.write(struct.pack("<Q", len(body)) + body)
        self.proc.stdin.flush()

    def send(self, msg) -> None:
        self.send_raw(msgpack.packb(msg, use_bin_type=True))

    def read(self) -> dict:
        head = self.proc.stdout.read(8)
        assert len(head) == 8, f"helper closed stdout; stderr:\n{self.stderr()}"
        (n,) = struct.unpack("<Q", head)
        body = self.proc.stdout.read(n)
        assert len(body) == n
        return msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=False)

    def call(self, op: str, **fields) -> dict:
        self._next_id += 1
        rid = self._next_id
        self.send({"op": op, "id": rid, **fields})
        reply = self.read()
        assert reply["id"] == rid
        return reply

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> int:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        rc = self.proc.wait(timeout=30)
        self.proc.stdout.close()
        self._stderr.close()
        return rc


@pytest.fixture(scope="module")
def helper(tmp_path_factory):
    h = Helper(_poisoned_cwd(tmp_path_factory.mktemp("helper-cwd")))
    yield h
    assert h.close() == 0


@pytest.fixture
def fresh_helper(tmp_path):
    h = Helper(_poisoned_cwd(tmp_path / "cwd"))
    yield h
    if h.proc.poll() is None:
        h.close()


# ---------------------------------------------------------------------------
# Building update-graph messages like a stock client
# ---------------------------------------------------------------------------


def collection_expr(*collections):
    """Client.compute: collections_to_expr + FinalizeCompute + optimize (client.py:3733-3737)."""
    expr = FinalizeCompute(collections_to_expr(list(collections), True)).optimize()
    return expr, list(flatten(expr.__dask_keys__()))


def update_graph_frames(
    expr,
    keys,
    *,
    internal_priority=None,
    annotations=None,
    fifo_timeout="60s",
    expr_ser=None,
) -> list[bytes]:
    """The wire frames of the client's update-graph message (client.py:3428-3452)."""
    if expr_ser is None:
        expr_ser = Serialized(*serialize(to_serialize(expr), on_error="raise"))
    msg = {
        "op": "update-graph",
        "expr_ser": expr_ser,
        "keys": set(keys),
        "internal_priority": internal_priority,
        "submitting_task": None,
        "fifo_timeout": fifo_timeout,
        "actors": None,
        "code": ToPickle(()),
        "annotations": ToPickle(dict(annotations or {})),
        "span_metadata": ToPickle(SpanMetadata(collections=[])),
    }
    return [bytes(f) for f in wire_dumps(msg)]


def rust_like_decode(frames: list[bytes]) -> dict:
    """Decode frame 0 with msgpack only, keeping opaque payloads as (header, frames)."""

    def sub(off):
        h = msgpack.unpackb(frames[off], raw=False, use_list=False, strict_map_key=False)
        return h, list(frames[off + 1 : off + 1 + h["num-sub-frames"]])

    def hook(obj):
        if len(obj) == 1 and "__Serialized__" in obj:
            return ("__Serialized__",) + sub(obj["__Serialized__"])
        if len(obj) == 1 and "__Pickled__" in obj:
            return ("__Pickled__",) + sub(obj["__Pickled__"])
        if "__Set__" in obj:
            return list(obj["as-list"])
        return obj

    return msgpack.unpackb(
        frames[0], raw=False, use_list=False, strict_map_key=False, object_hook=hook
    )


def helper_request(frames: list[bytes]) -> dict:
    """What the Rust scheduler puts in the update_graph request for this message."""
    msg = rust_like_decode(frames)
    _, expr_header, expr_frames = msg["expr_ser"]
    _, ann_header, ann_frames = msg["annotations"]
    return {
        "expr_header": expr_header,
        "expr_frames": expr_frames,
        "keys": list(msg["keys"]),
        "internal_priority": msg["internal_priority"],
        "annotations_pickled": ann_header["pickled-obj"],
        "annotations_buffers": ann_frames,
        "annotations_compression": ann_header.get("compression"),
    }


# ---------------------------------------------------------------------------
# The stock scheduler
# ---------------------------------------------------------------------------


class StockResult:
    def __init__(self, reply: dict):
        self.tasks = {t["key"]: t for t in reply["tasks"]}  # key -> TaskState summary
        self.reports = list(reply["reports"])  # what Scheduler.report() was asked to send


class Stock:
    """tests/helper/_stock_scheduler.py: a real Scheduler.update_graph, in a process with
    the helper's PYTHONHASHSEED."""

    def __init__(self, cwd: Path):
        self.proc = subprocess.Popen(
            [PYTHON, "-u", str(HERE / "_stock_scheduler.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            env=ENV,
        )

    def run(self, frames: list[bytes]) -> StockResult:
        body = msgpack.packb(list(frames), use_bin_type=True)
        self.proc.stdin.write(struct.pack("<Q", len(body)) + body)
        self.proc.stdin.flush()
        head = self.proc.stdout.read(8)
        assert len(head) == 8, "stock scheduler process died"
        (n,) = struct.unpack("<Q", head)
        return StockResult(
            msgpack.unpackb(
                self.proc.stdout.read(n), raw=False, strict_map_key=False, use_list=False
            )
        )

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    s = Stock(tmp_path_factory.mktemp("stock-cwd"))
    yield s
    s.close()


def _tuples(x):
    """Annotations travel as msgpack: lists come back as tuples (also on the workers)."""
    if isinstance(x, (list, tuple)):
        return tuple(_tuples(v) for v in x)
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    return x


def _coerce(w: str) -> str:
    """What Scheduler.coerce_address makes of a helper `workers` entry (no aliases here)."""
    try:
        return resolve_address(w)
    except ValueError:
        return w  # a host name: host_restrictions


def task_annotations(t: dict) -> dict:
    if "annotations_pickled" in t:
        assert "annotations" not in t
        return pickle.loads(t["annotations_pickled"])
    return dict(t.get("annotations") or {})


def assert_matches_stock(reply: dict, frames: list[bytes], stock: Stock) -> StockResult:
    """Every helper task equals the stock scheduler's TaskState for the same message."""
    assert reply["status"] == "OK", reply.get("exception_text")
    ref = stock.run(frames)
    assert not ref.reports, ref.reports
    mine = {t["key"]: t for t in reply["tasks"]}
    assert len(mine) == len(reply["tasks"]), "duplicate keys"
    assert set(mine) == set(ref.tasks)
    for key, t in mine.items():
        ts = ref.tasks[key]
        assert set(t["deps"]) == set(ts["deps"]), key
        if ts["priority"] is None:
            # not in the client's internal_priority: the stock scheduler leaves
            # ts.priority unset (scheduler.py:5349); the helper reports order 0
            assert t["order"] == 0
        else:
            assert t["order"] == ts["priority"][2], key
        # The run_spec the stock scheduler sends in compute-task. Pickles of equal graphs
        # differ in memo details between processes, so compare the unpickled GraphNodes
        # (GraphNode.__eq__ compares tokens).
        node = pickle.loads(t["run_spec"])
        assert isinstance(node, GraphNode) and node.key == key
        assert node == pickle.loads(ts["run_spec"]), key
        assert t["kind"] == ts["kind"] == type(node).__name__
        assert t["prefix"] == ts["prefix"]
        assert t["group"] == ts["group"]
        assert t.get("data_producer", False) == ts["data_producer"], key
        assert _tuples(task_annotations(t)) == _tuples(pickle.loads(ts["annotations"])), key
        r = t.get("restrictions", {})
        assert all(type(w) is str for w in r.get("workers", ()))
        assert {_coerce(w) for w in r.get("workers", ())} == set(
            ts["worker_restrictions"]
        ) | set(ts["host_restrictions"])
        assert r.get("allow_other_workers", False) == ts["loose_restrictions"]
        assert r.get("resources") == ts["resource_restrictions"]
        assert r.get("retries", 0) == ts["retries"]
        if ts["priority"] is not None:
            assert -r.get("priority", 0) == ts["priority"][0]
    return ref


def assert_same_error(reply: dict, stock: Stock, frames, keys) -> tuple:
    """The helper's error reply carries what the stock scheduler reports as task-erred."""
    assert reply["status"] == "error"
    ref = stock.run(frames)
    erred = [m for m in ref.reports if m["op"] == "task-erred"]
    assert {m["key"] for m in erred} == set(keys)
    stock_exc = clean_exception(erred[0]["exception"], erred[0]["traceback"])[1]
    assert isinstance(reply["exception"], bytes)
    assert reply["traceback"] is None or isinstance(reply["traceback"], bytes)
    typ, exc, tb = clean_exception(reply["exception"], reply["traceback"])
    assert typ is type(stock_exc)
    assert exc.args == stock_exc.args
    assert reply["exception_text"] == repr(exc)
    assert isinstance(reply["traceback_text"], str)
    if stock_exc.__cause__ is not None:
        assert type(exc.__cause__) is type(stock_exc.__cause__)
        assert exc.__cause__.args == stock_exc.__cause__.args
    return exc, stock_exc


def update(helper: Helper, frames) -> dict:
    return helper.call("update_graph", **helper_request(frames))


# ---------------------------------------------------------------------------
# check mode
# ---------------------------------------------------------------------------


def test_check_mode(tmp_path):
    out = subprocess.run(
        [PYTHON, "-u", "-c", SOURCE, "check"],
        capture_output=True,
        cwd=_poisoned_cwd(tmp_path),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.decode().splitlines()
    assert len(lines) == 1
    info = json.loads(lines[0])
    assert info == {
        "python": PYTHON if os.path.isabs(PYTHON) else info["python"],
        "python_version": "%d.%d.%d" % sys.version_info[:3],
        "distributed": distributed.__version__,
        "dask": dask.__version__,
    }


def test_check_mode_without_distributed(tmp_path):
    broken = tmp_path / "site"
    (broken / "distributed").mkdir(parents=True)
    (broken / "distributed" / "__init__.py").write_text(
        "raise ImportError('rask test: distributed is broken')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(broken))
    out = subprocess.run(
        [PYTHON, "-u", "-c", SOURCE, "check"], capture_output=True, env=env, timeout=120
    )
    assert out.returncode == 1
    info = json.loads(out.stdout.decode().strip())
    assert info["error"] == "ImportError: rask test: distributed is broken"
    assert info["python"]


def test_source_is_self_contained():
    """Rust runs the source with `-c`: no __file__, no sibling or relative imports."""
    import ast

    tree = ast.parse(SOURCE)
    assert "__file__" not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    # cloudpickle: a dependency of distributed, whose pickling the helper reproduces
    allowed = {"dask", "distributed", "msgpack", "cloudpickle"} | set(sys.stdlib_module_names)
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            assert n.level == 0
            assert n.module.split(".")[0] in allowed | {"__future__"}, n.module
        elif isinstance(n, ast.Import):
            for alias in n.names:
                assert alias.name.split(".")[0] in allowed, alias.name


def test_unknown_mode():
    out = subprocess.run([PYTHON, "-u", "-c", SOURCE, "bogus"], capture_output=True, timeout=60)
    assert out.returncode == 2
    assert out.stdout == b""


# ---------------------------------------------------------------------------
# serve: protocol basics
# ---------------------------------------------------------------------------


def test_ready_message(helper):
    r = helper.ready
    assert r["op"] == "ready"
    assert r["pid"] == helper.proc.pid
    assert r["versions"]["packages"]["distributed"] == distributed.__version__
    assert r["versions"]["packages"]["dask"] == dask.__version__
    assert set(r["versions"]) == {"host", "packages"}
    # the user's Dask scheduler settings rask honours, and the P2P worker plugin
    assert r["config"]["allowed-failures"] == dask.config.get("distributed.scheduler.allowed-failures")
    assert r["config"]["lease-validation-interval"] > 0
    from distributed.protocol.pickle import loads
    from distributed.shuffle._worker_plugin import ShuffleWorkerPlugin

    assert isinstance(loads(r["worker_plugins"]["shuffle"]), ShuffleWorkerPlugin)


def test_ping(helper):
    assert helper.call("ping") == {"id": helper._next_id, "status": "OK"}


def test_survives_bad_requests(helper):
    # undecodable body
    helper.send_raw(b"\xc1 not msgpack")
    r = helper.read()
    assert r["id"] is None and r["status"] == "error"
    assert "cannot decode request" in r["exception_text"]
    assert clean_exception(r["exception"])[0] is ValueError
    # not a map
    helper.send([1, 2, 3])
    r = helper.read()
    assert r["id"] is None and r["status"] == "error"
    # unknown op
    r = helper.call("frobnicate")
    assert r["status"] == "error"
    assert "unknown op 'frobnicate'" in r["exception_text"]
    assert set(r) == {"id", "status", "exception", "traceback", "exception_text", "traceback_text"}
    # update_graph with missing fields / wrong types
    r = helper.call("update_graph", keys=["x"])
    assert r["status"] == "error" and "expr_header" in r["exception_text"]
    r = helper.call("update_graph", expr_header=b"x", expr_frames=[], keys=[])
    assert r["status"] == "error"
    # still serving
    assert helper.call("ping")["status"] == "OK"
    expr, keys = collection_expr(delayed(operator.add)(1, 2))
    r = update(helper, update_graph_frames(expr, keys))
    assert r["status"] == "OK" and [t["key"] for t in r["tasks"]] == keys


def test_stdout_pollution_is_redirected(helper):
    """Code run while unpickling/materializing may print or write to fd 1."""

    class Noisy:
        def __init__(self, fn, *args):
            self.fn, self.args = fn, args

        def __reduce__(self):
            return self.fn, self.args

    dsk = {
        "p": DataNode("p", Noisy(print, "polluting sys.stdout")),
        "w": DataNode("w", Noisy(os.write, 1, b"polluting fd 1\n")),
        "s": DataNode("s", Noisy(os.system, "echo polluting from a subprocess")),
        "r": Task("r", operator.add, TaskRef("p"), TaskRef("w")),
    }
    expr = LLGExpr(dsk)
    r = update(helper, update_graph_frames(expr, ["r", "s"], internal_priority={"r": 0, "s": 1}))
    assert r["status"] == "OK"
    assert {t["key"] for t in r["tasks"]} == {"p", "w", "s", "r"}
    assert helper.call("ping")["status"] == "OK"
    err = helper.stderr()
    assert "polluting sys.stdout" in err and "polluting fd 1" in err
    assert "polluting from a subprocess" in err


def test_eof_exits_cleanly(fresh_helper):
    assert fresh_helper.call("ping")["status"] == "OK"
    assert fresh_helper.close() == 0


def test_eof_inside_a_request(fresh_helper):
    fresh_helper.proc.stdin.write(struct.pack("<Q", 100) + b"abc")
    assert fresh_helper.close() == 0


def test_corrupt_framing_exits(fresh_helper):
    fresh_helper.proc.stdin.write(struct.pack("<Q", 1 << 62))
    fresh_helper.proc.stdin.flush()
    r = fresh_helper.read()
    assert r["id"] is None and r["status"] == "error"
    assert fresh_helper.close() == 1


# ---------------------------------------------------------------------------
# update_graph: graphs from real collections, compared with the stock scheduler
# ---------------------------------------------------------------------------


def test_delayed_graph(helper, stock):
    inc = delayed(operator.add)
    xs = [inc(i, 1) for i in range(3)]
    ys = [delayed(operator.mul)(i, 2) for i in range(3)]
    zs = [delayed(operator.add)(x, y) for x, y in zip(xs, ys)]
    total = delayed(sum)(zs)
    expr, keys = collection_expr(total)
    frames = update_graph_frames(expr, keys)
    r = update(helper, frames)
    assert r["status"] == "OK"
    assert r["culled"] is False
    assert len(r["tasks"]) == 10
    by_key = {t["key"]: t for t in r["tasks"]}
    assert by_key[keys[0]]["prefix"] == "sum"
    assert len(by_key[keys[0]]["deps"]) == 3
    assert {t["kind"] for t in r["tasks"]} == {"Task"}
    assert sorted(t["order"] for t in r["tasks"]) == list(range(10))
    assert set(r["timings"]) >= {"deserialize_s", "materialize_s", "order_s", "tasks_s"}
    assert all("annotations" not in t and "restrictions" not in t for t in r["tasks"])
    assert_matches_stock(r, frames, stock)


def test_wide_delayed_merges(helper, stock):
    """Delayed merges, culled by the helper's linear HighLevelGraph.cull (see
    test_linear_cull.py), with some results wanted twice and some not at all."""
    parts = [delayed(operator.add)(i, 1) for i in range(2_000)]
    unused = [delayed(operator.mul)(p, 2) for p in parts[:50]]
    merged = delayed(lambda *xs: len(xs))(*parts[::3], *unused[:5])
    expr, keys = collection_expr(delayed(sum)(parts), merged)
    frames = update_graph_frames(expr, keys)
    r = update(helper, frames)
    assert len(r["tasks"]) == 2_000 + 5 + 2
    assert_matches_stock(r, frames, stock)


def chunked_update(helper: Helper, frames, chunk_size: int) -> tuple[list, dict]:
    """An update_graph with chunk_size: the chunks' records and the final reply."""
    helper._next_id += 1
    rid = helper._next_id
    req = {"op": "update_graph", "id": rid, "chunk_size": chunk_size, **helper_request(frames)}
    helper.send(req)
    chunks = []
    while "chunk" in (msg := helper.read()):
        assert msg["id"] == rid
        chunks.append(msg["chunk"])
    assert msg["id"] == rid
    return chunks, msg


def test_chunked_records(helper):
    """With chunk_size, records stream in chunks before the final reply; together they are
    exactly the records of the unchunked reply."""
    xs = [delayed(operator.add)(i, 1) for i in range(25)]
    expr, keys = collection_expr(delayed(sum)(xs))
    frames = update_graph_frames(expr, keys)
    whole = update(helper, frames)
    chunks, msg = chunked_update(helper, frames, 10)
    assert msg["status"] == "OK"
    assert [len(c) for c in chunks] == [10, 10] and len(msg["tasks"]) == 6
    assert msg["chunks"] == 2
    streamed = [t for c in chunks for t in c] + list(msg["tasks"])
    assert sorted(streamed, key=repr) == sorted(whole["tasks"], key=repr)


# the processes a `parallel_helper` makes records in: one per CPU, at most three
PICKLERS = min(3, len(os.sched_getaffinity(0)))
several_cpus = pytest.mark.skipif(PICKLERS < 2, reason="one CPU: records made in one process")


def parallel_helper(tmp_path: Path, **env) -> Helper:
    """A helper that makes the records of any graph in `PICKLERS` processes."""
    env = dict(ENV, RASK_HELPER_PARALLEL_MIN="1", RASK_HELPER_PICKLERS="3", **env)
    return Helper(_poisoned_cwd(tmp_path / "cwd"), env=env)


@several_cpus
def test_records_made_in_several_processes(helper, tmp_path):
    """A big graph's records are made in forked processes, one slice each: the records,
    in their order and byte for byte, are those one process makes."""
    parts = [delayed(operator.add)(i, 1) for i in range(2_000)]
    expr, keys = collection_expr(delayed(sum)(parts), da.ones((40, 40), chunks=4).sum())
    frames = update_graph_frames(expr, keys)
    chunks, reply = chunked_update(helper, frames, 300)
    one = [t for c in chunks for t in c] + list(reply["tasks"])
    assert len(one) > 2_000
    h = parallel_helper(tmp_path)
    try:
        chunks, reply = chunked_update(h, frames, 300)
        assert reply["status"] == "OK", reply.get("exception_text")
        assert reply["tasks"] == () and reply["chunks"] == len(chunks)
        assert [t for c in chunks for t in c] == one
        assert "making them here" not in h.stderr()
    finally:
        assert h.close() == 0


FRAGILE = """
import os


class Fragile:
    \"\"\"Pickles anywhere but in a process with FRAGILE_FAILS set.\"\"\"

    def __init__(self, v):
        self.v = v

    def __reduce__(self):
        if os.environ.get("FRAGILE_FAILS"):
            raise RuntimeError("a Fragile is not pickled here")
        return (Fragile, (self.v,))
"""


@several_cpus
@pytest.mark.parametrize("position", ["first slice", "last slice"])
def test_records_error_in_any_slice_is_the_one_process_error(helper, tmp_path, position):
    """A task that cannot be pickled fails the graph with the error one process gives,
    whichever process meets it: a child that fails has its slice made again by the
    helper itself."""
    (tmp_path / "fragile_mod.py").write_text(FRAGILE)
    sys.path.insert(0, str(tmp_path))
    try:
        from fragile_mod import Fragile

        parts = [delayed(operator.add)(i, 1) for i in range(600)]
        probe = update_graph_frames(*collection_expr(delayed(sum)(parts)))
        order = [t["key"] for t in update(helper, probe)["tasks"]]
        # the task to break: one whose records fall in the first or the last third
        third = len(order) // 3
        pick = order[:third] if position == "first slice" else order[-third:]
        victim = next(k for k in pick if type(k) is str and k.startswith("add-"))
        i = next(j for j, p in enumerate(parts) if p.key == victim)
        parts[i] = delayed(operator.add)(i, Fragile(1), dask_key_name=victim)
        expr, keys = collection_expr(delayed(sum)(parts))
        frames = update_graph_frames(expr, keys)
    finally:
        sys.path.remove(str(tmp_path))
    env = {"PYTHONPATH": str(tmp_path), "FRAGILE_FAILS": "1"}
    serial = Helper(_poisoned_cwd(tmp_path / "serial"), env=dict(ENV, **env))
    parallel = parallel_helper(tmp_path, **env)
    try:
        one = chunked_update(serial, frames, 100)[1]
        several = chunked_update(parallel, frames, 100)[1]
        assert one["status"] == several["status"] == "error"
        assert "a Fragile is not pickled here" in several["exception_text"]
        assert several["exception_text"] == one["exception_text"]
        if position == "last slice":
            assert "making them here" in parallel.stderr()
        # and the helper goes on
        fine = delayed(sum)([delayed(operator.add)(j, 1) for j in range(5)])
        assert chunked_update(parallel, update_graph_frames(*collection_expr(fine)), 2)[1][
            "status"
        ] == "OK"
    finally:
        assert serial.close() == 0
        assert parallel.close() == 0


def test_bad_chunk_size_is_an_error(helper):
    expr, keys = collection_expr(delayed(operator.add)(1, 2))
    r = helper.call("update_graph", chunk_size=0, **helper_request(update_graph_frames(expr, keys)))
    assert r["status"] == "error"
    assert "chunk_size" in r["exception_text"]


def test_array_graph(helper, stock):
    x = da.ones((6, 6), chunks=3)
    y = (x + x.T)[::2].mean()
    expr, keys = collection_expr(y)
    frames = update_graph_frames(expr, keys)
    r = update(helper, frames)
    kinds = {t["kind"] for t in r["tasks"]}
    assert "Alias" in kinds and "Task" in kinds
    assert all(isinstance(t["key"], (str, tuple)) for t in r["tasks"])
    assert any(isinstance(t["key"], tuple) for t in r["tasks"])
    assert_matches_stock(r, frames, stock)


def test_bigger_array_graph(helper, stock):
    x = da.random.random((300, 300), chunks=10)
    y = (x + x.T)[::2].mean(axis=0)
    expr, keys = collection_expr(y)
    frames = update_graph_frames(expr, keys)
    r = update(helper, frames)
    assert len(r["tasks"]) > 1000
    assert_matches_stock(r, frames, stock)


@pytest.fixture
def tasks_shuffle():
    with dask.config.set({"dataframe.shuffle.method": "tasks", "array.rechunk.method": "tasks"}):
        yield


def _frames(n=40):
    a = dd.from_pandas(
        pd.DataFrame({"k": np.arange(n) % 7, "v": np.arange(n, dtype=float)}), npartitions=4
    )
    b = dd.from_pandas(pd.DataFrame({"k": np.arange(7), "w": np.arange(7) * 10}), npartitions=2)
    return a, b


def test_dataframe_groupby_graph(helper, tasks_shuffle, stock):
    a, _ = _frames()
    g = a[a.v > 3].groupby("k").v.sum()
    expr, keys = collection_expr(g)
    frames = update_graph_frames(expr, keys)
    r = update(helper, frames)
    assert r["status"] == "OK"
    assert all(isinstance(t["key"], tuple) for t in r["tasks"] if t["kind"] != "Alias")
    assert_matches_stock(r, frames, stock)


def test_dataframe_tasks_shuffle_merge(helper, tasks_shuffle, stock):
    a, b = _frames()
    m = a.merge(b, on="k", how="inner")
    expr, keys = collection_expr(m)
    frames = update_graph_frames(expr, keys)
    r = update(helper, frames)
    assert r["status"] == "OK", r.get("exception_text")
    assert "P2PBarrierTask" not in {t["kind"] for t in r["tasks"]}
    assert_matches_stock(r, frames, stock)


def test_submit_llgexpr(helper, stock):
    """client.submit: LLGExpr + internal_priority {key: 0} (client.py:2135-2147); the
    graph is culled to the requested key and may depend on an existing future."""
    dsk = {
        "add-1": Task("add-1", operator.add, TaskRef("existing-future"), 1),
        "unrelated": Task("unrelated", operator.neg, 1),
    }
    expr = LLGExpr(dsk)
    frames = update_graph_frames(
        expr, ["add-1"], internal_priority={"add-1": 0}, fifo_timeout="100 ms"
    )
    r = update(helper, frames)
    assert r["status"] == "OK"
    assert r["culled"] is True and r["expr_type"] == "LLGExpr"
    (t,) = r["tasks"]
    assert t["key"] == "add-1" and t["deps"] == ("existing-future",) and t["order"] == 0
    # The stock scheduler cancels it: the dependency is not known to it (lost dependency)
    ref = stock.run(frames)
    assert "cancelled-keys" in [m["op"] for m in ref.reports]
    assert not ref.tasks


def test_submit_llgexpr_tuple_keys(helper, stock):
    k = ("inc-abc", 0)
    d = ("data-x", 1)
    dsk = {k: Task(k, operator.add, TaskRef(d), 1), d: DataNode(d, 41)}
    frames = update_graph_frames(LLGExpr(dsk), [k], internal_priority={k: 0})
    r = update(helper, frames)
    by_key = {t["key"]: t for t in r["tasks"]}
    assert set(by_key) == {k, ("data-x", 1)}
    assert by_key[k]["deps"] == (("data-x", 1),)
    assert by_key[k]["group"] == "inc-abc" and by_key[k]["prefix"] == key_split(k)
    assert by_key[d]["kind"] == "DataNode"
    assert by_key[d]["order"] == 0  # not in the client's internal_priority
    assert_matches_stock(r, frames, stock)


def test_map_expr(helper, stock):
    """client.map: _MapExpr + internal_priority {key: i} (client.py:2308-2336)."""
    expr = _MapExpr(
        operator.add, [[1, 2, 3], [10, 20, 30]], key="add", pure=True, annotations={}, kwargs={}
    )
    keys = list(expr.keys)
    ip = dict(zip(keys, range(len(keys))))
    frames = update_graph_frames(expr, keys, internal_priority=ip, annotations={"retries": 2})
    r = update(helper, frames)
    assert [t["order"] for t in sorted(r["tasks"], key=lambda t: t["order"])] == [0, 1, 2]
    assert {t["key"]: t["order"] for t in r["tasks"]} == ip
    assert all(t["restrictions"] == {"retries": 2} for t in r["tasks"])
    assert_matches_stock(r, frames, stock)


def test_annotations_and_restrictions(helper, stock):
    w = "tcp://127.0.0.1:9101"
    with dask.annotate(priority=7, my_tag="layer-annot", resources={"GPU": 1}):
        a = delayed(operator.add)(1, 2, dask_key_name="a-layer-annotated")
    with dask.annotate(retries=4, workers=[w, "somehost", ("127.0.0.1", 9102)]):
        b = delayed(operator.add)(a, 1, dask_key_name="b-retries")
    c = delayed(operator.add)(b, 1, dask_key_name="c-plain")
    expr, keys = collection_expr(c)
    # what Client.compute(c, workers=[w], allow_other_workers=True, priority=5) sends,
    # inside `with dask.annotate(retries=lambda k: 3)`
    global_ann = {
        "retries": lambda k: 3,
        "priority": 5,
        "workers": [w],
        "allow_other_workers": True,
    }
    frames = update_graph_frames(expr, keys, annotations=global_ann)
    r = update(helper, frames)
    by_key = {t["key"]: t for t in r["tasks"]}
    assert by_key["a-layer-annotated"]["annotations"] == {
        "retries": 3,
        "priority": 7,
        "workers": (w,),
        "allow_other_workers": True,
        "my_tag": "layer-annot",
        "resources": {"GPU": 1},
    }
    assert by_key["a-layer-annotated"]["restrictions"] == {
        "retries": 3,
        "priority": 7,
        "workers": (w,),
        "allow_other_workers": True,
        "resources": {"GPU": 1},
    }
    assert by_key["b-retries"]["restrictions"]["retries"] == 4
    assert set(by_key["b-retries"]["restrictions"]["workers"]) == {
        w,
        "somehost",
        "127.0.0.1:9102",
    }
    assert by_key["c-plain"]["restrictions"] == {
        "retries": 3,
        "priority": 5,
        "workers": (w,),
        "allow_other_workers": True,
    }
    assert_matches_stock(r, frames, stock)


def test_static_global_annotations(helper, stock):
    x = da.ones((4, 4), chunks=2).sum()
    expr, keys = collection_expr(x)
    ann = {"priority": -3, "resources": {"MEM": 2.5}}
    frames = update_graph_frames(expr, keys, annotations=ann)
    r = update(helper, frames)
    for t in r["tasks"]:
        assert t["annotations"] == {"priority": -3, "resources": {"MEM": 2.5}}
        assert t["restrictions"] == {"priority": -3, "resources": {"MEM": 2.5}}
    assert_matches_stock(r, frames, stock)


def test_annotations_not_msgpack_safe(helper, stock):
    with dask.annotate(odd=frozenset({1, 2}), retries=1):
        a = delayed(operator.add)(1, 2, dask_key_name="odd-annot")
    expr, keys = collection_expr(a)
    frames = update_graph_frames(expr, keys, annotations={"big": np.int64(7)})
    r = update(helper, frames)
    (t,) = r["tasks"]
    assert "annotations" not in t
    expected = {"big": 7, "odd": frozenset({1, 2}), "retries": 1}
    assert pickle.loads(t["annotations_pickled"]) == expected
    assert t["restrictions"] == {"retries": 1}
    assert_matches_stock(r, frames, stock)


# ---------------------------------------------------------------------------
# update_graph errors, compared with the stock scheduler's task-erred reports
# ---------------------------------------------------------------------------


def test_garbage_graph_matches_stock(helper, stock):
    header = {"serializer": "pickle", "writeable": (), "num-sub-frames": 1}
    expr_ser = Serialized(header, [b"garbage"])
    frames = update_graph_frames(None, ["x", ("y", 0)], expr_ser=expr_ser)
    r = update(helper, frames)
    exc, stock_exc = assert_same_error(r, stock, frames, ["x", ("y", 0)])
    assert type(exc) is RuntimeError
    assert str(exc) == DESERIALIZATION_TEXT == str(stock_exc)
    assert isinstance(exc.__cause__, pickle.UnpicklingError)


def test_unknown_serializer_matches_stock(helper, stock):
    expr_ser = Serialized({"serializer": "nope", "num-sub-frames": 0}, [])
    frames = update_graph_frames(None, ["x"], expr_ser=expr_ser)
    r = update(helper, frames)
    exc, _ = assert_same_error(r, stock, frames, ["x"])
    assert str(exc) == DESERIALIZATION_TEXT


def test_missing_module_matches_stock(helper, stock):
    """A graph referencing a module the scheduler environment lacks."""
    modname = "rask_test_no_such_module"
    mod = types.ModuleType(modname)

    def fake_func(x):  # pragma: no cover - never called
        return x

    fake_func.__module__ = modname
    fake_func.__qualname__ = "fake_func"
    mod.fake_func = fake_func
    sys.modules[modname] = mod
    try:
        expr = LLGExpr({"f-1": Task("f-1", fake_func, 1)})
        frames = update_graph_frames(expr, ["f-1"], internal_priority={"f-1": 0})
    finally:
        del sys.modules[modname]
    assert modname.encode() in b"".join(frames)
    r = update(helper, frames)
    exc, _ = assert_same_error(r, stock, frames, ["f-1"])
    assert str(exc) == DESERIALIZATION_TEXT
    assert isinstance(exc.__cause__, ModuleNotFoundError)
    assert modname in str(exc.__cause__)
    assert "Error during deserialization" in r["exception_text"]


def test_ordering_error_matches_stock(helper, stock):
    """Errors after deserialization are reported as raised (the generic branch)."""
    dsk = {
        "a": Task("a", operator.add, TaskRef("b"), 1),
        "b": Task("b", operator.add, TaskRef("a"), 1),
    }
    frames = update_graph_frames(LLGExpr(dsk), ["a"])
    r = update(helper, frames)
    ref = stock.run(frames)
    erred = [m for m in ref.reports if m["op"] == "task-erred"]
    stock_exc = clean_exception(erred[0]["exception"], erred[0]["traceback"])[1]
    typ, exc, tb = clean_exception(r["exception"], r["traceback"])
    assert typ is type(stock_exc) is RuntimeError
    # the cycle is printed from a set-dependent start: compare the lines as a set
    assert str(exc).splitlines()[0] == str(stock_exc).splitlines()[0] == (
        "Cycle detected between the following keys:"
    )
    assert set(str(exc).splitlines()) == set(str(stock_exc).splitlines())
    # the traceback starts in dask code, not in the helper
    assert tb is not None
    assert "dask/order.py" in r["traceback_text"]
    assert "<string>" not in r["traceback_text"]


def test_annotation_callable_error_matches_stock(helper, stock):
    expr, keys = collection_expr(delayed(operator.add)(1, 2))
    frames = update_graph_frames(expr, keys, annotations={"retries": lambda k: 1 / 0})
    r = update(helper, frames)
    exc, _ = assert_same_error(r, stock, frames, keys)
    assert type(exc) is ZeroDivisionError


def test_bad_retries_annotation_matches_stock(helper, stock):
    expr, keys = collection_expr(delayed(operator.add)(1, 2))
    frames = update_graph_frames(expr, keys, annotations={"retries": "two"})
    r = update(helper, frames)
    exc, _ = assert_same_error(r, stock, frames, keys)
    assert type(exc) is AssertionError


def test_unpicklable_annotations(helper):
    expr, keys = collection_expr(delayed(operator.add)(1, 2))
    req = helper_request(update_graph_frames(expr, keys))
    req["annotations_pickled"] = b"\x80\x05not a pickle"
    r = helper.call("update_graph", **req)
    typ, exc, _ = clean_exception(r["exception"], r["traceback"])
    assert typ is RuntimeError and str(exc) == DESERIALIZATION_TEXT


# ---------------------------------------------------------------------------
# P2P shuffle: barrier tasks are reported, runs are created for the Rust plugin
# ---------------------------------------------------------------------------


def _barrier(r: dict) -> dict:
    assert r["status"] == "OK", r.get("exception_text")
    barriers = [t for t in r["tasks"] if t["kind"] == "P2PBarrierTask"]
    assert barriers and all(str(t["key"]).startswith("shuffle-barrier-") for t in barriers)
    return barriers[0]


def test_p2p_merge_reports_barriers(helper):
    a, b = _frames()
    m = a.merge(b, on="k", how="inner", shuffle_method="p2p")
    expr, keys = collection_expr(m)
    _barrier(update(helper, update_graph_frames(expr, keys)))


def test_shuffle_create_run(helper):
    """`shuffle_create_run` builds the pickled `ShuffleRunSpec` the stock plugin would: every
    output partition pinned with `spec.pick_worker` (or to the `existing` pin), with the run
    id the scheduler chose."""
    from distributed.protocol.pickle import loads
    from distributed.shuffle._core import ShuffleRunSpec

    x = da.ones((100, 100), chunks=(100, 1)).rechunk((1, 100), method="p2p")
    expr, keys = collection_expr(x.sum())
    barrier = _barrier(update(helper, update_graph_frames(expr, keys)))
    spec = loads(barrier["run_spec"]).spec
    workers = ["tcp://10.0.0.1:1", "tcp://10.0.0.2:2"]
    first = next(iter(spec.output_partitions))
    r = helper.call(
        "shuffle_create_run",
        barrier_run_spec=barrier["run_spec"],
        workers=workers,
        existing={first: "tcp://10.0.0.9:9"},
        run_id=7,
        span_id=None,
    )
    assert r["status"] == "OK"
    run = loads(r["run_spec"])
    assert isinstance(run, ShuffleRunSpec) and run.run_id == 7 and run.spec.id == spec.id
    assert run.worker_for[first] == "tcp://10.0.0.9:9"
    for p in spec.output_partitions:
        if p != first:
            assert run.worker_for[p] == spec.pick_worker(p, workers)
    assert dict(r["worker_for"]) == run.worker_for


def test_shuffle_create_run_with_a_bad_spec_errs(helper):
    r = helper.call("shuffle_create_run", barrier_run_spec=b"\x80\x05garbage", workers=["tcp://a:1"], run_id=1)
    assert r["status"] == "error"
    assert helper.call("ping")["status"] == "OK"


# ---------------------------------------------------------------------------
# Odds and ends of the request schema
# ---------------------------------------------------------------------------


def test_compressed_annotation_buffers(helper):
    """If the client compressed the annotations' pickle-5 buffers, Rust passes the
    sub-header's `compression` along and the helper decompresses them."""
    import zlib

    arr = np.arange(10, dtype="int64")
    expr, keys = collection_expr(delayed(operator.add)(1, 2))
    bufs = []
    data = pickle.dumps({"arr": arr}, protocol=5, buffer_callback=bufs.append)
    req = helper_request(update_graph_frames(expr, keys))
    req["annotations_pickled"] = data
    req["annotations_buffers"] = [zlib.compress(bytes(b.raw())) for b in bufs]
    req["annotations_compression"] = ["zlib"] * len(bufs)
    r = helper.call("update_graph", **req)
    assert r["status"] == "OK", r.get("exception_text")
    (t,) = r["tasks"]
    np.testing.assert_array_equal(pickle.loads(t["annotations_pickled"])["arr"], arr)


def test_reply_schema(helper):
    expr, keys = collection_expr(delayed(operator.add)(1, 2))
    r = update(helper, update_graph_frames(expr, keys))
    assert set(r) == {"id", "status", "expr_type", "culled", "tasks", "chunks", "timings"}
    (t,) = r["tasks"]
    assert set(t) == {"key", "deps", "run_spec", "kind", "order", "prefix", "group"}
    assert isinstance(t["run_spec"], bytes) and isinstance(t["order"], int)


# ---------------------------------------------------------------------------
# files uploaded to the scheduler (``Client.upload_file``, run in the plugin host)
# ---------------------------------------------------------------------------


def test_an_uploaded_archive_is_importable_in_every_helper(tmp_path):
    """``upload_file`` of a ``.zip`` put it in the scheduler's local directory (the plugin
    host does that); a helper started before unpickles a function from it."""
    import tempfile
    import zipfile

    other = Helper(_poisoned_cwd(tmp_path / "other"))
    # the scheduler's local directory, shared by the helpers and the plugin host of one
    # scheduler (their parent process: here, this test)
    base = dask.config.get("temporary-directory") or tempfile.gettempdir()
    local = Path(base) / "dask-scratch-space" / f"scheduler-rask-{os.getpid()}"
    try:
        assert other.call("ping")["status"] == "OK"
        local.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(local / "e2e_archive.zip", "w") as z:
            z.writestr("e2e_zipped.py", "def triple(x):\n    return 3 * x\n")
        # e2e_zipped.triple, pickled by reference (its module is only in the archive)
        function = b"\x80\x04\x95\x19\x00\x00\x00\x00\x00\x00\x00\x8c\ne2e_zipped\x94\x8c\x06triple\x94\x93\x94."
        reply = other.call("run_function", function=function, args=pickle.dumps((5,)), kwargs=None, wait=True)
        assert reply["status"] == "OK", reply
        assert pickle.loads(reply["result"]) == 15
    finally:
        other.close()
