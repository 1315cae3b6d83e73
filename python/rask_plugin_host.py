"""rask plugin host: the scheduler-side Python of a rask scheduler.

The rask scheduler (Rust) embeds this file with ``include_str!`` and runs it beside itself as

    PYTHON -u -c <this source> serve --address ADDR --id SCHEDULER_ID
        [--preload NAME]... [--preload-argv ARG]...

(``python rask_plugin_host.py serve ...`` works too), so it is self-contained: standard
library at import time, dask/distributed/msgpack imported once serving starts, nothing
depending on ``__file__`` or on sibling files.

It holds a *scheduler facade* (:class:`SchedulerFacade`): the parts of
``distributed.Scheduler`` that ``SchedulerPlugin``s, ``Client.run_on_scheduler`` functions
taking ``dask_scheduler``, the ``feed`` of progress bars, ``performance_report`` and
``--preload`` scripts use, kept up to date from the events rask streams in the order its
core made the changes. The wire protocol (stdin/stdout, 8-byte little-endian length +
msgpack map) is docs/plugin-host.md; this file implements it.

How it runs: the main thread runs an asyncio event loop; a reader thread reads and decodes
framed messages from stdin and hands them to the loop; one consumer coroutine takes them
strictly in order. Event batches, plugin (un)registration, ``feed_stop`` and ``close`` are
handled inline, so a hook or a plugin's ``start`` sees the mirror exactly as of its
message; coroutine ``run_function``s, feeds and performance reports run as tasks, since
they may wait for later events. Only the loop thread writes to stdout. EOF on stdin: the
plugins' ``before_close``/``close`` run, then the host exits 0.

Everything the facade does *to* the scheduler (``log_event``, ``register_worker_plugin``,
``broadcast``, profiles, ...) is an RPC to rask at ``--address``, as any Dask peer's.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import struct
import sys
import time
from collections import defaultdict, deque

# A length prefix above this cannot be a real message: the stream is out of sync.
MAX_FRAME = 1 << 40

# Hook failures (and failing requests) are logged or answered, never fatal to the host;
# asyncio.CancelledError is not among them: it is how feeds and requests are stopped.
FAILURES = (Exception, SystemExit, KeyboardInterrupt)

DOC = "docs/plugin-host.md"


def _log(msg: str) -> None:
    """For the few lines written before logging is configured (and by the reader thread)."""
    try:
        sys.stderr.write(f"rask-plugin-host[{os.getpid()}]: {msg}\n")
        sys.stderr.flush()
    except Exception:
        pass


# ---------------------------------------------------------------------------
# The scheduler's local directory (the same one as the graph helpers')
# ---------------------------------------------------------------------------


def scheduler_local_directory(create: bool = True) -> str:
    """The scheduler's ``local_directory``: one per rask scheduler, named after the rask
    process. The graph helpers compute the very same path (they, like this host, are
    children of the rask binary), so what ``Client.upload_file`` puts there imports
    everywhere. ``create``: make it (and let imports see it)."""
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


def uploaded_archives_on_path(directory: str) -> None:
    """``Client.upload_file`` of a ``.egg``/``.zip``/``.pyz`` puts the archive itself on
    ``sys.path`` of the process that ran the upload (``distributed.utils.import_file``);
    that may have been a graph helper, so the host adds them before it unpickles."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    _forget_missing_path(directory)
    for name in sorted(names):
        path = os.path.join(directory, name)
        if name.endswith((".egg", ".zip", ".pyz")) and path not in sys.path:
            sys.path.insert(0, path)


# ---------------------------------------------------------------------------
# The mirror: TaskState, WorkerState, ClientState, TaskGroup, TaskPrefix
# ---------------------------------------------------------------------------


def _missing(stock: str, name: str, mirrored: str) -> AttributeError:
    return AttributeError(
        f"{stock!r} object (rask's scheduler facade) has no attribute {name!r}: rask runs "
        f"scheduler plugins beside a Rust scheduler and mirrors only {mirrored}; see {DOC}"
    )


class _Mirrored:
    """Base of the facade's classes: a missing attribute (most likely one the stock
    class has) is an AttributeError that says what the facade mirrors, not a bare one."""

    __slots__ = ()
    _stock = ""
    _mirrored = ""

    def __getattr__(self, name):
        raise _missing(self._stock, name, self._mirrored)


# scheduler.py ALL_TASK_STATES, as a literal: at import time this file imports only the
# standard library.
ALL_TASK_STATES = (
    "released",
    "waiting",
    "no-worker",
    "queued",
    "processing",
    "memory",
    "erred",
    "forgotten",
)


class TaskPrefix(_Mirrored):
    """``scheduler.TaskPrefix``: tasks by ``key_split(key)``; state counts only."""

    _stock = "TaskPrefix"
    _mirrored = "name, states, state_counts, nbytes_total, types, groups and len()"

    def __init__(self, name: str):
        self.name = name
        self.states = dict.fromkeys(ALL_TASK_STATES, 0)
        self.state_counts: defaultdict[str, int] = defaultdict(int)
        self.nbytes_total = 0
        self._types: dict[str, int] = {}
        self._groups: dict[TaskGroup, None] = {}
        self._size = 0

    @property
    def types(self):
        return self._types.keys()

    @property
    def groups(self):
        return self._groups.keys()

    def remove_group(self, tg: TaskGroup) -> None:
        # scheduler.py TaskPrefix.remove_group: the group's counts leave the prefix's
        del self._groups[tg]
        for state, count in tg.states.items():
            self.states[state] -= count
            self._size -= count
        self.nbytes_total -= tg.nbytes_total
        for typename, count in tg._types.items():
            left = self._types[typename] - count
            if left:
                self._types[typename] = left
            else:
                del self._types[typename]

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.states.items()) if v)
        return f"<{self.name}: {counts}>"


class TaskGroup(_Mirrored):
    """``scheduler.TaskGroup``: tasks by ``key_split_group(key)``; state counts only."""

    _stock = "TaskGroup"
    _mirrored = "name, prefix, states, dependencies, nbytes_total, types, done and len()"

    def __init__(self, name: str, prefix: TaskPrefix):
        self.name = name
        self.prefix = prefix
        self.states = dict.fromkeys(ALL_TASK_STATES, 0)
        self.dependencies: set[TaskGroup] = set()
        self.nbytes_total = 0
        self._types: dict[str, int] = {}
        self._size = 0
        prefix._groups[self] = None

    @property
    def types(self):
        return self._types.keys()

    @property
    def done(self) -> bool:
        return all(
            count == 0 or state in ("memory", "erred", "released", "forgotten")
            for state, count in self.states.items()
        )

    def add(self, ts: TaskState) -> None:
        self.states[ts._state] += 1
        self._size += 1
        self.prefix.states[ts._state] += 1
        self.prefix._size += 1

    def add_type(self, typename: str) -> None:
        self._types[typename] = self._types.get(typename, 0) + 1
        types = self.prefix._types
        types[typename] = types.get(typename, 0) + 1

    def update_nbytes(self, diff: int) -> None:
        self.nbytes_total += diff
        self.prefix.nbytes_total += diff

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.states.items()) if v)
        return f"<{self.name or 'no-group'}: {counts}>"


class TaskState(_Mirrored):
    """``scheduler.TaskState``, as far as rask's events tell. Hashed by identity: the
    mirror holds one object per key at a time."""

    _stock = "TaskState"
    _mirrored = (
        "key, state, dependencies, dependents, who_has, processing_on, nbytes, type, "
        "group, prefix, group_key, exception, traceback, exception_text, traceback_text, "
        "exception_blame, annotations, priority, who_wants and retries"
    )
    __slots__ = (
        "key",
        "_state",
        "dependencies",
        "dependents",
        "who_has",
        "processing_on",
        "nbytes",
        "type",
        "group",
        "exception",
        "traceback",
        "exception_text",
        "traceback_text",
        "exception_blame",
        "annotations",
        "priority",
        "who_wants",
        "retries",
        "__weakref__",
    )

    def __init__(self, key, state: str, group: TaskGroup):
        self.key = key
        self._state = state
        self.dependencies: set[TaskState] = set()
        self.dependents: set[TaskState] = set()
        self.who_has: set[WorkerState] = set()
        self.processing_on: WorkerState | None = None
        self.nbytes = -1
        self.type: str | None = None
        self.exception = None
        self.traceback = None
        self.exception_text: str | None = None
        self.traceback_text: str | None = None
        self.exception_blame: TaskState | None = None
        self.annotations: dict = {}
        self.priority: tuple | None = None
        self.who_wants: set[ClientState] = set()
        self.retries = 0
        self.group = group
        group.add(self)

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        # scheduler.py TaskState.state: the group and prefix counts follow every change
        self.group.states[self._state] -= 1
        self.group.states[value] += 1
        prefix = self.group.prefix
        prefix.states[self._state] -= 1
        prefix.states[value] += 1
        prefix.state_counts[value] += 1
        self._state = value

    @property
    def prefix(self) -> TaskPrefix:
        return self.group.prefix

    @property
    def group_key(self) -> str:
        return self.group.name

    def get_nbytes(self) -> int:
        return self.nbytes if self.nbytes >= 0 else DEFAULT_DATA_SIZE

    def set_nbytes(self, nbytes: int) -> None:
        # scheduler.py TaskState.set_nbytes
        diff = nbytes
        if self.nbytes >= 0:
            diff -= self.nbytes
        self.group.update_nbytes(diff)
        for ws in self.who_has:
            ws.nbytes += diff
        self.nbytes = nbytes

    def __repr__(self) -> str:
        return f"<TaskState {self.key!r} {self._state}>"


# distributed.scheduler.DEFAULT_DATA_SIZE (config distributed.scheduler.default-data-size),
# set in run_serve once dask is imported.
DEFAULT_DATA_SIZE = 1024


class WorkerState(_Mirrored):
    """``scheduler.WorkerState``: what the ``add_worker`` record carries, plus the tasks
    processing on it and held by it."""

    _stock = "WorkerState"
    _mirrored = (
        "address, name, nthreads, memory_limit, host, nanny, resources, status, "
        "processing, has_what, nbytes and identity()"
    )
    __slots__ = (
        "address",
        "name",
        "nthreads",
        "memory_limit",
        "host",
        "nanny",
        "resources",
        "status",
        "processing",
        "has_what",
        "nbytes",
        "__weakref__",
    )

    def __init__(self, rec: dict):
        from distributed.comm.addressing import get_address_host
        from distributed.core import Status

        self.address = rec["address"]
        self.name = rec.get("name", self.address)
        self.nthreads = rec.get("nthreads") or 0
        self.memory_limit = rec.get("memory_limit") or 0
        self.host = rec.get("host") or get_address_host(self.address)
        self.nanny = rec.get("nanny")
        self.resources = dict(rec.get("resources") or {})
        status = rec.get("status") or "running"
        try:
            self.status = Status(status)
        except ValueError:
            self.status = status
        self.processing: set[TaskState] = set()
        self.has_what: set[TaskState] = set()
        self.nbytes = 0

    def identity(self) -> dict:
        return {
            "type": "Worker",
            "id": self.name,
            "host": self.host,
            "resources": self.resources,
            "name": self.name,
            "nthreads": self.nthreads,
            "memory_limit": self.memory_limit,
            "status": getattr(self.status, "name", self.status),
            "nanny": self.nanny,
        }

    def __repr__(self) -> str:
        name = f", name: {self.name}" if self.name != self.address else ""
        return (
            f"<WorkerState {self.address!r}{name}, "
            f"status: {getattr(self.status, 'name', self.status)}, "
            f"memory: {len(self.has_what)}, "
            f"processing: {len(self.processing)}>"
        )


class ClientState(_Mirrored):
    """``scheduler.ClientState``: its key and the tasks it wants."""

    _stock = "ClientState"
    _mirrored = "client_key and wants_what"
    __slots__ = ("client_key", "wants_what", "__weakref__")

    def __init__(self, client: str):
        self.client_key = client
        self.wants_what: set[TaskState] = set()

    def __repr__(self) -> str:
        return f"<Client {self.client_key!r}>"

    def __str__(self) -> str:
        return self.client_key


# ---------------------------------------------------------------------------
# The facade
# ---------------------------------------------------------------------------

# The stock scheduler's logger: plugin failures are logged under the same name.
logger = logging.getLogger("distributed.scheduler")


class SchedulerFacade(_Mirrored):
    """What plugins, ``run_on_scheduler`` functions, feeds and preloads get as the
    scheduler. The mirrored state is changed only by the events (``_apply_events``);
    what the facade asks of the scheduler is an RPC to rask."""

    _stock = "Scheduler"
    _mirrored = (
        "the scheduler's tasks, workers, clients, task_groups, task_prefixes, events and "
        "plugins (kept from an event stream), and add_plugin/remove_plugin, log_event/"
        "get_events, identity, upload_file, register/unregister_worker_plugin and "
        "_nanny_plugin, broadcast, get_profile, monitor, local_directory, loop, status"
    )

    def __init__(self, host: Host, address: str, scheduler_id: str, local_directory: str):
        from functools import partial

        import dask
        from tornado.ioloop import IOLoop

        from distributed.core import Status

        self._host = host
        self.address = address
        self.id = scheduler_id
        self.local_directory = local_directory
        self.status = Status.running
        self.loop = IOLoop.current()
        self.time_started = time.time()
        self.plugins: dict = {}
        self.tasks: dict = {}
        self.workers: dict = {}
        self.clients: dict = {}
        self.task_groups: dict = {}
        self.task_prefixes: dict = {}
        # Scheduler._broker: events per topic, as many as the stock scheduler keeps
        maxlen = dask.config.get("distributed.admin.low-level-log-length")
        self.events = defaultdict(partial(deque, maxlen=maxlen))
        self._monitor = None

    # -- plugins (scheduler.py add_plugin / remove_plugin) ----------------------

    def add_plugin(self, plugin, *, idempotent: bool = False, name=None, **kwargs) -> None:
        import warnings

        from distributed.diagnostics.plugin import _get_plugin_name

        if name is None:
            name = _get_plugin_name(plugin)
        if name in self.plugins:
            if idempotent:
                return
            warnings.warn(
                f"Scheduler already contains a plugin with name {name}; overwriting.",
                category=UserWarning,
            )
        self.plugins[name] = plugin
        self._host.plugins_may_have_changed()

    def remove_plugin(self, name=None) -> None:
        assert name is not None
        try:
            del self.plugins[name]
        except KeyError:
            raise ValueError(
                f"Could not find plugin {name!r} among the current scheduler plugins"
            )
        self._host.plugins_may_have_changed()

    # -- events ------------------------------------------------------------

    def log_event(self, topic, msg) -> None:
        # Not appended here: rask logs it and echoes it back as a `log_event` event, so
        # the mirror and the plugins' log_event hooks see it in rask's order.
        self._host.send_log_event(topic, msg)

    def get_events(self, topic=None):
        if topic is not None:
            return tuple(self.events.get(topic, ()))
        return {name: tuple(events) for name, events in self.events.items() if events}

    # -- cheap summaries ------------------------------------------------------

    @property
    def total_nthreads(self) -> int:
        return sum(ws.nthreads for ws in self.workers.values())

    @property
    def total_memory(self) -> int:
        return sum(ws.memory_limit for ws in self.workers.values())

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    def identity(self, n_workers: int = -1) -> dict:
        """Built from the mirror, synchronously like the stock one; ``services`` (the
        dashboard's port) is not known here."""
        import itertools

        workers = self.workers.values()
        if n_workers != -1:
            workers = itertools.islice(workers, n_workers)
        return {
            "type": "Scheduler",
            "id": str(self.id),
            "address": self.address,
            "services": {},
            "started": self.time_started,
            "n_workers": len(self.workers),
            "total_threads": self.total_nthreads,
            "total_memory": self.total_memory,
            "workers": {ws.address: ws.identity() for ws in workers},
        }

    @property
    def monitor(self):
        """A ``SystemMonitor`` of this host process (the stock scheduler's samples its
        own process; rask's scheduler is not Python). Started on first use:
        ``performance_report`` reads ``monitor.count`` when it starts."""
        if self._monitor is None:
            from distributed.system_monitor import SystemMonitor

            self._monitor = SystemMonitor()
            self._host.spawn(self._sample_monitor())
        return self._monitor

    async def _sample_monitor(self) -> None:
        import dask
        from dask.utils import parse_timedelta

        interval = parse_timedelta(
            dask.config.get("distributed.admin.system-monitor.interval"), default="ms"
        )
        while True:
            await asyncio.sleep(interval)
            self._monitor.update()

    # -- what the facade asks of rask ----------------------------------------------

    async def upload_file(self, filename, data, load: bool = True):
        # distributed.core.Server.upload_file (core.py:382)
        from distributed.utils import import_file

        os.makedirs(self.local_directory, exist_ok=True)
        _forget_missing_path(self.local_directory)
        out_filename = os.path.join(self.local_directory, filename)
        if isinstance(data, str):
            data = data.encode()
        with open(out_filename, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if load:
            import_file(out_filename)
        return {"status": "OK", "nbytes": len(data)}

    async def register_worker_plugin(self, comm, plugin, name, idempotent=False):
        return await self._host.rpc(
            "register_worker_plugin", plugin=plugin, name=name, idempotent=idempotent
        )

    async def register_nanny_plugin(self, comm, plugin, name, idempotent=False):
        return await self._host.rpc(
            "register_nanny_plugin", plugin=plugin, name=name, idempotent=idempotent
        )

    async def unregister_worker_plugin(self, comm, name):
        return await self._host.rpc("unregister_worker_plugin", name=name)

    async def unregister_nanny_plugin(self, comm, name):
        return await self._host.rpc("unregister_nanny_plugin", name=name)

    async def broadcast(
        self, *, msg, workers=None, hosts=None, nanny=False, serializers=None, on_error="raise"
    ):
        # `serializers` is how the stock scheduler writes to the workers; rask's own
        # broadcast chooses, so it is not passed on.
        return await self._host.rpc(
            "broadcast", msg=msg, workers=workers, hosts=hosts, nanny=nanny, on_error=on_error
        )

    async def get_profile(
        self,
        comm=None,
        workers=None,
        scheduler=False,
        server=False,
        merge_workers=True,
        start=None,
        stop=None,
        key=None,
    ):
        return await self._host.rpc(
            "profile",
            workers=workers,
            scheduler=scheduler,
            server=server,
            merge_workers=merge_workers,
            start=start,
            stop=stop,
            key=key,
        )

    # -- applying rask's events (docs/plugin-host.md, "rask → host") -----------------

    def _apply_events(self, events) -> None:
        appliers = self._appliers
        for event in events:
            try:
                appliers[event[0]](self, *event[1:])
            except Exception:
                kind = event[0] if event else None
                logger.error("Cannot apply event %r", kind, exc_info=True)

    def _call_hooks(self, hook: str, *args, **kwargs) -> list:
        """Calls ``hook`` on every plugin; a failure is logged, never raised. Returns the
        awaitables the hooks returned."""
        awaitables = []
        for name, plugin in list(self.plugins.items()):
            try:
                result = getattr(plugin, hook)(*args, **kwargs)
            except FAILURES:
                logger.error("Plugin %r failed in %s", name, hook, exc_info=True)
            else:
                if result is not None and inspect.isawaitable(result):
                    awaitables.append(result)
        return awaitables

    def _await_hooks(self, hook: str, awaitables: list) -> None:
        """``add_worker``/``remove_worker``: the stock scheduler gathers the async hooks;
        here they run beside the event stream instead of holding it up."""
        if not awaitables:
            return

        async def gather():
            for result in await asyncio.gather(*awaitables, return_exceptions=True):
                if isinstance(result, BaseException):
                    logger.error("Plugin failed in %s", hook, exc_info=result)

        self._host.spawn(gather())

    def _clear(self) -> None:
        for collection in (
            self.tasks,
            self.workers,
            self.clients,
            self.task_groups,
            self.task_prefixes,
        ):
            collection.clear()

    def _new_task(self, key, state: str, group=None, prefix=None) -> TaskState:
        if group is None:
            group = _key_split_group(key)
            if type(group) is not str:
                group = str(group)
        tg = self.task_groups.get(group)
        if tg is None:
            if prefix is None:
                prefix = _key_split(key)
            tp = self.task_prefixes.get(prefix)
            if tp is None:
                tp = self.task_prefixes[prefix] = TaskPrefix(prefix)
            tg = self.task_groups[group] = TaskGroup(group, tp)
        ts = self.tasks[key] = TaskState(key, state, tg)
        return ts

    def _client(self, name: str) -> ClientState:
        cs = self.clients.get(name)
        if cs is None:
            cs = self.clients[name] = ClientState(name)
        return cs

    def _task_from_record(self, rec: dict) -> TaskState:
        ts = self._new_task(
            rec["key"], rec.get("state") or "released", rec.get("group"), rec.get("prefix")
        )
        priority = rec.get("priority")
        ts.priority = tuple(priority) if priority is not None else None
        ts.annotations = dict(rec.get("annotations") or {})
        ts.retries = rec.get("retries") or 0
        # pickled, as the stock scheduler keeps them Serialized
        if rec.get("exception") is not None:
            ts.exception = rec["exception"]
            ts.traceback = rec.get("traceback")
        return ts

    def _wire_record(self, ts: TaskState, rec: dict) -> None:
        """The parts of a task record that name other tasks, workers and clients."""
        workers = self.workers
        nbytes = rec.get("nbytes")
        if isinstance(nbytes, int) and nbytes >= 0:
            ts.set_nbytes(nbytes)
        for address in rec.get("who_has") or ():
            ws = workers.get(address)
            if ws is not None and ws not in ts.who_has:
                ts.who_has.add(ws)
                ws.has_what.add(ts)
                ws.nbytes += ts.get_nbytes()
        processing_on = rec.get("processing_on")
        if processing_on is not None:
            ws = workers.get(processing_on)
            if ws is not None:
                ts.processing_on = ws
                ws.processing.add(ts)
        blame = rec.get("exception_blame")
        if blame is not None:
            ts.exception_blame = self.tasks.get(blame)
        typename = rec.get("type")
        # rask knows a result's type as the worker's pickle of it; only a name is a name
        if isinstance(typename, str) and typename:
            ts.type = typename
            ts.group.add_type(typename)
        for client in rec.get("who_wants") or ():
            cs = self._client(client)
            ts.who_wants.add(cs)
            cs.wants_what.add(ts)

    def _add_dependencies(self, ts: TaskState, rec: dict) -> None:
        tasks = self.tasks
        for dep in rec.get("dependencies") or ():
            dts = tasks.get(dep)
            if dts is not None:
                ts.dependencies.add(dts)
                ts.group.dependencies.add(dts.group)
                dts.dependents.add(ts)

    def _event_reset(self, state: dict) -> None:
        self._clear()
        for name in state.get("clients") or ():
            self._client(name)
        for rec in state.get("workers") or ():
            self.workers[rec["address"]] = WorkerState(rec)
        records = state.get("tasks") or ()
        pairs = [(self._task_from_record(rec), rec) for rec in records]
        for ts, rec in pairs:
            self._add_dependencies(ts, rec)
            self._wire_record(ts, rec)

    def _event_graph(self, graph: dict) -> None:
        records = graph.get("tasks") or ()
        new = [
            (self._task_from_record(rec), rec) for rec in records if rec["key"] not in self.tasks
        ]
        for rec in records:
            self._add_dependencies(self.tasks[rec["key"]], rec)
        for ts, rec in new:
            self._wire_record(ts, rec)
        client = graph.get("client")
        keys = graph.get("keys") or ()
        if client is not None:
            cs = self._client(client)
            for key in keys:
                ts = self.tasks.get(key)
                if ts is not None:
                    ts.who_wants.add(cs)
                    cs.wants_what.add(ts)
        if self.plugins:
            tasks = self.tasks
            self._call_hooks(
                "update_graph",
                self,
                client=client,
                keys=set(keys),
                tasks=[rec["key"] for rec in records],
                annotations=dict(graph.get("annotations") or {}),
                priority={rec["key"]: tasks[rec["key"]].priority for rec in records},
                stimulus_id=graph.get("stimulus_id"),
            )

    def _event_transition(
        self, key, start, finish, stimulus_id, kwargs=None, placement=None
    ) -> None:
        kwargs = dict(kwargs) if kwargs else {}
        # where the task runs or is held, for the mirror only: the hooks get `kwargs`,
        # what the stock scheduler passes them
        placement = placement or {}
        ts = self.tasks.get(key)
        if ts is None:
            # a task no graph event announced (scattered data, say): it starts where the
            # transition says it was
            ts = self._new_task(key, start if start in ALL_TASK_STATES else "released")
        worker = placement.get("worker", kwargs.get("worker"))

        ws = ts.processing_on
        if ws is not None and finish != "processing":
            ws.processing.discard(ts)
            ts.processing_on = None
        if ts.who_has and finish != "memory":
            for ws in ts.who_has:
                ws.has_what.discard(ts)
                ws.nbytes -= ts.get_nbytes()
            ts.who_has = set()
        if ts._state == "erred" and finish == "released":
            # scheduler.py _transition_erred_released (a forgotten task keeps them for
            # the hooks)
            ts.exception = ts.traceback = ts.exception_blame = None

        if finish == "processing":
            ws = self.workers.get(worker)
            if ws is not None:
                ts.processing_on = ws
                ws.processing.add(ts)
        elif finish == "memory":
            nbytes = placement.get("nbytes", kwargs.get("nbytes"))
            if type(nbytes) is int and nbytes >= 0:
                ts.set_nbytes(nbytes)
            # scheduler.py _add_to_memory: ts.type is the result's type *name*; the
            # message's `type` is the pickled type object
            typename = kwargs.get("typename")
            if not isinstance(typename, str):
                typename = kwargs.get("type") if isinstance(kwargs.get("type"), str) else None
            if typename:
                ts.type = typename
                ts.group.add_type(typename)
            ws = self.workers.get(worker)
            if ws is not None and ws not in ts.who_has:
                ts.who_has.add(ws)
                ws.has_what.add(ts)
                ws.nbytes += ts.get_nbytes()
        elif finish == "erred":
            # scheduler.py _propagate_erred; the pickled exception and traceback are kept
            # as they came, like the stock scheduler keeps them Serialized
            if kwargs.get("exception") is not None:
                ts.exception = kwargs["exception"]
                ts.exception_text = kwargs.get("exception_text")
                ts.exception_blame = ts
            if kwargs.get("traceback") is not None:
                ts.traceback = kwargs["traceback"]
                ts.traceback_text = kwargs.get("traceback_text")
            cause = self.tasks.get(kwargs.get("cause")) if "cause" in kwargs else None
            if cause is not None:
                ts.exception_blame = cause
        ts.state = finish

        if self.plugins:
            # scheduler.py SchedulerState._transition: a forgotten task is still in
            # `tasks` while the hooks run
            for name, plugin in list(self.plugins.items()):
                try:
                    plugin.transition(key, start, finish, stimulus_id=stimulus_id, **kwargs)
                except FAILURES:
                    logger.error("Plugin %r failed in transition", name, exc_info=True)
        if finish == "forgotten":
            self._forget(ts)

    def _forget(self, ts: TaskState) -> None:
        if self.tasks.get(ts.key) is ts:
            del self.tasks[ts.key]
        for dts in ts.dependencies:
            dts.dependents.discard(ts)
        for dts in ts.dependents:
            dts.dependencies.discard(ts)
        for cs in ts.who_wants:
            cs.wants_what.discard(ts)
        # scheduler.py: a group goes once all its tasks are forgotten
        tg = ts.group
        if self.task_groups.get(tg.name) is tg and all(
            count == 0 or state == "forgotten" for state, count in tg.states.items()
        ):
            tg.prefix.remove_group(tg)
            del self.task_groups[tg.name]

    def _event_add_worker(self, rec: dict) -> None:
        ws = self.workers[rec["address"]] = WorkerState(rec)
        if self.plugins:
            awaitables = self._call_hooks("add_worker", scheduler=self, worker=ws.address)
            self._await_hooks("add_worker", awaitables)

    def _event_remove_worker(self, address: str, stimulus_id=None) -> None:
        ws = self.workers.pop(address, None)
        if ws is None:
            return  # like the stock scheduler: a worker removed twice is removed once
        for ts in ws.has_what:
            ts.who_has.discard(ws)
        for ts in ws.processing:
            if ts.processing_on is ws:
                ts.processing_on = None
        if self.plugins:
            awaitables = self._call_hooks(
                "remove_worker", scheduler=self, worker=address, stimulus_id=stimulus_id
            )
            self._await_hooks("remove_worker", awaitables)

    def _event_add_client(self, name: str) -> None:
        # a graph event may have named the client first: keep what it wants
        self._client(name)
        if self.plugins:
            self._call_hooks("add_client", scheduler=self, client=name)

    def _event_remove_client(self, name: str) -> None:
        # scheduler.py remove_client: the client is deleted, then the hooks run
        cs = self.clients.pop(name, None)
        if cs is None:
            return
        for ts in cs.wants_what:
            ts.who_wants.discard(cs)
        if self.plugins:
            self._call_hooks("remove_client", scheduler=self, client=name)

    def _event_log_event(self, topic, msg) -> None:
        # broker.py Broker.publish: one entry and one hook call per topic
        now = time.time()
        topics = [topic] if isinstance(topic, str) else list(topic)
        for name in topics:
            self.events[name].append((now, msg))
            for pname, plugin in list(self.plugins.items()):
                hook = getattr(plugin, "log_event", None)
                if hook is None:
                    continue
                try:
                    hook(name, msg)
                except FAILURES:
                    logger.error("Plugin %r failed in log_event", pname, exc_info=True)

    def _event_restart(self) -> None:
        # scheduler.py restart: the task state is cleared (the stock scheduler asserts
        # that no task is left), then the hooks run
        for collection in (self.tasks, self.task_groups, self.task_prefixes):
            collection.clear()
        for cs in self.clients.values():
            cs.wants_what.clear()
        for ws in self.workers.values():
            ws.processing.clear()
            ws.has_what.clear()
            ws.nbytes = 0
        if self.plugins:
            self._call_hooks("restart", self)

    def _event_drop(self) -> None:
        self._clear()
        self.events.clear()

    _appliers = {
        "reset": _event_reset,
        "graph": _event_graph,
        "transition": _event_transition,
        "add_worker": _event_add_worker,
        "remove_worker": _event_remove_worker,
        "add_client": _event_add_client,
        "remove_client": _event_remove_client,
        "log_event": _event_log_event,
        "restart": _event_restart,
        "drop": _event_drop,
    }


# dask.utils.key_split / distributed.utils.key_split_group, bound in run_serve
_key_split = None
_key_split_group = None


class _ReportView:
    """``self`` for ``Scheduler.performance_report``: the facade, with what that method
    reads synchronously from the stock scheduler (task stream, logs) fetched from rask
    beforehand, and what rask has no Python for stood in."""

    def __init__(self, facade: SchedulerFacade, task_stream: list, logs: list):
        import dask
        from dask.utils import parse_bytes

        self._facade = facade
        self._task_stream = task_stream
        self._logs = logs
        # rask keeps no bandwidth measurements: the tabs show the configured estimate
        self.bandwidth = parse_bytes(dask.config.get("distributed.scheduler.bandwidth"))
        self.bandwidth_workers: dict = {}
        self.bandwidth_types: dict = {}

    def __getattr__(self, name):
        return getattr(self._facade, name)

    def get_task_stream(self, start=None, stop=None, count=None):
        return self._task_stream

    def get_logs(self, start=0, n=None, timestamps=False):
        return self._logs

    async def get_profile(self, scheduler=False, **kwargs):
        if scheduler:
            # the stock scheduler samples its own event loop; rask's scheduler runs none
            from distributed import profile

            return profile.create()
        return await self._facade.get_profile(**kwargs)


# ---------------------------------------------------------------------------
# The host: stdin/stdout, requests, feeds
# ---------------------------------------------------------------------------


def error_reply(e: BaseException) -> dict:
    """``distributed.core.error_message(e)`` as a reply. Must be called from the
    ``except`` block that caught ``e``."""
    try:
        from distributed.core import error_message

        # error_message() takes the traceback from sys.exc_info(), i.e. e.__traceback__;
        # drop this file's frames so it starts in the user's code, as the stock one does
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == _OWN_FILENAME:
            tb = tb.tb_next
        e.__traceback__ = tb
        err = error_message(e)
        return {
            "status": "error",
            "exception": err["exception"].data,
            "traceback": err["traceback"].data if err["traceback"] is not None else None,
            "exception_text": err["exception_text"],
            "traceback_text": err["traceback_text"],
        }
    except Exception:
        return _fallback_error_reply(e)


_OWN_FILENAME = error_reply.__code__.co_filename


def raised(exc_type: type, text: str) -> dict:
    """The error reply of ``exc_type(text)`` raised here."""
    try:
        raise exc_type(text)
    except exc_type as e:
        return error_reply(e)


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


def _reader(rfile, loop, put) -> None:
    """The reader thread: framed messages from stdin, decoded, handed to the loop as
    ``(kind, value)``: ("message", obj), ("undecodable", error text), ("corrupt", length),
    ("eof", None)."""
    import msgpack

    def hand(item) -> bool:
        try:
            loop.call_soon_threadsafe(put, item)
            return True
        except RuntimeError:  # the loop is closed: the host is exiting
            return False

    read = rfile.read
    while True:
        head = read(8)
        if len(head) < 8:
            if head:
                _log("stdin closed inside a length prefix")
            break
        (n,) = struct.unpack("<Q", head)
        if n > MAX_FRAME:
            hand(("corrupt", n))
            return
        body = read(n)
        if len(body) < n:
            _log(f"stdin closed inside a message ({len(body)} of {n} bytes)")
            break
        try:
            msg = msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=False)
            item = ("message", msg)
        except Exception as e:
            item = ("undecodable", f"cannot decode message: {type(e).__name__}: {e}")
        del body
        if not hand(item):
            return
    hand(("eof", None))


class Host:
    """The process's side of the wire: the inbox the reader thread fills, the consumer,
    the requests, the feeds, and the RPCs to rask."""

    def __init__(self, wfile, address: str, scheduler_id: str, local_directory: str):
        import msgpack

        self.msgpack = msgpack
        self.wfile = wfile
        self.address = address
        self.local_directory = local_directory
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.facade = SchedulerFacade(self, address, scheduler_id, local_directory)
        self.preloads = None
        self.feeds: dict = {}  # feed number -> its task
        self._tasks: set = set()  # every task the host started, to end them at close
        self._reported_plugins = 0
        self._count_check_pending = False
        # set once `ready` is written: plugin counts go after it
        self.ready = False
        self._rpc = None
        self._log_events: deque = deque()
        self._log_event_sender = None
        self._out_closed = False

    # -- writing (loop thread only) -------------------------------------------------

    def write_body(self, body: bytes) -> None:
        if self._out_closed:
            return
        try:
            self.wfile.write(struct.pack("<Q", len(body)) + body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError):
            # rask is gone; EOF on stdin follows and ends the host
            self._out_closed = True

    def write(self, msg: dict) -> None:
        self.write_body(self.msgpack.packb(msg, use_bin_type=True))

    def reply(self, rid, reply: dict) -> None:
        reply["id"] = rid
        reply["plugins"] = n = len(self.facade.plugins)
        try:
            body = self.msgpack.packb(reply, use_bin_type=True)
        except Exception as e:
            try:
                raise TypeError(f"rask plugin host could not encode its reply: {e!r}") from e
            except TypeError as e2:
                err = error_reply(e2)
            err["id"] = rid
            err["plugins"] = n
            body = self.msgpack.packb(err, use_bin_type=True)
        self.write_body(body)
        self._reported_plugins = n

    def plugins_may_have_changed(self) -> None:
        """After add_plugin/remove_plugin: rask learns the new count from the reply of
        the request that made the change or, if no request did, from a `plugins`
        message. The check runs once the current step is over, so that a request
        replies first."""
        if not self._count_check_pending:
            self._count_check_pending = True

            asyncio.get_running_loop().call_soon(self._check_plugin_count)

    def _check_plugin_count(self) -> None:
        self._count_check_pending = False
        if not self.ready:
            return  # `ready` goes first; main() checks right after it
        n = len(self.facade.plugins)
        if n != self._reported_plugins:
            self.write({"op": "plugins", "count": n})
            self._reported_plugins = n

    # -- tasks and RPCs ------------------------------------------------------------

    def spawn(self, coro):
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("Plugin host task failed", exc_info=task.exception())

    async def rpc(self, op: str, **kwargs):
        """A request to rask at --address, as any Dask peer makes one."""
        if self._rpc is None:
            from distributed.core import rpc
            from distributed.security import Security

            # deserialize=False: the workers' answers (broadcast, ...) stay Serialized, as
            # the stock scheduler hands them to a plugin
            self._rpc = rpc(
                self.address,
                deserialize=False,
                connection_args=Security().get_connection_args("client"),
            )
        return await getattr(self._rpc, op)(**kwargs)

    def send_log_event(self, topic, msg) -> None:
        # One sender, one event at a time: rask logs them in the order they were made.
        self._log_events.append((topic, msg))
        if self._log_event_sender is None or self._log_event_sender.done():
            self._log_event_sender = self.spawn(self._send_log_events())

    async def _send_log_events(self) -> None:
        while self._log_events:
            topic, msg = self._log_events.popleft()
            try:
                await self.rpc("log_event", topic=topic, msg=msg)
            except Exception:
                logger.error("Could not log an event on %r at rask", topic, exc_info=True)

    # -- the consumer ----------------------------------------------------------------

    async def serve(self) -> int:
        """Takes the messages in order until EOF, `close` or a corrupt stream; returns the
        exit code."""
        while True:
            kind, value = await self.inbox.get()
            if kind == "eof":
                await self.shutdown()
                return 0
            if kind == "corrupt":
                logger.error("Corrupt length prefix %d on stdin; exiting", value)
                self.reply(None, raised(ValueError, f"corrupt message framing: length {value}"))
                await self.shutdown()
                return 1
            if kind == "undecodable":
                self.reply(None, raised(ValueError, value))
                continue
            msg = value
            if not isinstance(msg, dict):
                text = f"a message must be a map, got {type(msg).__name__}"
                self.reply(None, raised(TypeError, text))
                continue
            op = msg.get("op")
            if op == "events":
                self.facade._apply_events(msg.get("events") or ())
            elif op == "close":
                await self.shutdown()
                self.reply(msg.get("id"), {"status": "OK"})
                return 0
            elif op in self.INLINE:
                await self._answer(msg, self.INLINE[op](self, msg))
            elif op in self.IN_TASKS:
                self.spawn(self.IN_TASKS[op](self, msg))
                # The task runs up to its first wait before the next message is taken,
                # so it starts against the mirror as of its request.
                await asyncio.sleep(0)
            elif op == "run_function":
                await self._run_function(msg)
            else:
                self.reply(msg.get("id"), raised(ValueError, f"unknown op {op!r}"))
            # a hook or a function may have changed the plugins dict directly
            self._check_plugin_count()

    async def _answer(self, msg: dict, make_reply) -> None:
        """Awaits the coroutine ``make_reply`` and replies with its result, or with an
        error reply if it raised."""
        rid = msg.get("id")
        try:
            reply = await make_reply
        except asyncio.CancelledError:
            # the host is closing: the request is still answered
            self.reply(rid, raised(RuntimeError, "the rask plugin host closed"))
            raise
        except FAILURES as e:
            logger.info("Request %r failed: %s: %s", msg.get("op"), type(e).__name__, e)
            reply = error_reply(e)
        self.reply(rid, reply)

    # -- requests ----------------------------------------------------------------------

    def _loads(self, data):
        from distributed.protocol import pickle

        uploaded_archives_on_path(self.local_directory)
        return pickle.loads(data)

    async def _register_plugin(self, msg: dict) -> dict:
        # scheduler.py register_scheduler_plugin
        from distributed.diagnostics.plugin import SchedulerPlugin, _get_plugin_name

        facade = self.facade
        plugin = self._loads(msg["plugin"])
        assert isinstance(plugin, SchedulerPlugin)
        name = msg.get("name")
        if name is None:
            name = _get_plugin_name(plugin)
        idempotent = bool(msg.get("idempotent"))
        if name in facade.plugins and idempotent:
            return {"status": "OK", "name": name}
        if hasattr(plugin, "start"):
            result = plugin.start(facade)
            if inspect.isawaitable(result):
                await result
        facade.add_plugin(plugin, name=name, idempotent=idempotent)
        return {"status": "OK", "name": name}

    async def _unregister_plugin(self, msg: dict) -> dict:
        self.facade.remove_plugin(msg.get("name"))
        return {"status": "OK"}

    async def _run_function(self, msg: dict) -> None:
        """distributed.worker.run (worker.py:2997) with the facade as the server: a plain
        function runs inline, a coroutine function as a task on this loop (with
        ``wait=False`` in the background, answered None at once)."""

        from dask.utils import funcname

        from distributed.utils import has_arg

        try:
            function = self._loads(msg["function"])
            args = self._loads(msg["args"]) if msg.get("args") else ()
            kwargs = self._loads(msg["kwargs"]) if msg.get("kwargs") else {}
            is_coro = inspect.iscoroutinefunction(function)
            wait = msg.get("wait", True)
            assert wait or is_coro, "Combination not supported"
        except FAILURES as e:
            self.reply(msg.get("id"), error_reply(e))
            return
        if has_arg(function, "dask_worker"):
            kwargs["dask_worker"] = self.facade
        if has_arg(function, "dask_scheduler"):
            kwargs["dask_scheduler"] = self.facade
        logging.getLogger("distributed.worker").info(
            "Run out-of-band function %r", funcname(function)
        )

        async def run() -> dict:
            if not is_coro:
                result = function(*args, **kwargs)
            elif wait:
                result = await function(*args, **kwargs)
            else:
                self.spawn(function(*args, **kwargs))
                result = None
            return self._function_result(msg, result)

        if is_coro:
            self.spawn(self._answer(msg, run()))
            await asyncio.sleep(0)  # started against the mirror as of its request
        else:
            await self._answer(msg, run())

    def _function_result(self, msg: dict, result) -> dict:
        serializers = msg.get("serializers")
        if serializers is not None:
            # The client's deserializers came with the request: the stock scheduler writes
            # its reply with them (core.py:816), so what they cannot carry reaches the
            # client as an "error" payload, which raises TypeError there.
            from distributed.protocol.serialize import serialize_and_split

            header, frames = serialize_and_split(
                result, serializers=serializers, on_error="message"
            )
            header["num-sub-frames"] = len(frames)
            return {"status": "OK", "header": header, "frames": [bytes(f) for f in frames]}
        from distributed.protocol import pickle

        return {"status": "OK", "result": pickle.dumps(result)}

    async def _feed_start(self, msg: dict) -> None:
        """scheduler.py Scheduler.feed: ``setup`` once, then ``function`` every
        ``interval`` until ``feed_stop``, then ``teardown``."""

        from dask.utils import parse_timedelta

        from distributed.core import Status

        n = msg.get("feed")
        facade = self.facade
        self.feeds[n] = asyncio.current_task()
        teardown = state = None

        async def start() -> dict:
            nonlocal teardown, state
            function = self._loads(msg["function"])
            setup = self._loads(msg["setup"]) if msg.get("setup") else None
            teardown = self._loads(msg["teardown"]) if msg.get("teardown") else None
            state = setup(facade) if setup else None
            if inspect.isawaitable(state):
                state = await state
            return function

        try:
            try:
                interval = msg.get("interval")
                interval = parse_timedelta("1s" if interval is None else interval)
                function = await start()
            except asyncio.CancelledError:
                text = f"feed {n!r} was stopped before its setup finished"
                self.reply(msg.get("id"), raised(RuntimeError, text))
                raise
            except FAILURES as e:
                logger.info("Feed %r failed to start: %s: %s", n, type(e).__name__, e)
                self.reply(msg.get("id"), error_reply(e))
                return
            self.reply(msg.get("id"), {"status": "OK"})
            try:
                while facade.status == Status.running:
                    end = None
                    try:
                        response = function(facade) if state is None else function(facade, state)
                    except FAILURES as e:
                        logger.error("Feed %r failed", n, exc_info=True)
                        end = f"{type(e).__name__}: {e}"
                    else:
                        try:
                            body = self.msgpack.packb(
                                {"op": "feed", "feed": n, "response": response},
                                use_bin_type=True,
                            )
                        except Exception as e:
                            end = (
                                f"the feed's response (a {type(response).__name__}) cannot "
                                f"be sent: msgpack cannot encode it: {e}"
                            )
                            logger.error("Feed %r ends: %s", n, end)
                    if end is not None:
                        self.write({"op": "feed", "feed": n, "end": end})
                        return
                    self.write_body(body)
                    self._check_plugin_count()
                    await asyncio.sleep(interval)
            finally:
                if teardown:
                    try:
                        result = teardown(facade, state)
                        if inspect.isawaitable(result):
                            await result
                    except FAILURES:
                        logger.error("Feed %r teardown failed", n, exc_info=True)
                self._check_plugin_count()
        finally:
            if self.feeds.get(n) is asyncio.current_task():
                del self.feeds[n]

    async def _feed_stop(self, msg: dict) -> dict:
        task = self.feeds.get(msg.get("feed"))
        if task is not None:
            task.cancel()
            # the feed's teardown runs as the task ends
            await asyncio.wait([task])
        return {"status": "OK"}

    async def _performance_report(self, msg: dict) -> None:
        await self._answer(msg, self._make_performance_report(msg))

    async def _make_performance_report(self, msg: dict) -> dict:
        """scheduler.py Scheduler.performance_report, run unbound on a view of the facade
        (needs bokeh in this environment, as the stock scheduler does)."""
        from distributed.scheduler import Scheduler

        start = msg.get("start")
        task_stream, logs = await asyncio.gather(
            self.rpc("get_task_stream", start=start),
            self.rpc("get_logs", start=start, timestamps=True),
        )
        view = _ReportView(self.facade, list(task_stream), list(logs))
        html = await Scheduler.performance_report(
            view,
            start=start,
            last_count=msg.get("last_count"),
            code=msg.get("code") or "",
            mode=msg.get("mode"),
        )
        return {"status": "OK", "html": html}

    # handled in order, before the next message is taken
    INLINE = {
        "register_plugin": _register_plugin,
        "unregister_plugin": _unregister_plugin,
        "feed_stop": _feed_stop,
    }
    # may wait for later events: tasks (`run_function` decides for itself)
    IN_TASKS = {
        "feed_start": _feed_start,
        "performance_report": _performance_report,
    }

    # -- start and end ---------------------------------------------------------------

    async def start(self, preload: list, preload_argv: list) -> str | None:
        """Runs the preloads (``dask_setup(scheduler)`` gets the facade); returns an
        error text if one cannot be loaded."""
        import dask

        from distributed import preloading

        # scheduler.py Scheduler.__init__: without --preload, the configured ones
        if not preload:
            preload = dask.config.get("distributed.scheduler.preload")
        if not preload_argv:
            preload_argv = dask.config.get("distributed.scheduler.preload-argv")
        if preload:
            os.makedirs(self.local_directory, exist_ok=True)
            _forget_missing_path(self.local_directory)
        try:
            self.preloads = preloading.process_preloads(
                self.facade, preload, preload_argv, file_dir=self.local_directory
            )
        except FAILURES as e:
            logger.error("Cannot load the preloads", exc_info=True)
            return f"{type(e).__name__}: {e}"
        # Like Scheduler.start: a dask_setup that raises is logged, the host goes on;
        # then every plugin there is (those the preloads added) starts.
        await self.preloads.start()
        plugins = list(self.facade.plugins.values())

        async def start(plugin):
            # a plugin's own `start` may be a plain function (register_plugin awaits it
            # only if it returns an awaitable, so users write both)
            result = plugin.start(self.facade)
            if inspect.isawaitable(result):
                await result

        started = await asyncio.gather(*map(start, plugins), return_exceptions=True)
        for plugin, outcome in zip(plugins, started):
            if isinstance(outcome, BaseException):
                logger.error("Plugin %r failed to start", plugin, exc_info=outcome)
        return None

    async def shutdown(self) -> None:
        """scheduler.py Scheduler.close: the plugins' before_close, the preloads'
        teardown, the plugins' close; then what still runs here ends."""
        from distributed.core import Status

        facade = self.facade
        facade.status = Status.closing

        async def run(name, hook):
            try:
                result = hook()
                if inspect.isawaitable(result):
                    await result
            except FAILURES:
                logger.error("Plugin %r failed during close", name, exc_info=True)

        def hooks(hook: str) -> list:
            # like the stock close, all plugins' hooks at once
            plugins = list(facade.plugins.items())
            return [run(n, getattr(p, hook)) for n, p in plugins if hasattr(p, hook)]

        await asyncio.gather(*hooks("before_close"))
        if self.preloads is not None:
            await self.preloads.teardown()
        await asyncio.gather(*hooks("close"))
        others = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others)
        if self._rpc is not None:
            await self._rpc.close_rpc()
        facade.status = Status.closed


# ---------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------


class _OneLineFormatter(logging.Formatter):
    """Wraps a handler's formatter: rask logs each stderr line as one record, so a
    record's traceback stays on its line, joined with " | "."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record) -> str:
        return self.inner.format(record).rstrip("\n").replace("\n", " | ")


def configure_logging() -> None:
    """distributed's own handlers (its import sets 'distributed' to INFO on stderr, like
    the stock scheduler's) print one line per record; a root handler makes INFO records
    of plugins' own loggers appear too; warnings are logged."""
    import logging

    import dask
    import distributed  # noqa: F401  (its import configures its loggers)

    fmt = dask.config.get("distributed.admin.log-format")
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for handler in lg.handlers:
            if getattr(handler, "stream", None) is sys.stderr and not isinstance(
                handler.formatter, _OneLineFormatter
            ):
                inner = handler.formatter or logging.Formatter(fmt)
                handler.setFormatter(_OneLineFormatter(inner))
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_OneLineFormatter(logging.Formatter(fmt)))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    logging.captureWarnings(True)


def parse_args(argv: list[str]) -> dict:
    """``--address A --id I [--preload P]... [--preload-argv X]...``, by hand: a preload's
    arguments may themselves start with "--"."""
    opts = {"address": None, "id": None, "preload": [], "preload_argv": []}
    i = 0
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        name = flag[2:].replace("-", "_") if flag.startswith("--") else None
        if name not in opts:
            raise ValueError(f"unexpected argument {argv[i]!r}")
        if not eq:
            i += 1
            if i == len(argv):
                raise ValueError(f"{flag} needs a value")
            value = argv[i]
        if isinstance(opts[name], list):
            opts[name].append(value)
        else:
            opts[name] = value
        i += 1
    for required in ("address", "id"):
        if opts[required] is None:
            raise ValueError(f"--{required} is required")
    return opts


def run_serve(argv: list[str]) -> int:
    global DEFAULT_DATA_SIZE, _key_split, _key_split_group
    import signal

    try:
        opts = parse_args(argv)
    except ValueError as e:
        _log(f"usage: serve --address ADDR --id ID [--preload NAME]... "
             f"[--preload-argv ARG]...: {e}")
        return 2

    # Rust owns our lifetime (EOF on stdin); a Ctrl-C sent to the whole process group
    # must not kill us halfway through a message.
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except Exception:
        pass

    # Keep private copies of the real stdin/stdout for the protocol, then point fds 0/1
    # at /dev/null and stderr, so nothing a plugin does (print, subprocesses) can read
    # messages or corrupt the stream.
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

    def fatal(error: str) -> int:
        _log(f"cannot start: {error}")
        try:
            body = msgpack.packb({"op": "fatal", "error": error}, use_bin_type=True)
            wfile.write(struct.pack("<Q", len(body)) + body)
            wfile.flush()
        except Exception:
            pass
        return 1

    try:
        from dask.utils import key_split

        from distributed.scheduler import DEFAULT_DATA_SIZE as default_data_size
        from distributed.utils import key_split_group

        configure_logging()
        DEFAULT_DATA_SIZE = default_data_size
        _key_split, _key_split_group = key_split, key_split_group
        # distributed.core.Server puts its local_directory on sys.path (core.py:261); it
        # is made only when something needs it
        local_directory = scheduler_local_directory(create=False)
        sys.path.insert(0, local_directory)
    except BaseException as e:
        return fatal(f"{type(e).__name__}: {e}")

    import threading

    async def main() -> int:
        try:
            host = Host(wfile, opts["address"], opts["id"], local_directory)
            error = await host.start(opts["preload"], opts["preload_argv"])
        except BaseException as e:
            error = f"{type(e).__name__}: {e}"
        if error is not None:
            return fatal(error)
        host.write({"op": "ready", "pid": os.getpid()})
        host.ready = True
        # preloads that added plugins: rask learns it as of any change outside a request
        host._check_plugin_count()
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=_reader,
            args=(rfile, loop, host.inbox.put_nowait),
            name="rask-plugin-host-stdin",
            daemon=True,
        ).start()
        return await host.serve()

    return asyncio.run(main())


def main(argv: list[str]) -> int:
    # `python -c` puts the working directory first on sys.path; `dask scheduler` does
    # not, and a stray dask.py / msgpack.py in it must not shadow the real packages.
    if sys.path and sys.path[0] in ("", "."):
        del sys.path[0]
    if len(argv) > 1 and argv[1] == "serve":
        return run_serve(argv[2:])
    sys.stderr.write(
        "usage: python -c <rask_plugin_host source> serve --address ADDR --id ID "
        "[--preload NAME]... [--preload-argv ARG]...\n"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
