"""Python that runs on the scheduler's side, as users (and Dask itself) put it there: progress
bars (``distributed.progress``, the scheduler's ``feed`` op running Dask's ``Progress``
plugin), custom ``SchedulerPlugin``s (hooks for transitions and workers joining and leaving,
a plugin that raises, unregistering), ``Client.run_on_scheduler`` with ``dask_scheduler``
reading tasks and workers, ``Client.upload_file`` (Dask's ``SchedulerUploadFile``),
``performance_report``, Dask's ``EventStream`` (``eventstream``) and ``TaskStreamPlugin``, and
scheduler ``--preload`` scripts (one adding a plugin and logging an event, one starting an HTTP
server and a heartbeat, like dask-gateway's).

rask runs all of these in its plugin host, a Python process beside the scheduler holding a
facade of it (docs/plugin-host.md); the last test, rask-only, kills that host and checks it
comes back with its plugins.

Plugin names, keys and modules carry a fresh uuid where the module's shared cluster is used,
and tests unregister what they register there, so tests never see each other's plugins.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
import uuid

import dask
import pytest
from distributed import performance_report, progress, wait
from distributed.diagnostics.eventstream import eventstream

from conftest import E2E_DIR, RESULT_TIMEOUT, wait_until
from e2e_remote import fail, inc, slow_inc
from e2e_scheduler_plugins import (
    RaisingTransition,
    TransitionCounter,
    add_task_stream_plugin,
    import_and_call,
    plugin_attribute,
    plugin_names,
    plugin_types,
    remove_plugin,
    scheduler_pid,
    slow_square,
    task_stream_rows,
    task_view,
    worker_view,
)

PROGRESS_TIMEOUT = 30  # a progress bar over a finished or finishing computation returns by then
FULL_BAR = "[" + "#" * 40 + "] | 100% Completed |"  # TextProgressBar's default width


def unique(label: str) -> str:
    return f"e2e-{label}-{uuid.uuid4().hex[:8]}"


def run_progress(*args, **kwargs):
    """``progress(..., notebook=False)`` in a thread, joined with a timeout: a bar whose feed
    never finishes fails the test instead of hanging it. Re-raises what progress raised."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = progress(*args, notebook=False, **kwargs)
        except BaseException as e:  # noqa: BLE001 -- handed to the test's thread
            outcome["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(PROGRESS_TIMEOUT)
    assert not t.is_alive(), f"progress() did not return within {PROGRESS_TIMEOUT}s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# progress bars (the feed op + Dask's Progress plugin)


def test_progress_bar_over_futures_reaches_100_percent(client, capsys):
    # started while the tasks run (each takes 0.2 s on two one-thread workers), so the bar
    # follows the computation rather than only seeing its end
    futures = client.map(slow_inc, range(10), delay=0.2, pure=False)
    assert run_progress(futures) is None
    out = capsys.readouterr().out
    assert FULL_BAR in out, out
    # every future is done when the bar has finished
    assert all(f.done() for f in futures)
    assert client.gather(futures) == list(range(1, 11))


def test_progress_bar_over_a_persisted_dataframe(client, capsys):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    pdf = pd.DataFrame({"x": range(400), "y": [i % 7 for i in range(400)]})
    df = dd.from_pandas(pdf, npartitions=8)
    df = df.assign(z=df.x * 2 + df.y).persist()
    run_progress(df)
    out = capsys.readouterr().out
    assert FULL_BAR in out, out
    result = df.compute()
    assert result.z.sum() == (pdf.x * 2 + pdf.y).sum()
    assert len(result) == 400


def test_progress_bar_returns_when_a_task_errs(client, capsys):
    # the feed reports status "error" and the bar stops instead of waiting forever
    good = client.map(inc, range(3), pure=False)
    bad = client.submit(fail, 1, pure=False)
    run_progress(good + [bad])
    capsys.readouterr()
    with pytest.raises(ValueError):
        bad.result(timeout=RESULT_TIMEOUT)
    assert client.gather(good) == [1, 2, 3]


# --------------------------------------------------------------------------------------------
# custom scheduler plugins


def test_transition_counting_plugin_sees_tasks_and_workers(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(2)
    name = unique("counter")
    with cluster.client() as c:
        c.register_plugin(TransitionCounter(name))
        assert c.run_on_scheduler(plugin_attribute, name, "started") is True
        # registered after both workers joined: it has seen none join yet
        assert c.run_on_scheduler(plugin_attribute, name, "added") == []

        # a 15-task graph: 10 squares, 4 partial sums, 1 total
        squares = [dask.delayed(slow_square)(i, pure=False) for i in range(10)]
        parts = [dask.delayed(sum)(squares[i::4]) for i in range(4)]
        total = dask.delayed(sum)(parts)
        assert c.compute(total).result(timeout=RESULT_TIMEOUT) == sum(i * i for i in range(10))
        # every task went processing -> memory exactly once, and the hook saw it before
        # the client learnt the result
        assert c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins[name].count) == 15

        # a worker that joins later is seen by add_worker
        [late] = cluster.add_workers(1)
        addresses = cluster.worker_addresses()
        wait_until(
            lambda: c.run_on_scheduler(plugin_attribute, name, "added") == [addresses[late]],
            "add_worker of the late worker",
        )

        # a worker that dies is seen by remove_worker
        cluster.workers["w0"].kill()
        wait_until(
            lambda: c.run_on_scheduler(plugin_attribute, name, "removed") == [addresses["w0"]],
            "remove_worker of the killed worker",
        )
        assert c.run_on_scheduler(plugin_attribute, name, "added") == [addresses[late]]

        # unregistering removes it; unregistering again is an error
        c.unregister_scheduler_plugin(name)
        assert name not in c.run_on_scheduler(plugin_names)
        with pytest.raises(ValueError, match=f"Could not find plugin '{name}'"):
            c.unregister_scheduler_plugin(name)
        assert c.submit(inc, 1, pure=False).result(timeout=RESULT_TIMEOUT) == 2


def test_a_plugin_whose_transition_raises_does_not_break_computations(client):
    name = unique("raising")
    client.register_plugin(RaisingTransition(name))
    try:
        futures = client.map(inc, range(5), pure=False)
        assert client.gather(futures) == list(range(1, 6))
        calls = client.run_on_scheduler(plugin_attribute, name, "calls")
        # the hook is called (and raises) on every transition, not disabled after the first
        assert calls >= 10  # at least released -> waiting and processing -> memory per task
        later = client.submit(sum, futures, pure=False)
        assert later.result(timeout=RESULT_TIMEOUT) == 15
        assert client.run_on_scheduler(plugin_attribute, name, "calls") > calls
    finally:
        client.unregister_scheduler_plugin(name)
    assert client.submit(inc, 41, pure=False).result(timeout=RESULT_TIMEOUT) == 42


# --------------------------------------------------------------------------------------------
# run_on_scheduler with dask_scheduler


def test_run_on_scheduler_reads_tasks_and_workers(client):
    x = client.submit(inc, 1, pure=False)
    y = client.submit(inc, x, pure=False)
    wait([x, y], timeout=RESULT_TIMEOUT)

    assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.tasks[x.key].state) == "memory"
    seen = client.run_on_scheduler(task_view, y.key)
    assert seen["state"] == "memory"
    assert seen["processing_on"] is None
    assert seen["dependencies"] == [str(x.key)]
    # who_has on the scheduler is what Client.who_has reports
    assert seen["who_has"] == sorted(client.who_has([y])[y.key])
    assert seen["who_has"] and set(seen["who_has"]) <= set(client.scheduler_info()["workers"])

    # the workers the scheduler object holds are those scheduler_info reports
    info = client.scheduler_info(n_workers=-1)["workers"]
    assert client.run_on_scheduler(lambda dask_scheduler: set(dask_scheduler.workers)) == set(info)
    assert client.run_on_scheduler(worker_view) == {
        addr: (ws["name"], ws["nthreads"]) for addr, ws in info.items()
    }

    # a released future's task is forgotten there
    key = y.key
    del y
    wait_until(
        lambda: client.run_on_scheduler(lambda dask_scheduler: key not in dask_scheduler.tasks),
        "the released task to be forgotten",
    )


# --------------------------------------------------------------------------------------------
# upload_file (Dask's SchedulerUploadFile plugin + UploadFile worker plugin)


def test_upload_file_then_a_delayed_graph_using_it(client, tmp_path):
    module = unique("uploaded").replace("-", "_")
    source = tmp_path / f"{module}.py"
    source.write_text("def answer(x):\n    return x + 41\n")
    responses = client.upload_file(str(source))
    assert set(responses) == set(client.scheduler_info()["workers"])
    assert all(r == {"status": "OK"} for r in responses.values())

    # the scheduler holds the SchedulerUploadFile plugin, under the name upload_file gave it
    registered = {
        n: t for n, t in client.run_on_scheduler(plugin_types).items() if n.startswith(str(source))
    }
    assert list(registered.values()) == ["SchedulerUploadFile"]
    # and scheduler-side Python can import the module
    assert client.run_on_scheduler(import_and_call, module, 1) == 42

    # the client imports it too (as a user does after uploading), builds a graph on it
    sys.path.insert(0, str(tmp_path))
    try:
        uploaded = importlib.import_module(module)
        parts = [dask.delayed(uploaded.answer)(i) for i in range(5)]
        total = dask.delayed(sum)(parts)
        assert total.compute() == sum(i + 41 for i in range(5))
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(module, None)
        [plugin_name] = registered
        client.unregister_scheduler_plugin(plugin_name)
        client.unregister_worker_plugin(plugin_name)


# --------------------------------------------------------------------------------------------
# performance_report


def test_performance_report_writes_an_html_report(client, tmp_path):
    path = tmp_path / "report.html"
    with performance_report(filename=str(path)):
        perf_report_marker = client.map(slow_inc, range(6), delay=0.05, pure=False)
        assert client.gather(perf_report_marker) == list(range(1, 7))
    html = path.read_text()
    assert "Dask Performance Report" in html
    assert "number of tasks: 6" in html
    assert f"Workers: {len(client.scheduler_info()['workers'])}" in html
    # the tabs, the task stream among them, and the calling code
    for tab in ("Summary", "Task Stream", "Worker Profile (compute)", "Scheduler Logs"):
        assert tab in html, tab
    assert "perf_report_marker" in html


# --------------------------------------------------------------------------------------------
# Dask's own plugins used from the client: EventStream through the feed, TaskStreamPlugin


def test_eventstream_feed_delivers_finished_tasks(client):
    futures = []
    comm = client.sync(eventstream, client.scheduler.address, 0.05)
    try:
        futures = client.map(inc, range(8), pure=False)
        wait(futures, timeout=RESULT_TIMEOUT)
        keys = {f.key for f in futures}
        records: dict = {}
        deadline = time.monotonic() + 30
        while not keys <= set(records):
            assert time.monotonic() < deadline, f"eventstream delivered {sorted(records)}"
            for record in client.sync(comm.read, callback_timeout=30):
                records[record["key"]] = record
        workers = set(client.scheduler_info()["workers"])
        for key in keys:
            assert records[key]["worker"] in workers
            assert records[key]["status"] == "OK"
            assert any(s["action"] == "compute" for s in records[key]["startstops"])
        assert "EventStream" in client.run_on_scheduler(plugin_names)
    finally:
        client.sync(comm.close)
    # the feed's teardown removes the plugin once the comm is closed
    wait_until(lambda: "EventStream" not in client.run_on_scheduler(plugin_names), "EventStream removed")


def test_task_stream_plugin_added_on_the_scheduler(client):
    name = unique("task-stream")
    client.run_on_scheduler(add_task_stream_plugin, name)
    try:
        futures = client.map(inc, range(5), pure=False)
        wait(futures, timeout=RESULT_TIMEOUT)
        rows = client.run_on_scheduler(task_stream_rows, name)
        assert sorted(r["key"] for r in rows) == sorted(f.key for f in futures)
        workers = set(client.scheduler_info()["workers"])
        for row in rows:
            assert row["worker"] in workers
            assert row["status"] == "OK"
            assert "compute" in row["actions"]
    finally:
        client.run_on_scheduler(remove_plugin, name)
    assert name not in client.run_on_scheduler(plugin_names)


# --------------------------------------------------------------------------------------------
# scheduler --preload scripts


def test_preload_adds_a_plugin_and_logs_an_event(cluster_factory):
    preload = E2E_DIR / "e2e_preload_plugin.py"
    cluster = cluster_factory(scheduler_args=["--preload", str(preload)])
    cluster.add_workers(2)
    with cluster.client() as c:
        [(ts, msg)] = c.get_events("preload")
        # dask_setup ran with the scheduler: its address is the one clients connect to
        assert msg == {"module": "e2e_preload_plugin", "address": c.scheduler.address}
        assert abs(ts - time.time()) < 120

        plugin = "e2e-preloaded"
        assert plugin in c.run_on_scheduler(plugin_names)
        # a plugin added by the preload was started with the scheduler and saw the workers join
        assert c.run_on_scheduler(plugin_attribute, plugin, "started") is True
        assert sorted(c.run_on_scheduler(plugin_attribute, plugin, "workers")) == sorted(
            cluster.worker_addresses().values()
        )
        futures = c.map(inc, range(4), pure=False)
        assert c.gather(futures) == [1, 2, 3, 4]
        assert c.run_on_scheduler(plugin_attribute, plugin, "in_memory") == 4


def test_gateway_like_preload_serves_http_and_ticks(cluster_factory):
    preload = E2E_DIR / "e2e_preload_gateway.py"
    port = free_port()
    token = uuid.uuid4().hex
    cluster = cluster_factory(
        scheduler_args=["--preload", str(preload), "--", "--http-port", str(port), "--token", token]
    )

    def status() -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
            assert r.status == 200
            return json.loads(r.read())

    first = status()
    assert first["token"] == token  # the preload argv reached dask_setup
    assert first["workers"] == 0

    cluster.add_workers(2)
    addresses = sorted(cluster.worker_addresses().values())
    # the server reads scheduler.workers at request time
    seen = wait_until(lambda: (s := status())["workers"] == 2 and s, "the HTTP server to count 2 workers")
    assert seen["addresses"] == addresses

    # the periodic heartbeat keeps ticking on the scheduler's loop
    wait_until(lambda: status()["ticks"] >= first["ticks"] + 5, "heartbeat ticks")

    with cluster.client() as c:
        assert c.submit(inc, 1, pure=False).result(timeout=RESULT_TIMEOUT) == 2
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=5)


# --------------------------------------------------------------------------------------------
# rask only: the plugin host dies


def test_plugin_host_restarts_with_its_plugins(cluster_factory, scheduler_kind):
    """rask-only resilience test: the stock scheduler runs plugins in its own process, so it
    has no plugin host that could die on its own. On rask, a host killed mid-run is started
    again with the plugins it held, and the scheduler goes on meanwhile."""
    if scheduler_kind == "dask":
        pytest.skip("rask-only: the stock scheduler has no separate plugin host")
    cluster = cluster_factory()
    cluster.add_workers(1)
    name = unique("survivor")
    with cluster.client() as c:
        c.register_plugin(TransitionCounter(name))
        assert c.gather(c.map(inc, range(3), pure=False)) == [1, 2, 3]
        assert c.run_on_scheduler(plugin_attribute, name, "count") == 3

        host = c.run_on_scheduler(scheduler_pid)
        # only ever kill a process of this scheduler's own process group (not rask itself)
        assert host != cluster.scheduler.pid
        assert os.getpgid(host) == cluster.scheduler.pid
        os.kill(host, signal.SIGKILL)

        # the scheduler goes on computing while the host is dead or restarting
        assert c.gather(c.map(inc, range(10, 15), pure=False)) == list(range(11, 16))

        # within a bounded wait the host is back, with the plugin registered again; errors
        # meanwhile (a request reaching the host as it restarts) are noted and retried
        errors: list[str] = []
        new_host = None
        deadline = time.monotonic() + 30
        while not new_host:
            try:
                new_host = c.run_on_scheduler(
                    lambda dask_scheduler: name in dask_scheduler.plugins and os.getpid()
                )
            except Exception as e:
                errors.append(repr(e))
            if not new_host:
                assert time.monotonic() < deadline, (
                    f"the plugin host did not come back with {name} within 30s; last errors: {errors[-3:]}"
                )
                time.sleep(0.2)
        assert new_host != host

        # the plugin registered again works: it counts the tasks computed from now on
        before = c.run_on_scheduler(plugin_attribute, name, "count")
        assert c.gather(c.map(inc, range(20, 25), pure=False)) == list(range(21, 26))
        assert c.run_on_scheduler(plugin_attribute, name, "count") == before + 5
        c.unregister_scheduler_plugin(name)
    cluster.pm.check_alive("after the plugin host was killed")
