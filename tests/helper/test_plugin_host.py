"""Tests for python/rask_plugin_host.py (docs/plugin-host.md).

The host is driven as rask drives it: ``PYTHON -u -c <source> serve --address ADDR --id ID``
in an unrelated working directory, u64-LE-length + msgpack maps on stdin/stdout. Events are
the arrays rask streams; requests carry the pickles a stock client sends. ``--address`` is
a small ``distributed.core.Server`` standing in for rask, which records what the facade
asks of it (``log_event``, ``register_worker_plugin``, the performance report's data).

The plugins and the functions run on the facade live in a module written to a temporary
directory on the host's PYTHONPATH (and imported here), so they are pickled by reference;
lambdas and closures are pickled by value, like a user's interactive code.

Run: /work/main/.venv/bin/python -m pytest -q tests/helper/test_plugin_host.py
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import pytest

from distributed.core import clean_exception
from distributed.diagnostics.progress import Progress
from distributed.protocol.pickle import dumps, loads

pytestmark = pytest.mark.timeout(60)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SOURCE = (ROOT / "python" / "rask_plugin_host.py").read_text()
PYTHON = os.environ.get("RASK_TEST_PYTHON", sys.executable)
WAIT = 10  # seconds: the bound of every wait for the host

PLUGINS = '''
import asyncio

from distributed.diagnostics.plugin import SchedulerPlugin


class Recorder(SchedulerPlugin):
    """Records every hook call; `marker` (a path) gets the close hooks."""

    name = "recorder"

    def __init__(self, marker=None):
        self.marker = marker
        self.calls = []

    def _mark(self, what):
        if self.marker:
            with open(self.marker, "a") as f:
                f.write(what + "\\n")

    def start(self, scheduler):
        self.scheduler = scheduler
        self.calls.append(("start", sorted(map(str, scheduler.tasks))))

    def update_graph(self, scheduler, *, client, keys, tasks, annotations, priority,
                     stimulus_id, **kwargs):
        self.calls.append(("update_graph", client, sorted(keys), sorted(tasks),
                           annotations, priority, stimulus_id))

    def transition(self, key, start, finish, *args, stimulus_id=None, **kwargs):
        self.calls.append(("transition", key, start, finish, stimulus_id,
                           key in self.scheduler.tasks, kwargs.get("worker")))

    def add_worker(self, scheduler, worker):
        self.calls.append(("add_worker", worker, worker in scheduler.workers))

    async def remove_worker(self, scheduler, worker, *, stimulus_id, **kwargs):
        self.calls.append(("remove_worker", worker, worker in scheduler.workers, stimulus_id))

    def add_client(self, scheduler, client):
        self.calls.append(("add_client", client, client in scheduler.clients))

    def remove_client(self, scheduler, client):
        self.calls.append(("remove_client", client, client in scheduler.clients))

    def log_event(self, topic, msg):
        self.calls.append(("log_event", topic, msg))

    def restart(self, scheduler):
        self.calls.append(("restart", len(scheduler.tasks)))

    async def before_close(self):
        self._mark("before_close")

    async def close(self):
        self._mark("close")


class Raiser(SchedulerPlugin):
    name = "raiser"

    def transition(self, key, start, finish, *args, **kwargs):
        if key == "boom":
            raise RuntimeError("raised by a test plugin on purpose")


def calls(dask_scheduler, name="recorder"):
    return dask_scheduler.plugins[name].calls


async def wait_for_state(key, state, dask_scheduler=None):
    """Returns once the mirror has `key` in `state`: the events that get it there are
    sent after this function started."""
    while key not in dask_scheduler.tasks or dask_scheduler.tasks[key].state != state:
        await asyncio.sleep(0.01)
    return state


async def settle(dask_scheduler):
    await asyncio.sleep(0.05)


def log_something(dask_scheduler):
    dask_scheduler.log_event("my-topic", {"action": "hello"})


async def register_worker_plugin(dask_scheduler):
    return await dask_scheduler.register_worker_plugin(None, b"pickled", "wp")
'''

PRELOAD = '''
from rask_test_plugins import Recorder


def dask_setup(scheduler):
    scheduler.add_plugin(Recorder(), name="from-preload")


def dask_teardown(scheduler):
    import os
    with open(os.environ["RASK_TEST_MARKER"], "a") as f:
        f.write("dask_teardown\\n")
'''


@pytest.fixture(scope="module")
def modules(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plugin-modules")
    (path / "rask_test_plugins.py").write_text(PLUGINS)
    (path / "rask_test_preload.py").write_text(PRELOAD)
    (path / "rask_broken_preload.py").write_text("raise ImportError('broken on purpose')\n")
    sys.path.insert(0, str(path))
    yield path
    sys.path.remove(str(path))


@pytest.fixture(scope="module")
def plugins(modules):
    import rask_test_plugins

    return rask_test_plugins


# ---------------------------------------------------------------------------
# A stand-in for rask at --address
# ---------------------------------------------------------------------------


class FakeRask:
    """A ``distributed.core.Server`` on its own thread that records the RPCs it gets."""

    def __init__(self):
        self.calls: queue.Queue = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.address = self._run(self._start())

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    async def _start(self) -> str:
        from distributed.core import Server

        def record(op, answer=None):
            def handler(**kwargs):
                self.calls.put((op, kwargs))
                return answer

            return handler

        task_stream = [
            {
                "key": "x",
                "worker": "tcp://127.0.0.1:40001",
                "status": "OK",
                "startstops": [{"action": "compute", "start": 1.0, "stop": 2.0}],
            }
        ]
        self.server = Server(
            {
                "log_event": record("log_event"),
                "register_worker_plugin": record("register_worker_plugin", {"w": "OK"}),
                "get_task_stream": record("get_task_stream", task_stream),
                "get_logs": record("get_logs", []),
                "profile": record("profile", _empty_profile()),
            }
        )
        await self.server.listen("tcp://127.0.0.1:0")
        return self.server.address

    def next_call(self, op: str):
        deadline = time.monotonic() + WAIT
        while True:
            got, kwargs = self.calls.get(timeout=max(0.0, deadline - time.monotonic()))
            if got == op:
                return kwargs

    def close(self):
        self._run(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)


def _empty_profile():
    from distributed import profile

    return profile.create()


@pytest.fixture(scope="module")
def rask():
    r = FakeRask()
    yield r
    r.close()


# ---------------------------------------------------------------------------
# Driving the host like rask
# ---------------------------------------------------------------------------


class PluginHost:
    def __init__(self, cwd: Path, modules: Path, address: str, args=(), env=None):
        cwd.mkdir(parents=True, exist_ok=True)
        self.address = address
        self.stderr_path = cwd / f"host-{id(self)}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        env = dict(os.environ if env is None else env)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(modules), env.get("PYTHONPATH")) if p
        )
        self.proc = subprocess.Popen(
            [PYTHON, "-u", "-c", SOURCE, "serve", "--address", address, "--id", "rask-test",
             *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=cwd,
            env=env,
            start_new_session=True,  # a process group of its own, killed at teardown
        )
        self._inbox: queue.Queue = queue.Queue()
        self._stash: list = []
        threading.Thread(target=self._read, daemon=True).start()
        self._next_id = 0
        self.first = self.next()

    def _read(self):
        out = self.proc.stdout
        while True:
            head = out.read(8)
            if len(head) < 8:
                self._inbox.put(None)
                return
            (n,) = struct.unpack("<Q", head)
            body = out.read(n)
            self._inbox.put(msgpack.unpackb(body, raw=False, strict_map_key=False, use_list=False))

    def next(self, pred=lambda m: True, timeout: float = WAIT) -> dict:
        """The first message (stashed or new) that satisfies `pred`."""
        for i, m in enumerate(self._stash):
            if pred(m):
                return self._stash.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                m = self._inbox.get(timeout=max(left, 0.0))
            except queue.Empty:
                raise AssertionError(
                    f"no such message from the host within {timeout}s; stderr:\n{self.stderr()}"
                ) from None
            assert m is not None, f"the host closed stdout; stderr:\n{self.stderr()}"
            if pred(m):
                return m
            self._stash.append(m)

    def send(self, msg: dict) -> None:
        body = msgpack.packb(msg, use_bin_type=True)
        self.proc.stdin.write(struct.pack("<Q", len(body)) + body)
        self.proc.stdin.flush()

    def events(self, *events) -> None:
        self.send({"op": "events", "events": list(events)})

    def request(self, op: str, **fields) -> int:
        self._next_id += 1
        self.send({"op": op, "id": self._next_id, **fields})
        return self._next_id

    def reply(self, rid: int, timeout: float = WAIT) -> dict:
        return self.next(lambda m: m.get("id") == rid, timeout)

    def call(self, op: str, **fields) -> dict:
        return self.reply(self.request(op, **fields))

    def run(self, function, *args, wait=True, **kwargs):
        """``Client.run_on_scheduler``: the result, or the exception the client raises."""
        r = self.call(
            "run_function",
            function=dumps(function),
            args=dumps(args),
            kwargs=dumps(kwargs),
            wait=wait,
        )
        if r["status"] != "OK":
            _, exc, _ = clean_exception(**r)
            return exc
        return loads(r["result"])

    def register(self, plugin, name=None, idempotent=False) -> dict:
        return self.call("register_plugin", plugin=dumps(plugin), name=name, idempotent=idempotent)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def wait_exit(self) -> int:
        rc = self.proc.wait(timeout=WAIT)
        self._stderr.close()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=WAIT)
        if not self._stderr.closed:
            self._stderr.close()


def task(key, state="released", deps=(), **fields) -> dict:
    """A task record as rask sends it."""
    rec = {
        "key": key,
        "state": state,
        "dependencies": list(deps),
        "who_has": [],
        "processing_on": None,
        "nbytes": -1,
        "type": None,
        "priority": [0, 1, 0],
        "annotations": {},
        "who_wants": [],
        "group": None,
        "prefix": None,
        "retries": 0,
    }
    rec.update(fields)
    return rec


W1 = "tcp://127.0.0.1:40001"
W2 = "tcp://127.0.0.1:40002"


def worker(address, name=None) -> dict:
    return {
        "address": address,
        "name": name or address,
        "nthreads": 2,
        "memory_limit": 1 << 30,
        "host": "127.0.0.1",
        "nanny": None,
        "resources": {},
        "status": "running",
    }


def computes(key, worker=W1, nbytes=8, sid="sid"):
    """The transitions of a task from released to memory on `worker`."""
    return [
        ["transition", key, "released", "waiting", sid, {}],
        ["transition", key, "waiting", "processing", sid, {"worker": worker}],
        [
            "transition",
            key,
            "processing",
            "memory",
            sid,
            {"worker": worker, "nbytes": nbytes, "type": b"pickled-type", "typename": "int",
             "startstops": [{"action": "compute", "start": 1.0, "stop": 2.0}]},
        ],
    ]


@pytest.fixture
def host(tmp_path, modules, rask):
    h = PluginHost(tmp_path / "cwd", modules, rask.address)
    assert h.first["op"] == "ready", h.first
    yield h
    h.kill()


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_ready(host):
    assert host.first == {"op": "ready", "pid": host.proc.pid}


def test_hooks_see_graph_and_transitions(host, plugins):
    host.events(
        ["reset", {"tasks": [task("a", "memory", who_has=[W1], nbytes=8)],
                   "workers": [worker(W1)], "clients": ["c1"]}]
    )
    r = host.register(plugins.Recorder())
    assert r["status"] == "OK" and r["name"] == "recorder" and r["plugins"] == 1
    host.events(
        ["graph", {"client": "c1", "keys": [("y", 0)],
                   "tasks": [task(("x", 0)), task(("y", 0), deps=[("x", 0)], priority=[0, 2, 1])],
                   "annotations": {"retries": {("y", 0): 2}}, "stimulus_id": "update-graph-1"}],
        *computes(("x", 0), sid="s1"),
    )
    calls = host.run(plugins.calls)
    assert calls[0] == ("start", ["a"])
    assert calls[1] == (
        "update_graph", "c1", [("y", 0)], [("x", 0), ("y", 0)],
        {"retries": {("y", 0): 2}}, {("x", 0): (0, 1, 0), ("y", 0): (0, 2, 1)}, "update-graph-1",
    )
    assert [c[1:6] for c in calls[2:]] == [
        (("x", 0), "released", "waiting", "s1", True),
        (("x", 0), "waiting", "processing", "s1", True),
        (("x", 0), "processing", "memory", "s1", True),
    ]

    def mirror(dask_scheduler):
        s = dask_scheduler
        x, y = s.tasks[("x", 0)], s.tasks[("y", 0)]
        ws = s.workers[W1]
        return {
            "x": (x.state, [w.address for w in x.who_has], x.nbytes, x.type, x.processing_on),
            "y": (y.state, [d.key for d in y.dependencies], y.priority,
                  [c.client_key for c in y.who_wants], y.group.name, y.prefix.name),
            "x_dependents": [d.key for d in x.dependents],
            "worker": (ws.nbytes, sorted(map(str, (t.key for t in ws.has_what))), ws.processing),
            "groups": {name: {k: v for k, v in tg.states.items() if v}
                       for name, tg in s.task_groups.items()},
            "prefix_x": dict(s.task_prefixes["x"].states),
            "repr": (repr(x), repr(ws)),
            "wants": [t.key for t in s.clients["c1"].wants_what],
        }

    m = host.run(mirror)
    assert m["x"] == ("memory", [W1], 8, "int", None)
    assert m["y"] == ("released", [("x", 0)], (0, 2, 1), ["c1"], "y", "y")
    assert m["x_dependents"] == [("y", 0)]
    assert m["worker"] == (16, ["('x', 0)", "a"], set())
    assert m["groups"] == {"a": {"memory": 1}, "x": {"memory": 1}, "y": {"released": 1}}
    assert m["prefix_x"]["memory"] == 1 and m["prefix_x"]["released"] == 0
    assert m["repr"] == (
        "<TaskState ('x', 0) memory>",
        f"<WorkerState '{W1}', status: running, memory: 2, processing: 0>",
    )
    assert m["wants"] == [("y", 0)]


def test_forgotten_task_is_in_tasks_during_the_hook_only(host, plugins):
    host.events(["reset", {"tasks": [task("f", "memory", who_has=[W1], nbytes=4)],
                           "workers": [worker(W1)], "clients": []}])
    host.register(plugins.Recorder())
    host.events(
        ["transition", "f", "memory", "released", "s2", {}],
        ["transition", "f", "released", "forgotten", "s2", {}],
    )
    calls = host.run(plugins.calls)
    assert [c[1:6] for c in calls[1:]] == [
        ("f", "memory", "released", "s2", True),
        ("f", "released", "forgotten", "s2", True),
    ]
    state = host.run(
        lambda dask_scheduler: (
            "f" in dask_scheduler.tasks,
            "f" in dask_scheduler.task_groups,
            dict(dask_scheduler.task_prefixes["f"].states),
            dask_scheduler.workers[W1].nbytes,
            len(dask_scheduler.workers[W1].has_what),
        )
    )
    assert state[:2] == (False, False)
    assert all(v == 0 for v in state[2].values())  # the group's counts left the prefix
    assert state[3:] == (0, 0)


def test_a_raising_plugin_is_logged_and_events_go_on(host, plugins):
    host.events(["reset", {"tasks": [task("boom"), task("fine")], "workers": [worker(W1)],
                           "clients": []}])
    host.register(plugins.Raiser())
    host.register(plugins.Recorder())
    host.events(
        ["transition", "boom", "released", "waiting", "s3", {}],
        ["transition", "fine", "released", "waiting", "s3", {}],
    )
    calls = host.run(plugins.calls)
    assert [c[1] for c in calls[1:]] == ["boom", "fine"]
    assert host.run(lambda dask_scheduler: dask_scheduler.tasks["fine"].state) == "waiting"
    failed = "Plugin 'raiser' failed in transition"
    lines = [ln for ln in host.stderr().splitlines() if failed in ln]
    assert len(lines) == 1, host.stderr()
    # one line per record: the traceback is on it
    assert "Traceback" in lines[0] and "raised by a test plugin on purpose" in lines[0]


def test_run_function_reads_the_mirror(host):
    host.events(
        ["reset", {"tasks": [task("k", "processing", processing_on=W2)],
                   "workers": [worker(W1), worker(W2, name="second")], "clients": ["c"]}]
    )

    def look(dask_scheduler):
        s = dask_scheduler
        return (
            s.tasks["k"].state,
            list(s.workers),
            s.workers[W2].name,
            s.tasks["k"].processing_on.address,
            [t.key for t in s.workers[W2].processing],
            s.total_nthreads,
            s.n_tasks,
            s.address,
            s.id,
            s.status.name,
            sorted(s.identity()["workers"]),
        )

    assert host.run(look) == (
        "processing", [W1, W2], "second", W2, ["k"], 4, 1, host.address, "rask-test",
        "running", [W1, W2],
    )
    # a plain function without the scheduler, and one that fails
    assert host.run(lambda x, y: x + y, 2, 3) == 5
    exc = host.run(lambda: 1 / 0)
    assert isinstance(exc, ZeroDivisionError)


def test_erred_task(host):
    host.events(
        ["reset", {"tasks": [task("e", "processing", processing_on=W1)],
                   "workers": [worker(W1)], "clients": []}],
        ["transition", "e", "processing", "erred", "s",
         {"worker": W1, "exception": b"pickled-exc", "traceback": b"pickled-tb",
          "exception_text": "ZeroDivisionError()", "traceback_text": "  File ..."}],
    )

    def look(dask_scheduler):
        ts = dask_scheduler.tasks["e"]
        blame = ts.exception_blame.key if ts.exception_blame else None
        return (ts.state, ts.exception, ts.traceback, ts.exception_text, blame,
                ts.processing_on, len(dask_scheduler.workers[W1].processing))

    assert host.run(look) == (
        "erred", b"pickled-exc", b"pickled-tb", "ZeroDivisionError()", "e", None, 0
    )
    host.events(["transition", "e", "erred", "released", "s", {}])
    # scheduler.py _transition_erred_released
    assert host.run(look) == ("released", None, None, "ZeroDivisionError()", None, None, 0)


def test_coroutine_function_waits_for_later_events(host, plugins):
    host.events(["reset", {"tasks": [task("later")], "workers": [], "clients": []}])
    rid = host.request(
        "run_function", function=dumps(plugins.wait_for_state),
        args=dumps(("later", "waiting")), kwargs=dumps({}), wait=True,
    )
    # the consumer goes on while the coroutine waits
    host.events(["transition", "later", "released", "waiting", "s", {}])
    r = host.reply(rid)
    assert r["status"] == "OK" and loads(r["result"]) == "waiting"


def test_missing_attributes_name_the_facade(host):
    host.events(["reset", {"tasks": [task("t")], "workers": [worker(W1)], "clients": ["c"]}])
    exc = host.run(lambda dask_scheduler: dask_scheduler.handlers)
    assert isinstance(exc, AttributeError)
    assert "'Scheduler' object (rask's scheduler facade) has no attribute 'handlers'" in str(exc)
    assert "docs/plugin-host.md" in str(exc)
    for expr, owner in [
        (lambda dask_scheduler: dask_scheduler.tasks["t"].run_spec, "'TaskState'"),
        (lambda dask_scheduler: dask_scheduler.workers[W1].occupancy, "'WorkerState'"),
        (lambda dask_scheduler: dask_scheduler.clients["c"].last_seen, "'ClientState'"),
    ]:
        exc = host.run(expr)
        assert isinstance(exc, AttributeError) and str(exc).startswith(owner), exc
    assert host.run(lambda dask_scheduler: hasattr(dask_scheduler, "stream_comms")) is False


def test_unregister(host, plugins):
    r = host.call("unregister_plugin", name="nope")
    assert r["status"] == "error" and r["plugins"] == 0
    _, exc, _ = clean_exception(**r)
    assert isinstance(exc, ValueError)
    assert str(exc) == "Could not find plugin 'nope' among the current scheduler plugins"
    host.register(plugins.Recorder())
    r = host.call("unregister_plugin", name="recorder")
    assert r == {"status": "OK", "id": r["id"], "plugins": 0}


def test_register_idempotent_and_overwrite(host, plugins):
    host.events(["reset", {"tasks": [], "workers": [], "clients": []}])
    assert host.register(plugins.Recorder())["plugins"] == 1
    # idempotent and present: kept, start not called
    host.register(plugins.Recorder(), idempotent=True)
    assert host.run(lambda dask_scheduler: len(dask_scheduler.plugins["recorder"].calls)) == 1
    r = host.register(plugins.Raiser(), name="other")
    assert r["name"] == "other" and r["plugins"] == 2
    # overwriting warns (logged), as the stock add_plugin does
    host.register(plugins.Recorder())
    assert "already contains a plugin with name recorder" in host.stderr()
    # not a SchedulerPlugin: refused like the stock register_scheduler_plugin
    assert host.call("register_plugin", plugin=dumps(object()), name=None,
                     idempotent=False)["status"] == "error"


def test_worker_client_log_event_restart_hooks(host, plugins, rask):
    host.events(["reset", {"tasks": [task("r", "memory", who_has=[W1], nbytes=1)],
                           "workers": [worker(W1)], "clients": []}])
    host.register(plugins.Recorder())
    host.events(
        ["add_worker", worker(W2)],
        ["add_client", "c9"],
        ["log_event", "my-topic", {"action": "x"}],
        ["remove_worker", W1, "remove-sid"],
        ["remove_client", "c9"],
        ["transition", "r", "memory", "released", "s", {}],
        ["transition", "r", "released", "forgotten", "s", {}],
        ["restart"],
    )
    host.run(plugins.settle)
    calls = host.run(plugins.calls)
    assert calls[1:] == [
        ("add_worker", W2, True),
        ("add_client", "c9", True),
        ("log_event", "my-topic", {"action": "x"}),
        ("remove_client", "c9", False),
        ("transition", "r", "memory", "released", "s", True, None),
        ("transition", "r", "released", "forgotten", "s", True, None),
        ("restart", 0),
        # an async add_worker/remove_worker hook runs beside the events, not before them
        ("remove_worker", W1, False, "remove-sid"),
    ]
    events = host.run(lambda dask_scheduler: dask_scheduler.get_events("my-topic"))
    assert [msg for _, msg in events] == [{"action": "x"}]
    assert host.run(lambda dask_scheduler: list(dask_scheduler.workers)) == [W2]

    # what the facade asks of rask is an RPC at --address; log_event is not kept locally
    host.run(plugins.log_something)
    assert rask.next_call("log_event") == {"topic": "my-topic", "msg": {"action": "hello"}}
    assert len(host.run(lambda dask_scheduler: dask_scheduler.get_events("my-topic"))) == 1
    assert host.run(plugins.register_worker_plugin) == {"w": "OK"}
    assert rask.next_call("register_worker_plugin") == {
        "plugin": b"pickled", "name": "wp", "idempotent": False
    }

    host.events(["drop"])
    assert host.run(
        lambda dask_scheduler: (len(dask_scheduler.tasks), len(dask_scheduler.workers),
                                dask_scheduler.get_events())
    ) == (0, 0, {})


def progress_feed(keys, complete=True):
    """The setup and function ``ProgressBar.listen`` (diagnostics/progressbar.py) sends in
    its ``feed`` request, pickled as the client pickles them."""

    async def setup(scheduler):
        p = Progress(keys, scheduler, complete=complete)
        await p.setup()
        return p

    def function(scheduler, p):
        result = {
            "all": len(p.all_keys),
            "remaining": len(p.keys),
            "status": p.status,
        }
        if p.status == "error":
            result.update(p.extra)
        return result

    return dumps(setup), dumps(function)


def test_progress_bar_feed(host):
    setup, function = progress_feed({"y"})
    rid = host.request("feed_start", feed=7, setup=setup, function=function, interval=0.05)
    # Progress.setup waits until its keys are known: the graph comes after the request
    host.events(
        ["reset", {"tasks": [], "workers": [worker(W1)], "clients": ["c"]}],
        ["graph", {"client": "c", "keys": ["y"], "tasks": [task("x"), task("y", deps=["x"])],
                   "annotations": {}, "stimulus_id": "g"}],
    )
    r = host.reply(rid)
    assert r["status"] == "OK" and r["plugins"] == 1  # Progress added itself

    def feed(pred):
        return host.next(lambda m: m.get("op") == "feed" and m["feed"] == 7
                         and pred(m["response"]))["response"]

    assert feed(lambda r: True) == {"all": 2, "remaining": 2, "status": None}
    host.events(*computes("x"))
    assert feed(lambda r: r["remaining"] == 1) == {"all": 2, "remaining": 1, "status": None}
    host.events(*computes("y"))
    assert feed(lambda r: r["status"] == "finished")["remaining"] == 0
    # Progress removed itself in its transition hook: rask hears of it
    assert host.next(lambda m: m.get("op") == "plugins") == {"op": "plugins", "count": 0}
    r = host.call("feed_stop", feed=7)
    assert r["status"] == "OK" and r["plugins"] == 0


def test_feed_that_raises_ends(host):
    def function(scheduler):
        raise KeyError("no such thing")

    r = host.call("feed_start", feed=8, function=dumps(function), interval=0.05)
    assert r["status"] == "OK"
    end = host.next(lambda m: m.get("op") == "feed" and m["feed"] == 8)
    assert end == {"op": "feed", "feed": 8, "end": "KeyError: 'no such thing'"}
    # a response msgpack cannot carry ends the feed too
    rid = host.request("feed_start", feed=9, function=dumps(lambda scheduler: {1, 2}),
                       interval=0.05)
    assert host.reply(rid)["status"] == "OK"
    end = host.next(lambda m: m.get("op") == "feed" and m["feed"] == 9)
    assert "cannot be sent: msgpack cannot encode it" in end["end"]
    assert host.call("feed_stop", feed=9)["status"] == "OK"


def test_performance_report(host, rask):
    pytest.importorskip("bokeh")
    host.events(["reset", {"tasks": [], "workers": [worker(W1)], "clients": []}])
    # what performance_report.__aenter__ asks first
    last_count = host.run(lambda dask_scheduler: dask_scheduler.monitor.count)
    r = host.call("performance_report", start=time.time() - 10, last_count=last_count,
                  code="x = 1", mode=None)
    assert r["status"] == "OK", clean_exception(**r)
    assert "Dask Performance Report" in r["html"] and "x = 1" in r["html"]
    assert "number of tasks: 1" in r["html"]  # the task stream rask gave


def test_eof_runs_close_hooks_and_exits_0(tmp_path, modules, rask, plugins):
    h = PluginHost(tmp_path / "cwd", modules, rask.address)
    try:
        marker = tmp_path / "marker"
        assert h.register(plugins.Recorder(marker=str(marker)))["status"] == "OK"
        h.proc.stdin.close()
        assert h.wait_exit() == 0
        assert marker.read_text().split() == ["before_close", "close"]
    finally:
        h.kill()


def test_close_request(tmp_path, modules, rask, plugins):
    h = PluginHost(tmp_path / "cwd", modules, rask.address)
    try:
        marker = tmp_path / "marker"
        h.register(plugins.Recorder(marker=str(marker)))
        # a pending coroutine still gets an answer before the close reply
        pending = h.request(
            "run_function", function=dumps(plugins.wait_for_state),
            args=dumps(("never", "memory")), kwargs=dumps({}), wait=True,
        )
        assert h.call("close")["status"] == "OK"
        assert h.reply(pending)["status"] == "error"
        assert h.wait_exit() == 0
        assert marker.read_text().split() == ["before_close", "close"]
    finally:
        h.kill()


def test_preloads(tmp_path, modules, rask):
    marker = tmp_path / "marker"
    env = dict(os.environ, RASK_TEST_MARKER=str(marker))
    h = PluginHost(tmp_path / "cwd", modules, rask.address,
                   args=["--preload", "rask_test_preload"], env=env)
    try:
        assert h.first == {"op": "ready", "pid": h.proc.pid}
        # dask_setup added a plugin outside any request
        assert h.next() == {"op": "plugins", "count": 1}
        h.proc.stdin.close()
        assert h.wait_exit() == 0
        assert marker.read_text().split() == ["dask_teardown"]
    finally:
        h.kill()

    broken = PluginHost(tmp_path / "cwd2", modules, rask.address,
                        args=["--preload", "rask_broken_preload"])
    try:
        assert broken.first["op"] == "fatal"
        assert "broken on purpose" in broken.first["error"]
        assert broken.wait_exit() == 1
    finally:
        broken.kill()
