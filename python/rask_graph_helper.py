"""rask graph helper: the Python-only part of ``Scheduler.update_graph``.

The rask scheduler (Rust) embeds this file with ``include_str!`` and runs it as

    PYTHON -u -c <this source> check
    PYTHON -u -c <this source> serve

so it is self-contained: standard library at import time, dask/distributed/msgpack are
imported inside the modes, and nothing depends on ``__file__`` or on sibling files.

It does what only Python can do with a graph a stock Dask client sent: unpickle the
expression, materialize it, order it, and pickle every task's ``run_spec``. It mirrors
``Scheduler.update_graph`` in distributed 2026.8.0 (``distributed/scheduler.py`` lines
4997-5143: deserialize 5018-5029, ``_materialize_graph`` 5030-5037 and 9390-9404,
``_cull`` for ``LLGExpr`` 5040-5046 and 9407-9421, ``dask.order`` 5048-5049, error
reporting 5118-5138), plus the per-task annotation merge of ``_apply_annotations``
(5238-5310). Everything else (TaskState bookkeeping, lost dependencies, priorities,
restrictions, transitions) is left to Rust.

Modes
-----
``check``
    Prints one line of JSON and exits 0:
    ``{"python": sys.executable, "python_version": "3.11.7", "distributed": "2026.8.0",
    "dask": "2026.8.0"}``. If msgpack, dask or distributed cannot be imported, prints
    ``{"error": "<ExceptionType>: <message>", "python": sys.executable}`` and exits 1.

``serve``
    Long-lived RPC on stdin/stdout. Every message in both directions is a u64
    little-endian length followed by a msgpack body (packed with ``use_bin_type=True``,
    unpacked with ``raw=False, strict_map_key=False, use_list=False``, so msgpack arrays
    become tuples and tuple keys round-trip). stderr carries free-form log lines.

    First message written, once distributed is imported (numpy, pandas, pyarrow and dask's
    collections are imported after it, before the first request is read)::

        {"op": "ready", "pid": int, "versions": distributed.versions.get_versions(),
         "python": sys.executable, "config": {name: value}}

    ``config`` carries the user's Dask scheduler settings that rask honours (read with
    ``dask.config`` in this environment, so YAML files and ``DASK_*`` variables count):
    ``allowed-failures`` (``distributed.scheduler.allowed-failures``) and
    ``lease-validation-interval`` in seconds (``distributed.scheduler.locks.*``), and
    ``low-level-log-length`` (``distributed.admin.low-level-log-length``, events per topic
    and transitions in the transition log; None: no limit), ``task-stream-length`` and
    ``log-length`` (``distributed.admin.log-length``, the scheduler's log lines kept).

    If dask/distributed cannot be imported it writes
    ``{"op": "fatal", "pid": int, "error": "<ExceptionType>: <message>"}`` instead and
    exits 1.

    Requests are maps with ``"op"`` and ``"id"``; each reply carries the request's
    ``"id"`` (``None`` if the request could not be decoded). Replies come in request
    order, one per request.

    ``{"op": "ping", "id": n}`` -> ``{"id": n, "status": "OK"}``

    ``{"op": "update_graph", "id": n,``
      ``"expr_header": map,``            the ``__Serialized__`` sub-header of ``expr_ser``
      ``"expr_frames": [bytes],``        its sub-frames
      ``"keys": [key],``                 the ``keys`` of the update-graph message
      ``"internal_priority": map|None,`` as sent by the client
      ``"annotations_pickled": bytes|None,``  ``pickled-obj`` of the ``annotations``
                                         ``__Pickled__`` sub-header
      ``"annotations_buffers": [bytes],``     its sub-frames (pickle-5 buffers)
      optional ``"annotations_compression": [str|None]`` (the sub-header's
      ``compression``, if the client compressed the buffers) and optional
      ``"validate": bool`` (default: config ``distributed.scheduler.validate``) and
      optional ``"chunk_size": int``: stream the task records, see below``}``

    -> ``{"id": n, "status": "OK", "expr_type": str, "culled": bool,
    "tasks": [task, ...], "timings": {str: float}}`` (seconds per stage, and how many
    ``"processes"`` made the records with, if more than one, the ``"largest_child_mib"``
    peak RSS) with one ``task`` per node of the materialized (and, for ``LLGExpr``,
    culled) graph::

        "key"          str | bytes | int | float | tuple (msgpack array; may nest)
        "deps"         [key]  GraphNode.dependencies; may name keys outside this graph
                       (existing futures), which Rust must resolve or report lost
        "run_spec"     bytes  distributed.protocol.pickle.dumps(node), in-band pickle;
                       send as compute-task ``{"__Pickled__": i}`` with sub-header
                       {"pickled-obj": run_spec, "num-sub-frames": 0}
        "kind"         "Task" | "Alias" | "DataNode" | "List" | ... (class name)
        "order"        int    client internal_priority[key] if the client sent a
                       non-empty one, else dask.order.order(); 0 if the key is missing.
                       Absent when the request has ``"rust_order": true`` and the client
                       sent no priorities: rask then orders the graph with rask-order,
                       from these two fields instead:
        "hash"         int    hash(key) in this process (set iteration order)
        "deps_table"   int    only if >= 5 deps: the hash-table size of the
                       node.dependencies frozenset
        "prefix"       str    dask.utils.key_split(key)       (TaskPrefix name)
        "group"        str    distributed.utils.key_split_group(key) (TaskGroup name)
        "data_producer" true  only if node.data_producer (a DataNode, a reader's task):
                       root-ish whatever its group's size (is_rootish, scheduler.py:3114)
        "annotations"  map    only if non-empty: global annotations (callables called
                       with the key) overridden by layer annotations, exactly what the
                       stock scheduler stores in ts.annotations; msgpack-safe
        "annotations_pickled" bytes  instead of "annotations" when those are not
                       msgpack-safe (distributed.protocol.pickle.dumps of the dict)
        "restrictions" map    only if any: the subset _apply_annotations acts on:
                       "workers": [str] (str entries as given, (host, port) tuples as
                       "host:port", worker-name aliases as str(name); Rust still applies
                       coerce_address / the host-name split), "allow_other_workers": bool,
                       "resources": map, "retries": int, "priority": number

    With ``"chunk_size": c``, the task records are written as they are made, in messages
    ``{"id": n, "chunk": [task, ...]}`` of at most ``c`` records each, before the final
    reply, whose ``"tasks"`` holds the rest and ``"chunks"`` says how many were sent. Rust
    turns a chunk into tasks while the next one is pickled, and never holds the whole
    reply at once. A graph of ``PARALLEL_MIN_TASKS`` or more has its records made in
    several processes, one slice of the graph each: the chunks come in the graph's order
    as always, each slice ends in a shorter chunk, and ``"tasks"`` is empty. An error
    after some chunks were sent is still one error reply (chunks then count for
    nothing).

    ``{"op": "run_function", "id": n, "function": bytes, "args": bytes|None,``
    ``"kwargs": bytes|None, "wait": bool}`` (``Client.run_on_scheduler``; the fields of
    the ``run_function`` RPC, pickled by the client) ->
    ``{"id": n, "status": "OK", "result": bytes}``, the result pickled with
    ``distributed.protocol.pickle.dumps``; with ``"serializers": [str]`` (the client's
    deserializers) ``{"id": n, "status": "OK", "header": map, "frames": [bytes]}``, the
    result serialized with only those (``serialize_and_split``, ``on_error="message"``). Mirrors ``distributed.worker.run`` (worker.py
    2997-3037), except that a function taking ``dask_scheduler`` is answered
    ``{"id": n, "status": "need-scheduler"}``: rask runs it in its plugin host, where a
    facade of the scheduler is kept (docs/plugin-host.md). Coroutine functions run to completion here, also
    with ``wait=False``. A failing function gives the error reply below.

    ``{"op": "write_cluster_dump", "id": n, "state": {...}, "url": str, "format": str,``
    ``"storage_options": {...}}`` (``Client.dump_cluster_state`` to a URL: rask gathered
    the ``get_cluster_state`` dict) -> ``{"id": n, "status": "OK"}`` once
    ``distributed.cluster_dump.write_state`` wrote it with fsspec.

    Errors (any failing request, unknown op, undecodable request) ->
    ``{"id": n, "status": "error", "exception": bytes, "traceback": bytes|None,
    "exception_text": str, "traceback_text": str}`` built with
    ``distributed.core.error_message``: "exception"/"traceback" are the pickles the
    stock scheduler would put in ``task-erred`` (``clean_exception`` unpickles them).

    The helper never exits because of a bad request. It exits 0 on EOF of stdin (or when
    the reader of stdout is gone), 1 if the framing itself is corrupt.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import textwrap
import time

# scheduler.py:5022-5029, dedented exactly like the stock scheduler does it.
DESERIALIZATION_ERROR = textwrap.dedent(
    """\
    Error during deserialization of the task graph. This frequently
    occurs if the Scheduler and Client have different environments.
    For more information, see
    https://docs.dask.org/en/stable/deployment-considerations.html#consistent-software-environments
"""
)

# A length prefix above this cannot be a real request: the stream is out of sync.
MAX_FRAME = 1 << 40

# Modules the stock scheduler process has imported by the time graphs arrive (`dask
# scheduler` 2026.8.0: not pandas, pyarrow or dask's collections, which the first graph
# that needs them imports, in rask's helper as in Dask's scheduler). Importing those too
# took a second of CPU per helper from the workers of the first computation on two CPUs.
PREIMPORTS = (
    "numpy",
    "distributed.shuffle",
)

# how long a helper must have been idle before it imports the next of PREIMPORTS
WARM_AFTER_IDLE_S = 0.5

# Pickling each task's run_spec is most of a big graph's time in the helper (13-14 s of
# 23-25 s for 1M tasks, one process). From this many tasks on, the records are made in
# several processes, forked once the graph is materialized (see `_records_forked`);
# RASK_HELPER_PARALLEL_MIN overrides it. RASK_HELPER_PICKLERS caps the processes
# (default: the CPUs this process may use, at most MAX_PICKLERS; 1 turns it off).
PARALLEL_MIN_TASKS = 100_000
MAX_PICKLERS = 4


def _log(msg: str) -> None:
    try:
        sys.stderr.write(f"rask-graph-helper[{os.getpid()}]: {msg}\n")
        sys.stderr.flush()
    except Exception:
        pass


# ---------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------


def run_check() -> int:
    import json
    import platform

    try:
        import msgpack  # noqa: F401  (serve needs it)

        import dask
        import distributed
    except BaseException as e:  # also SystemExit & co. from a broken install
        print(json.dumps({"error": f"{type(e).__name__}: {e}", "python": sys.executable}))
        return 1
    print(
        json.dumps(
            {
                "python": sys.executable,
                "python_version": platform.python_version(),
                "distributed": distributed.__version__,
                "dask": dask.__version__,
            }
        )
    )
    return 0


# ---------------------------------------------------------------------------
# update_graph
# ---------------------------------------------------------------------------

_PLAIN_SCALARS = frozenset((str, bytes, float, bool, type(None)))


def _plain(v) -> bool:
    """Whether msgpack packs ``v`` and the receiver decodes an equal value."""
    t = type(v)
    if t in _PLAIN_SCALARS:
        return True
    if t is int:
        return -(1 << 63) <= v < (1 << 64)
    if t is tuple or t is list:
        return all(_plain(x) for x in v)
    if t is dict:
        return all(_plain(k) and _plain(x) for k, x in v.items())
    return False


def _worker_str(w) -> str:
    """A `workers=` entry as a string, before Scheduler.coerce_address (scheduler.py:8291):
    (host, port) tuples become "host:port"; other non-strings (worker names used as
    aliases) become str(name)."""
    if type(w) is str:
        return w
    if isinstance(w, tuple) and len(w) == 2:
        try:
            from distributed.comm.addressing import unparse_host_port

            return unparse_host_port(*w)
        except Exception:
            pass
    return str(w)


def _restrictions(ann: dict) -> dict:
    """The part of ``Scheduler._apply_annotations`` (scheduler.py:5281-5309) that
    concerns the scheduler, as plain data. Raises like the stock code on bad values."""
    out = {}
    for annot, value in ann.items():
        if annot in ("restrictions", "workers"):
            if not isinstance(value, (list, tuple, set)):
                value = [value]
            out["workers"] = [_worker_str(w) for w in value]
        elif annot in ("loose_restrictions", "allow_other_workers"):
            out["allow_other_workers"] = bool(value)
        elif annot == "resources":
            assert isinstance(value, dict)  # scheduler.py:5302
            out["resources"] = value
        elif annot == "priority":
            out["priority"] = value
        elif annot == "retries":
            assert isinstance(value, int)  # scheduler.py:5308
            out["retries"] = value
    return out


def linear_hlg_cull(dask_cull):
    """``HighLevelGraph.cull`` (highlevelgraph.py:729-792) in time linear in the graph,
    with Dask's result; ``dask_cull`` (Dask's own) takes the graphs this does not cover.

    ``dask.delayed.optimize`` culls every delayed graph on the scheduler, and Dask's code
    culls each layer against the whole set of keys still wanted: ``Layer.cull`` copies that
    set and walks all of it (``_task_spec.cull``, _task_spec.py:1188-1208), once per layer.
    A delayed graph is one layer per task, so that is O(tasks x keys): 31 s of the 33 s a
    20,000-task ``delayed(sum)(parts)`` took. Here each layer looks only at the wanted keys
    it holds; the walk, the layers kept, their order, names and annotations are Dask's.

    Dask's result depends on two details this reproduces: a layer with as many keys as
    the wanted set is kept whole (``_task_spec.cull``'s shortcut), and once nothing is
    wanted the remaining layers are kept whole. Dask's wanted set can also hold keys it
    already found (a key of a layer that another key of the same layer depends on may be
    put back after it was taken out, depending on set order), which only matters to those
    two checks; when it could, Dask's own cull runs instead. Likewise for layers other
    than plain materialized layers of ``GraphNode``s, and for keys in more than one layer.
    The keys within a culled layer may come in another order than Dask's; the priorities
    ``dask.order`` gives do not depend on it (tests/helper/test_linear_cull.py checks).
    """
    from dask.base import tokenize
    from dask.core import flatten
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

    def covered(hlg) -> bool:
        total = 0
        every_key = set()
        for layer in hlg.layers.values():
            # has_legacy_tasks is cached: Dask's cull, if it runs, asks it again
            if type(layer) is not MaterializedLayer or layer.has_legacy_tasks:
                return False
            total += len(layer.mapping)
            every_key.update(layer.mapping)
        return total == len(every_key)

    def cull(self, keys):
        if not covered(self):
            return dask_cull(self, keys)
        wanted = set(flatten(keys))
        tok = tokenize(wanted)
        # How many found keys Dask's wanted set may hold beyond this one (see above).
        slack = 0
        ret_layers: dict = {}
        layer_dependencies = {}
        for layer_name in reversed(self._toposort_layers()):
            layer = self.layers[layer_name]
            if slack and not wanted:
                return dask_cull(self, keys)  # Dask's set may or may not be empty
            if wanted:
                mapping = layer.mapping
                n = len(mapping)
                if len(wanted) < n:
                    work = [k for k in wanted if k in mapping]
                else:
                    work = [k for k in mapping if k in wanted]
                out = {}
                while work:
                    k = work.pop()
                    if k in out or k not in mapping:
                        continue
                    out[k] = v = mapping[k]
                    work.extend(v.dependencies)
                if len(out) < n and len(wanted) <= n <= len(wanted) + slack:
                    if slack:
                        return dask_cull(self, keys)
                    out = dict(mapping)  # Dask's shortcut: as many keys as wanted
                if not out:
                    continue
                for v in out.values():
                    for d in v.dependencies:
                        if d in out:
                            slack += 1
                        else:
                            wanted.add(d)
                wanted.difference_update(out)
                # Dask makes a new layer even when nothing was cut; keeping the layer then
                # saves Layer.__init__'s config reads (0.1 s per 20,000 layers) and is the
                # same to everything read from it: keys, nodes, annotations.
                if len(out) < n:
                    layer = MaterializedLayer(out, annotations=layer.annotations)
            ret_layers[f"{layer_name}-{tok}"] = layer
            layer_dependencies[f"{layer_name}-{tok}"] = self.dependencies[layer_name]
        ret_layers_keys = set(ret_layers.keys())
        ret_dependencies = {
            name: layer_dependencies[name] & ret_layers_keys for name in ret_layers
        }
        return HighLevelGraph(ret_layers, ret_dependencies)

    cull.__doc__ = dask_cull.__doc__
    cull.rask_linear = True
    return cull


class GraphHelper:
    """State kept between requests: imported functions and small caches."""

    def __init__(self):
        import msgpack

        import dask
        import dask.order
        from dask._expr import LLGExpr
        from dask.highlevelgraph import HighLevelGraph
        from dask.utils import key_split

        from distributed.core import error_message
        from distributed.protocol import deserialize
        from distributed.protocol.compression import decompress
        from distributed.protocol.pickle import dumps as pickle_dumps
        from distributed.protocol.pickle import loads as pickle_loads
        from distributed.scheduler import _cull, _materialize_graph
        from distributed.utils import key_split_group

        # Every delayed graph is culled here (dask.delayed.optimize); the same code in
        # 2025.12.0 to 2026.8.0, so the linear version stands for each tested release.
        if not getattr(HighLevelGraph.cull, "rask_linear", False):
            HighLevelGraph.cull = linear_hlg_cull(HighLevelGraph.cull)

        self.msgpack = msgpack
        self.dask = dask
        self.order = dask.order.order
        self.LLGExpr = LLGExpr
        self.key_split = key_split
        self.key_split_group = key_split_group
        self.error_message = error_message
        self.deserialize = deserialize
        self.decompress = decompress
        self.pickle_dumps = pickle_dumps
        self.pickle_loads = pickle_loads
        self.cull = _cull
        self.materialize_graph = _materialize_graph
        # GraphNode type -> its name, reported as the task's "kind"
        self._kinds: dict[type, str] = {}

    # -- helpers ------------------------------------------------------------

    def _kind(self, t: type) -> str:
        k = self._kinds.get(t)
        if k is None:
            k = self._kinds[t] = t.__name__
        return k

    def _decompress(self, compression, frames: list) -> list:
        if compression and any(c is not None for c in compression):
            return self.decompress({"compression": compression}, frames)
        return frames

    def _annotations_entry(self, ann: dict, rec: dict) -> None:
        if _plain(ann):
            rec["annotations"] = ann
        else:
            try:
                self.msgpack.packb(ann, use_bin_type=True)
                rec["annotations"] = ann
            except Exception:
                rec["annotations_pickled"] = self.pickle_dumps(ann)
        r = _restrictions(ann)
        if r:
            rec["restrictions"] = r

    # -- the request --------------------------------------------------------

    def update_graph(self, req: dict, writer=None) -> dict:
        """``writer``: the reply stream's `_ChunkWriter`, used when the request has a
        ``chunk_size``."""
        t0 = time.perf_counter()
        try:
            header = req["expr_header"]
            frames = req["expr_frames"]
            keys = req["keys"]
        except KeyError as e:
            raise ValueError(f"update_graph request without {e.args[0]!r}") from None
        if not isinstance(header, dict):
            raise TypeError(f"expr_header must be a map, got {type(header).__name__}")
        frames = list(frames or ())
        keys = list(keys or ())
        internal_priority = req.get("internal_priority")
        validate = req.get("validate")
        if validate is None:
            validate = bool(self.dask.config.get("distributed.scheduler.validate", False))

        # The stock scheduler's comm layer unpickles ToPickle(annotations) before
        # update_graph runs (protocol/core.py:165-172); a failure there has no task-erred
        # equivalent, so it is reported like a graph that cannot be deserialized.
        global_annotations = None
        ann_pickle = req.get("annotations_pickled")
        try:
            if ann_pickle:
                bufs = self._decompress(
                    req.get("annotations_compression"),
                    list(req.get("annotations_buffers") or ()),
                )
                global_annotations = self.pickle_loads(ann_pickle, buffers=bufs)
            # scheduler.py:5018-5029
            expr = self.deserialize(header, self._decompress(header.get("compression"), frames))
        except Exception as e:
            raise RuntimeError(DESERIALIZATION_ERROR) from e
        del frames, header
        t1 = time.perf_counter()

        # scheduler.py:5030-5037, 9390-9404
        dsk, annotations_by_type = self.materialize_graph(expr=expr, validate=validate)
        t2 = time.perf_counter()
        # scheduler.py:5040-5046
        culled = isinstance(expr, self.LLGExpr)
        expr_type = type(expr).__name__
        del expr
        if culled:
            dsk = self.cull(dsk, set(keys))

        kind = self._kind
        for t in {type(node) for node in dsk.values()}:
            kind(t)  # fills the cache the per-task loop reads

        # scheduler.py:5048-5049
        # With "rust_order", rask orders the graph itself (rask-order, identical output
        # for the hashes sent); the client's own priorities still win.
        rust_order = bool(req.get("rust_order")) and not internal_priority
        if not internal_priority and not rust_order:
            internal_priority = self.order(dsk=dsk)
        t3 = time.perf_counter()

        chunk_size = req.get("chunk_size") if writer is not None else None
        sink = _Chunks(writer, chunk_size) if chunk_size is not None else None
        tasks, pickling = self._tasks(
            dsk, internal_priority, annotations_by_type, global_annotations, sink
        )
        t4 = time.perf_counter()
        return {
            "status": "OK",
            "expr_type": expr_type,
            "culled": culled,
            "tasks": tasks,
            "chunks": sink.sent if sink else 0,
            "timings": {
                "deserialize_s": t1 - t0,
                "materialize_s": t2 - t1,
                "order_s": t3 - t2,
                "tasks_s": t4 - t3,
                "total_s": t4 - t0,
                **pickling,
            },
        }

    def _tasks(self, dsk, internal_priority, annotations_by_type, global_annotations, sink=None):
        """The records of `dsk`'s tasks, in `dsk`'s order (with a `sink`, all but the last
        partial chunk go to it as they are made), and how they were made, for the
        timings."""
        args = (internal_priority, annotations_by_type, global_annotations)
        procs = _picklers(len(dsk)) if sink is not None else 1
        if procs > 1:
            return self._records_forked(dsk, procs, args, sink)
        return self._records(dsk.items(), bool(dsk), *args, sink), {"processes": 1}

    def _records_forked(self, dsk, procs: int, args: tuple, sink: _Chunks) -> tuple:
        """`_tasks` in `procs` processes: `dsk` is cut into `procs` slices in order; forked
        children make the records of all but the first, each into a temporary file, while
        this process makes the first slice's and streams them as usual, then copies each
        child's chunks to the reply stream, in order. The records and their order are
        those of one process (a forked child has this process's `hash()`, which
        rask-order's inputs depend on); only the chunk boundaries differ, every slice
        ending in a chunk of its own. A child that fails has its slice redone here, so an
        error is reported as it is without children."""
        import gc

        n = len(dsk)
        bounds = [n * i // procs for i in range(procs + 1)]
        # A child finds its slice through this list: walking the dict up to it would touch
        # (and so copy) every earlier key and node
        keys = list(dsk)
        # [pid (None once reaped or if none), file or None, first, end] per later slice
        children = []
        # Until the children are done, the objects that exist now are left out of garbage
        # collections, here and in the children: a collection touches every object, and so
        # copies every page of the graph a child still shares with this process.
        gc.freeze()
        try:
            for i in range(1, procs):
                lo, hi = bounds[i], bounds[i + 1]
                children.append([*self._fork_slice(dsk, keys, lo, hi, args, sink), lo, hi])
            self._stream(_items(dsk, keys, 0, bounds[1]), args, sink)
            for child in children:
                pid, out, lo, hi = child
                child[0] = None
                if pid is not None and _reap(pid):
                    out.seek(0)
                    sink.forward(out)
                    continue
                if pid is not None:
                    _log(f"the process making records {lo}-{hi} failed; making them here")
                self._stream(_items(dsk, keys, lo, hi), args, sink)
            import resource

            # RSS counts the pages a child still shares with this process, so this is
            # an upper bound of what a child added
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        finally:
            gc.unfreeze()
            for pid, out, _, _ in children:
                if pid is not None:  # this process failed first: the children's work is moot
                    with contextlib.suppress(OSError):
                        os.kill(pid, 9)
                    _reap(pid)
                if out is not None:
                    out.close()
        return [], {"processes": procs, "largest_child_mib": peak}

    def _stream(self, items, args: tuple, sink: _Chunks) -> None:
        """The records of `items` (at least one), all of them to `sink`, the last partial
        chunk too."""
        rest = self._records(items, True, *args, sink)
        if rest:
            sink.emit(rest)

    def _fork_slice(self, dsk, keys, lo: int, hi: int, args: tuple, sink: _Chunks) -> tuple:
        """Forks a child making the records of `dsk`'s items `lo` to `hi` (`keys` in
        order) into a temporary file; returns (its pid, the file), or (None, None) if it
        cannot."""
        import tempfile

        try:
            out = tempfile.TemporaryFile(prefix="rask-records-")
        except OSError as e:
            _log(f"no temporary file for records {lo}-{hi}; making them here: {e}")
            return None, None
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as e:
            _log(f"cannot fork for records {lo}-{hi}; making them here: {e}")
            out.close()
            return None, None
        if pid == 0:
            _die_with(parent)
            self._child_records(_items(dsk, keys, lo, hi), args, sink, out)
        return pid, out

    def _child_records(self, items, args: tuple, sink: _Chunks, out) -> None:
        """In a forked child: the records of `items` into `out`, as chunk messages; exits
        0 when all are written, 1 otherwise. Never returns."""
        status = 1
        try:
            self._stream(items, args, _Chunks(sink.writer, sink.size, out))
            out.flush()
            status = 0
        except BaseException as e:
            _log(f"making records in process {os.getpid()} failed: {type(e).__name__}: {e}")
        finally:
            os._exit(status)

    def run_spec_dumps(self):
        """``distributed.protocol.pickle.dumps`` for the graph's nodes, byte for byte, with
        its per-call module lookup (``inspect.getmodule``, the cloudpickle registry) done
        once: for the node classes of ``dask._task_spec`` (slotted, so an instance's
        ``__module__`` is its class's) the lookup's answer is whether that module is
        registered to be pickled by value. A pickle that fails or names ``__main__`` goes
        through the full function, as does any other type. About 1 µs of 5 per task."""
        import pickle

        import cloudpickle

        full = self.pickle_dumps
        if "dask._task_spec" in cloudpickle.list_registry_pickle_by_value():
            return full
        plain = pickle.dumps
        protocol = pickle.HIGHEST_PROTOCOL
        known = {
            t
            for t in self._kinds
            if t.__module__ == "dask._task_spec" and "__slots__" in vars(t)
        }

        def dumps(x):
            if type(x) in known:
                try:
                    result = plain(x, protocol=protocol)
                except Exception:
                    return full(x)
                if b"__main__" not in result:
                    return result
            return full(x)

        return dumps

    def _records(
        self, items, any_tasks, internal_priority, annotations_by_type, global_annotations, sink
    ):
        kinds = self._kinds
        dumps = self.run_spec_dumps()
        key_split = self.key_split
        key_split_group = self.key_split_group
        prio = internal_priority.get if internal_priority else None
        getsizeof = sys.getsizeof
        empty_fs = getsizeof(frozenset())
        # (name, i, ...) keys: prefix and group depend only on the name; cache per name
        names: dict = {}

        ga_items = tuple(global_annotations.items()) if global_annotations else ()
        abt_items = tuple((a, v) for a, v in annotations_by_type.items() if v)
        dynamic = bool(abt_items) or any(callable(v) for _, v in ga_items)
        static_rec = None
        if ga_items and not dynamic and any_tasks:
            # Same annotations for every task: merge, check and parse them once.
            static_rec = {}
            self._annotations_entry(dict(ga_items), static_rec)

        tasks = []
        append = tasks.append
        for key, node in items:
            if type(key) is tuple and key and type(key[0]) is str:
                name = key[0]
                pg = names.get(name)
                if pg is None:
                    group = key_split_group(key)
                    pg = names[name] = (
                        key_split(key),
                        group if type(group) is str else str(group),
                    )
                prefix, group = pg
            else:
                prefix = key_split(key)
                group = key_split_group(key)
                if type(group) is not str:
                    group = str(group)
            rec = {
                "key": key,
                "deps": list(node.dependencies),
                "run_spec": dumps(node),
                "kind": kinds[type(node)],
                "prefix": prefix,
                "group": group,
            }
            if node.data_producer:
                rec["data_producer"] = True
            if prio is not None:
                rec["order"] = prio(key, 0)
            else:
                # what rask-order needs to reproduce this process's set iteration order
                rec["hash"] = hash(key)
                deps = node.dependencies
                if len(deps) >= 5:
                    rec["deps_table"] = ((getsizeof(deps) - empty_fs) // 16) or 8
            if dynamic:
                # Scheduler._apply_annotations, scheduler.py:5266-5279
                ann = {}
                for a, v in ga_items:
                    ann[a] = v(key) if callable(v) else v
                for a, by_key in abt_items:
                    v = by_key.get(key)
                    if v is not None:
                        ann[a] = v
                if ann:
                    self._annotations_entry(ann, rec)
            elif static_rec:
                rec.update(static_rec)
            append(rec)
            if sink is not None and len(tasks) >= sink.size:
                sink.emit(tasks)
                tasks = []
                append = tasks.append
        return tasks

    # -- errors ---------------------------------------------------------------

    def error_reply(self, e: BaseException) -> dict:
        """Must be called from the ``except`` block that caught ``e``."""
        # error_message() takes the traceback from sys.exc_info(), which in 3.11+ is
        # e.__traceback__; drop this file's frames so the traceback starts in dask /
        # distributed code like the stock one (whose scheduler.py frames
        # get_traceback() drops).
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == _OWN_FILENAME:
            tb = tb.tb_next
        e.__traceback__ = tb
        err = self.error_message(e)
        return {
            "status": "error",
            "exception": err["exception"].data,
            "traceback": err["traceback"].data if err["traceback"] is not None else None,
            "exception_text": err["exception_text"],
            "traceback_text": err["traceback_text"],
        }


_OWN_FILENAME = GraphHelper.error_reply.__code__.co_filename


class _Chunks:
    """Where ``_tasks`` sends each full chunk of records: `writer`'s stream, or `out`."""

    def __init__(self, writer: _ChunkWriter, size: int, out=None):
        if type(size) is not int or size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {size!r}")
        self.writer = writer
        self.size = size
        self.out = out
        self.sent = 0

    def emit(self, records: list) -> None:
        self.writer.chunk(records, self.out)
        self.sent += 1

    def forward(self, f) -> None:
        """Copies the chunk messages another `_Chunks` wrote to the file `f`."""
        self.sent += self.writer.copy(f)


class _ChunkWriter:
    """Writes one request's ``{"id": n, "chunk": [...]}`` messages."""

    def __init__(self, server: Server, rid):
        self.server = server
        self.rid = rid

    def chunk(self, records: list, out=None) -> None:
        # A chunk that cannot be encoded fails the request (raised here); an error reply
        # in its place would end the request for the scheduler while records still came.
        body = self.server.msgpack.packb(
            {"id": self.rid, "chunk": records}, use_bin_type=True, default=_pack_default
        )
        _write_frame(self.server.wfile if out is None else out, body)

    def copy(self, f) -> int:
        """Copies the framed messages of `f` to the reply stream; returns how many."""
        n = 0
        wfile = self.server.wfile
        while head := f.read(8):
            size = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            body = f.read(size) if size >= 0 else b""
            if len(body) != size:
                raise RuntimeError("a process making records wrote a truncated chunk")
            _write_frame(wfile, body)
            n += 1
        return n


def _write_frame(f, body: bytes) -> None:
    f.write(struct.pack("<Q", len(body)))
    f.write(body)
    f.flush()


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    if v is None:
        return default
    try:
        return int(v)
    except ValueError:
        _log(f"{name}={v!r} is not an integer; using {default}")
        return default


def _picklers(n_tasks: int) -> int:
    """How many processes make the records of a graph of `n_tasks` tasks."""
    if n_tasks < _env_int("RASK_HELPER_PARALLEL_MIN", PARALLEL_MIN_TASKS):
        return 1
    import threading

    # A forked child has only the thread that forked: a lock another thread held would
    # stay held in it.
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _env_int("RASK_HELPER_PICKLERS", MAX_PICKLERS), n_tasks))


def _items(dsk: dict, keys: list, lo: int, hi: int):
    """`dsk`'s items `lo` to `hi`, `keys` being its keys in order."""
    part = keys[lo:hi]
    return zip(part, map(dsk.__getitem__, part))


def _die_with(parent: int) -> None:
    """In a forked child: be killed when `parent` dies (the scheduler stops a helper by
    its pid alone), and exit now if it already has."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL (Linux)
    except Exception:
        pass
    if os.getppid() != parent:
        os._exit(1)


def _reap(pid: int) -> bool:
    """Waits for the child `pid`; True if it exited 0."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return False
    return os.waitstatus_to_exitcode(status) == 0


def _fallback_error_reply(e: BaseException) -> dict:
    """When error_message() itself fails: the same shape, minimal content."""
    import pickle

    text = f"{type(e).__name__}({e!r})"
    try:
        exc = pickle.dumps(Exception(text))
    except Exception:  # pragma: no cover
        exc = b""
    return {
        "status": "error",
        "exception": exc,
        "traceback": None,
        "exception_text": text,
        "traceback_text": "",
    }


# ---------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------


def run_function(req: dict) -> dict:
    """``Client.run_on_scheduler`` in a helper (see the module docstring)."""
    import asyncio
    import inspect

    from distributed.protocol import pickle
    from distributed.utils import has_arg

    function = pickle.loads(req["function"])
    args = pickle.loads(req["args"]) if req.get("args") else ()
    kwargs = pickle.loads(req["kwargs"]) if req.get("kwargs") else {}
    is_coro = inspect.iscoroutinefunction(function)
    # worker.run asserts this too: a plain function cannot run in the background.
    assert req.get("wait", True) or is_coro, "Combination not supported"
    if has_arg(function, "dask_scheduler"):
        return {"status": "need-scheduler"}
    if is_coro:
        result = asyncio.run(function(*args, **kwargs))
    else:
        result = function(*args, **kwargs)
    serializers = req.get("serializers")
    if serializers is not None:
        # The client's deserializers came with the request: the stock scheduler writes
        # its reply with them (core.py:816), so what they cannot carry reaches the client
        # as an "error" payload, which raises TypeError there (test_turn_off_pickle).
        from distributed.protocol.serialize import serialize_and_split

        header, frames = serialize_and_split(result, serializers=serializers, on_error="message")
        header["num-sub-frames"] = len(frames)
        return {"status": "OK", "header": header, "frames": [bytes(f) for f in frames]}
    return {"status": "OK", "result": pickle.dumps(result)}


def write_cluster_dump(req: dict) -> dict:
    """``Scheduler.dump_cluster_state_to_url`` (scheduler.py:4364): rask gathers the state
    (``get_cluster_state``) and this writes it with ``cluster_dump.write_state``, so URLs,
    ``storage_options`` and formats are fsspec's and distributed's own."""
    import asyncio

    from distributed import cluster_dump

    state = req["state"]

    async def get_state():
        return state

    asyncio.run(
        cluster_dump.write_state(
            get_state, req["url"], req["format"], **dict(req.get("storage_options") or {})
        )
    )
    return {"status": "OK"}


def _pack_default(obj):
    """Last resort for reply values msgpack does not know (only parsed restrictions
    can contain them; annotations are checked and pickled if needed)."""
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        try:
            return item()
        except Exception:
            pass
    return str(obj)


class Server:
    def __init__(self, rfile, wfile):
        import msgpack

        self.msgpack = msgpack
        self.rfile = rfile
        self.wfile = wfile
        self.helper: GraphHelper | None = None

    def write(self, msg: dict) -> None:
        try:
            body = self.msgpack.packb(msg, use_bin_type=True, default=_pack_default)
        except Exception as e:
            rid = msg.get("id")
            try:
                raise RuntimeError(f"rask graph helper could not encode its reply: {e!r}") from e
            except RuntimeError as e2:
                err = self._error(e2)
            err["id"] = rid
            body = self.msgpack.packb(err, use_bin_type=True, default=_pack_default)
        _write_frame(self.wfile, body)

    def _error(self, e: BaseException) -> dict:
        try:
            if self.helper is None:
                raise RuntimeError("not initialised")
            return self.helper.error_reply(e)
        except Exception:
            return _fallback_error_reply(e)

    def handle(self, body: bytes) -> dict:
        rid = None
        try:
            try:
                req = self.msgpack.unpackb(
                    body, raw=False, strict_map_key=False, use_list=False
                )
            except Exception as e:
                raise ValueError(f"cannot decode request: {type(e).__name__}: {e}") from e
            if not isinstance(req, dict):
                raise TypeError(f"request must be a map, got {type(req).__name__}")
            rid = req.get("id")
            op = req.get("op")
            if op in ("update_graph", "run_function"):
                uploaded_archives_on_path()
            if op == "update_graph":
                reply = self.helper.update_graph(req, writer=_ChunkWriter(self, rid))
            elif op == "ping":
                reply = {"status": "OK"}
            elif op == "run_function":
                reply = run_function(req)
            elif op == "shuffle_create_run":
                reply = shuffle_create_run(req)
            elif op == "write_cluster_dump":
                reply = write_cluster_dump(req)
            else:
                raise ValueError(f"unknown op {op!r}")
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # SystemExit from user code must not end the loop
            _log(f"request id={rid!r} failed: {type(e).__name__}: {e}")
            reply = self._error(e)
        reply["id"] = rid
        return reply

    def run(self, warm: tuple[str, ...] = ()) -> int:
        """Serves requests until stdin closes. `warm`: modules to import while idle, one
        after each [`WARM_AFTER_IDLE_S`] without a request, so a graph that comes soon after
        the start or after another graph does not wait for imports it may not need (the
        scheduler sends a helper one request at a time, so nothing is buffered beyond what
        `select` sees)."""
        import select

        read = self.rfile.read
        pending = list(warm)
        while True:
            while pending and not select.select([self.rfile], [], [], WARM_AFTER_IDLE_S)[0]:
                preimport((pending.pop(0),))
            head = read(8)
            if len(head) < 8:
                if head:
                    _log("stdin closed inside a length prefix")
                return 0
            (n,) = struct.unpack("<Q", head)
            if n > MAX_FRAME:
                _log(f"corrupt length prefix {n}; exiting")
                try:
                    raise ValueError(f"corrupt request framing: length prefix {n}")
                except ValueError as e:
                    err = self._error(e)
                err["id"] = None
                self.write(err)
                return 1
            body = read(n)
            if len(body) < n:
                _log(f"stdin closed inside a request ({len(body)} of {n} bytes)")
                return 0
            reply = self.handle(body)
            del body
            self.write(reply)


def run_serve() -> int:
    global LOCAL_DIRECTORY
    import signal

    # Rust owns our lifetime (EOF on stdin); a Ctrl-C sent to the whole process group
    # must not kill us halfway through a reply.
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except Exception:
        pass

    # Keep private copies of the real stdin/stdout for the protocol, then point fds 0/1
    # at /dev/null and stderr, so nothing materialization does (print, C extensions,
    # subprocesses) can read requests or corrupt the reply stream.
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        os.dup2(2, 1)
    except OSError:  # no stderr: discard stray output
        sink = os.open(os.devnull, os.O_WRONLY)
        os.dup2(sink, 1)
        os.close(sink)
    sys.stdout = sys.stderr
    try:
        import faulthandler

        faulthandler.enable()  # a crash in a C extension leaves a trace in the log
    except Exception:
        pass
    rfile = os.fdopen(in_fd, "rb", buffering=1 << 16)
    wfile = os.fdopen(out_fd, "wb", buffering=1 << 16)

    try:
        import msgpack
    except BaseException as e:
        _log(f"cannot import msgpack: {type(e).__name__}: {e}")
        return 1
    server = Server(rfile, wfile)

    # RASK_HELPER_WARM: when this helper imports PREIMPORTS.
    #   "after-ready" (default): after `ready`, one module at a time while the helper is
    #     idle, so they delay neither the scheduler's start nor, mostly, an early graph;
    #   "never": a graph is already waiting for this helper; it imports what it needs.
    warm = os.environ.get("RASK_HELPER_WARM", "after-ready")

    try:
        # distributed.core.Server puts its local_directory on sys.path (core.py:261)
        # (made only when a plugin needs it, so a scheduler that never gets one leaves
        # nothing behind even when its helpers are killed)
        local_directory = LOCAL_DIRECTORY = scheduler_local_directory(create=False)
        purge_stale_local_directories(local_directory)
        sys.path.insert(0, local_directory)
        ready = ready_message()
    except BaseException as e:
        error = f"{type(e).__name__}: {e}"
        _log(f"cannot start: {error}")
        try:
            server.write({"op": "fatal", "pid": os.getpid(), "error": error})
        except Exception:
            pass
        return 1

    try:
        server.write(ready)
        server.helper = GraphHelper()
        return server.run(PREIMPORTS if warm == "after-ready" else ())
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the scheduler went away
    finally:
        # The scheduler is gone (it closed our stdin): its local directory goes with it,
        # as the stock scheduler's does. Every helper ends at once, so any may remove it.
        import shutil

        shutil.rmtree(local_directory, ignore_errors=True)
        # and so does dask-scratch-space, if nothing else is in it
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(local_directory))


def shuffle_create_run(req: dict) -> dict:
    """The Python half of ``ShuffleSchedulerPlugin._create`` (shuffle/_scheduler_plugin.py):
    read the ``ShuffleSpec`` from the barrier task's pickled run_spec, pin every output
    partition to a worker (``existing`` pins from shuffles sharing output tasks win, as in
    ``_calculate_worker_for``), and build the pickled ``ShuffleRunSpec``. Rust chooses the
    worker order (rotation included) and the run id, so run ids stay unique across helpers.

    Request: ``{"barrier_run_spec": bytes, "workers": [str], "existing": {partition: str},
    "run_id": int, "span_id": str|None}``.
    Reply: ``{"status": "OK", "run_spec": bytes, "worker_for": {partition: str}}``.
    """
    from distributed.protocol.pickle import dumps, loads
    from distributed.shuffle._core import ShuffleRunSpec

    spec = loads(req["barrier_run_spec"]).spec
    workers = list(req["workers"])
    existing = dict(req.get("existing") or {})
    worker_for = {}
    for partition in spec.output_partitions:
        worker = existing.get(partition)
        if worker is None:
            worker = spec.pick_worker(partition, workers)
        worker_for[partition] = worker
    run_spec = ShuffleRunSpec(spec=spec, worker_for=worker_for, span_id=req.get("span_id"))
    # run_id is init=False with a process-wide counter; the scheduler owns the numbering.
    object.__setattr__(run_spec, "run_id", int(req["run_id"]))
    return {"status": "OK", "run_spec": dumps(run_spec), "worker_for": worker_for}


def scheduler_local_directory(create: bool = True) -> str:
    """The scheduler's ``local_directory``: one per rask scheduler (the helpers' parent
    process), shared by its helpers and put on their ``sys.path`` at start, as
    ``distributed.core.Server`` does with its own, so what ``Client.upload_file`` puts
    there unpickles in any helper. ``create``: make it (and let imports see it)."""
    import tempfile

    import dask

    base = dask.config.get("temporary-directory") or tempfile.gettempdir()
    path = os.path.join(base, "dask-scratch-space", f"scheduler-rask-{os.getppid()}")
    if create:
        os.makedirs(path, exist_ok=True)
        _forget_missing_path(path)
    return path


def _forget_missing_path(path: str) -> None:
    """Imports remember that a ``sys.path`` entry did not exist; once it does, they must
    look again."""
    import importlib

    if sys.path_importer_cache.get(path, ...) is None:
        del sys.path_importer_cache[path]
        importlib.invalidate_caches()


# The scheduler's local directory, once ``run_serve`` made it.
LOCAL_DIRECTORY: str | None = None


def uploaded_archives_on_path() -> None:
    """``Client.upload_file`` of a ``.egg``/``.zip``/``.pyz`` puts the archive itself on
    ``sys.path`` (``distributed.utils.import_file``), in the helper that ran the upload;
    the others add it before they unpickle a graph or a function."""
    directory = LOCAL_DIRECTORY
    if directory is None:
        return
    try:
        names = os.listdir(directory)
    except OSError:
        return
    _forget_missing_path(directory)
    for name in sorted(names):
        path = os.path.join(directory, name)
        if name.endswith((".egg", ".zip", ".pyz")) and path not in sys.path:
            sys.path.insert(0, path)


def purge_stale_local_directories(path: str) -> None:
    """Removes the local directories of rask schedulers that are gone (their helpers
    were killed before they could remove it), as ``distributed.diskutils.WorkSpace``
    purges stale work directories."""
    import shutil

    parent = os.path.dirname(path)
    try:
        entries = os.listdir(parent)
    except OSError:
        return  # no dask-scratch-space yet
    for entry in entries:
        prefix, _, pid = entry.rpartition("-")
        if prefix != "scheduler-rask" or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        except OSError:
            pass  # alive, another user's


def ready_message() -> dict:
    """The helper's first message (see ``serve`` above); ``rask.Scheduler`` computes the
    same in its own process with this function."""
    import distributed.versions

    return {
        "op": "ready",
        "pid": os.getpid(),
        "versions": distributed.versions.get_versions(),
        "python": sys.executable,
        "config": scheduler_config(),
        "worker_plugins": worker_plugins(),
    }


def preimport(modules: tuple[str, ...] = PREIMPORTS) -> None:
    import importlib

    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError:
            pass
        except Exception as e:
            _log(f"pre-import of {mod} failed: {type(e).__name__}: {e}")


def worker_plugins() -> dict:
    """What the stock scheduler registers at start: the P2P shuffle worker plugin
    (``ShuffleSchedulerPlugin.start``), pickled, for every ``register-worker`` reply."""
    from distributed.protocol.pickle import dumps
    from distributed.shuffle._worker_plugin import ShuffleWorkerPlugin

    return {"shuffle": dumps(ShuffleWorkerPlugin())}


class ConfigError(ValueError):
    """A Dask setting rask cannot use; its message names the key and the value."""


def scheduler_config() -> dict:
    """The scheduler settings rask takes from the user's Dask configuration, read with
    ``dask.config`` in this environment: the YAML files (``/etc/dask``, ``~/.config/dask``,
    ``$DASK_CONFIG``), ``DASK_*`` variables and ``DASK_INTERNAL_INHERIT_CONFIG``, over
    distributed's defaults. Values come out normalized (seconds, ints, bools, paths); a
    value that does not parse raises ConfigError naming the key, as the stock scheduler
    would fail at start."""
    import math

    import dask.config
    import distributed  # noqa: F401  (its import adds distributed.yaml's defaults)
    from dask.utils import parse_timedelta

    def get(key, parse):
        value = dask.config.get(key, None)
        try:
            return parse(value)
        except Exception as e:
            raise ConfigError(f"Dask config {key}: cannot use {value!r}: {e}") from None

    def seconds(v):
        return None if v is None else float(parse_timedelta(v, default="s"))

    def count(v):
        if isinstance(v, bool) or int(v) != float(v) or int(v) < 0:
            raise ValueError("expected a whole number >= 0")
        return int(v)

    def optional_count(v):
        # a deque's maxlen: None is no limit
        return None if v is None else count(v)

    def task_stream_length(_):
        # TaskStreamPlugin: the larger of the two dashboards' lengths (None: no limit)
        lengths = [
            get(f"distributed.scheduler.dashboard.{page}.task-stream-length", optional_count)
            for page in ("status", "tasks")
        ]
        return None if None in lengths else max(lengths)

    def boolean(v):
        if not isinstance(v, bool):
            raise ValueError("expected True or False")
        return v

    def optional_bool(v):
        return None if v is None else boolean(v)

    def saturation(v):
        # scheduler.py: "inf" turns queuing off; anything else must be a number > 0
        if v == "inf":
            return math.inf
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError("must be a float > 0 or 'inf'")
        return float(v)

    def path(v):
        if v is None:
            return None
        if not isinstance(v, str):
            raise ValueError("expected a file path")
        return v

    def text(v):
        return None if v is None else str(v)

    def tls_version(v):
        if v is None:
            return None
        if str(v) not in ("1.2", "1.3"):
            raise ValueError("expected 1.2 or 1.3")
        return str(v)

    tls = "distributed.comm.tls"
    return {
        "allowed-failures": get("distributed.scheduler.allowed-failures", count),
        "low-level-log-length": get("distributed.admin.low-level-log-length", optional_count),
        "task-stream-length": task_stream_length(None),
        "recent-to-old-time": get("distributed.worker.memory.recent-to-old-time", seconds),
        # None (an unbounded deque in Dask) is sent as None: rask keeps its default then
        "log-length": get("distributed.admin.log-length", optional_count),
        "lease-validation-interval": get(
            "distributed.scheduler.locks.lease-validation-interval", seconds
        ),
        "worker-ttl": get("distributed.scheduler.worker-ttl", seconds),
        "worker-saturation": get("distributed.scheduler.worker-saturation", saturation),
        "work-stealing": get("distributed.scheduler.work-stealing", boolean),
        "work-stealing-interval": get("distributed.scheduler.work-stealing-interval", seconds),
        "idle-timeout": get("distributed.scheduler.idle-timeout", seconds),
        "connect-timeout": get("distributed.comm.timeouts.connect", seconds),
        "tcp-timeout": get("distributed.comm.timeouts.tcp", seconds),
        "require-encryption": get("distributed.comm.require-encryption", optional_bool),
        "tls-ca-file": get(f"{tls}.ca-file", path),
        "tls-cert": get(f"{tls}.scheduler.cert", path),
        "tls-key": get(f"{tls}.scheduler.key", path),
        "tls-ciphers": get(f"{tls}.ciphers", text),
        "tls-min-version": get(f"{tls}.min-version", tls_version),
        "tls-max-version": get(f"{tls}.max-version", tls_version),
    }


def main(argv: list[str]) -> int:
    # `python -c` puts the working directory first on sys.path; `dask scheduler` does
    # not, and a stray dask.py / msgpack.py in it must not shadow the real packages.
    if sys.path and sys.path[0] in ("", "."):
        del sys.path[0]
    mode = argv[1] if len(argv) > 1 else None
    if mode == "check":
        return run_check()
    if mode == "serve":
        return run_serve()
    sys.stderr.write("usage: python -c <rask_graph_helper source> check|serve\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
