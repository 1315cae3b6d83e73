"""Worker and nanny plugins (``Client.register_plugin`` with a ``WorkerPlugin`` or a
``NannyPlugin``, ``unregister_worker_plugin``), and what is built on them:
``Client.forward_logging``, the stock ``Environ`` nanny plugin, and the stock scheduler
plugins that only register worker or nanny plugins when they start (``Client.upload_file``,
``InstallPlugin`` as ``PipInstall`` uses it, ``UploadDirectory``), which rask runs in its
plugin host.

A plugin reaches the workers (nannies) there are when it is registered and those that join
later; unregistering runs its ``teardown``. Plugin names carry a fresh uuid where the module's
shared cluster is used, so tests never see each other's plugins.
"""

import importlib
import logging
import os
import sys
import uuid

import pytest
from distributed.diagnostics.plugin import Environ, InstallPlugin, UploadDirectory

from conftest import RESULT_TIMEOUT, wait_until
from e2e_remote_plugins import (
    FailingSetup,
    InstallMarker,
    call_uploaded,
    nanny_has,
    MarkNanny,
    MarkWorker,
    env_in_task,
    forwarding_handlers,
    log_a_warning,
    plugin_value,
    plugin_value_in_task,
)


def unique(label: str) -> str:
    return f"e2e-{label}-{uuid.uuid4().hex[:8]}"


def test_worker_plugin_runs_on_every_worker_and_on_later_ones(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(2)
    with cluster.client() as c:
        responses = c.register_plugin(MarkWorker("v1"), name="e2e-mark")
        first = set(cluster.worker_addresses().values())
        assert responses == {a: {"status": "OK"} for a in first}
        assert c.run(plugin_value) == {a: "v1" for a in first}

        # a worker that joins later gets it in its registration (setup runs before it
        # takes tasks): a task there sees what setup did
        [late] = cluster.add_workers(1)
        late_address = cluster.worker_addresses()[late]
        seen = c.submit(plugin_value_in_task, workers=[late_address], pure=False)
        assert seen.result(timeout=RESULT_TIMEOUT) == (late_address, "v1", "v1")

        # unregistering tears it down everywhere
        everyone = first | {late_address}
        assert c.unregister_worker_plugin("e2e-mark") == {a: {"status": "OK"} for a in everyone}
        assert c.run(plugin_value) == {a: "torn down: v1" for a in everyone}
        with pytest.raises(ValueError, match="The worker plugin e2e-mark does not exist"):
            c.unregister_worker_plugin("e2e-mark")

        # and a worker joining now does not get it
        [after] = cluster.add_workers(1)
        after_address = cluster.worker_addresses()[after]
        seen = c.submit(plugin_value_in_task, workers=[after_address], pure=False)
        assert seen.result(timeout=RESULT_TIMEOUT) == (after_address, None, None)


def test_a_failing_setup_raises_on_the_client(client):
    name = unique("failing")
    with pytest.raises(ZeroDivisionError, match="e2e plugin setup failed"):
        client.register_plugin(FailingSetup(), name=name)
    # it stays registered, as on the stock scheduler, until unregistered
    assert all(r["status"] == "OK" for r in client.unregister_worker_plugin(name).values())
    assert client.submit(sum, [1, 2], pure=False).result(timeout=RESULT_TIMEOUT) == 3


def test_an_idempotent_plugin_is_registered_once(client):
    name = unique("idempotent")
    first = MarkWorker(name)
    first.idempotent = True
    assert len(client.register_plugin(first, name=name)) == 2
    second = MarkWorker("replaced")
    second.idempotent = True
    assert client.register_plugin(second, name=name) == {}
    assert set(client.run(plugin_value).values()) == {name}
    client.unregister_worker_plugin(name)
    assert set(client.run(plugin_value).values()) == {f"torn down: {name}"}


def test_forward_logging_delivers_a_worker_log_record(client):
    logger_name = unique("forwarded").replace("-", "_")
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Collect()
    logging.getLogger(logger_name).addHandler(handler)
    try:
        client.forward_logging(logger_name)
        address = client.submit(log_a_warning, logger_name, "hello", pure=False).result(
            timeout=RESULT_TIMEOUT
        )
        wait_until(lambda: records, "the forwarded log record")
        [record] = records
        assert record.name == logger_name
        assert record.levelname == "WARNING"
        assert record.getMessage() == "hello from a task"
        # Scheduler.log_worker_event adds the worker to a dict event
        assert record.worker == address

        # the plugin's handler is on every worker until unforward_logging tears it down
        assert set(client.run(forwarding_handlers, logger_name).values()) == {1}
        client.unforward_logging(logger_name)
        assert set(client.run(forwarding_handlers, logger_name).values()) == {0}
    finally:
        logging.getLogger(logger_name).removeHandler(handler)


def test_nanny_plugins_with_stock_nannies(cluster_factory, tmp_path):
    cluster = cluster_factory()
    [w0] = cluster.add_workers(1, nanny=True)
    marks = tmp_path / "nanny-plugin.log"
    with cluster.client() as c:
        a0 = cluster.worker_addresses()[w0]
        assert c.register_plugin(MarkNanny(str(marks)), name="e2e-nanny") == {a0: {"status": "OK"}}
        [setup] = marks.read_text().splitlines()
        assert setup.startswith("setup ")

        # Environ sets the variable in the nanny and restarts its worker with it
        c.register_plugin(Environ({"E2E_NANNY_ENV": "from-the-nanny"}))
        wait_until(lambda: len(cluster.worker_addresses()) == 1, "the restarted worker alone")
        address, value = c.submit(env_in_task, "E2E_NANNY_ENV", pure=False).result(
            timeout=RESULT_TIMEOUT
        )
        assert value == "from-the-nanny"

        # a nanny that starts later gets both in its registration
        [w1] = cluster.add_workers(1, nanny=True)
        a1 = cluster.worker_addresses()[w1]
        assert c.submit(env_in_task, "E2E_NANNY_ENV", workers=[a1], pure=False).result(
            timeout=RESULT_TIMEOUT
        ) == (a1, "from-the-nanny")
        lines = marks.read_text().splitlines()
        assert [line.split()[0] for line in lines] == ["setup", "setup"]
        assert len({line.split()[1] for line in lines}) == 2

        # unregistering tears it down in both nannies
        removed = c.unregister_worker_plugin("e2e-nanny", nanny=True)
        assert set(removed) == set(cluster.worker_addresses().values())
        assert all(r["status"] == "OK" for r in removed.values())
        assert sorted(line.split()[0] for line in marks.read_text().splitlines()) == [
            "setup", "setup", "teardown", "teardown",
        ]
        with pytest.raises(ValueError, match="The nanny plugin e2e-nanny does not exist"):
            c.unregister_worker_plugin("e2e-nanny", nanny=True)


def test_the_rust_nanny_takes_worker_plugins_and_refuses_nanny_plugins(cluster_factory, tmp_path):
    from test_rask_worker import rask_worker, wait_for_names

    cluster = cluster_factory()
    rask_worker(cluster, "a", "--nworkers", "2", "--nthreads", "1", "--name", "rw")
    infos = wait_for_names(cluster, {"rw-0", "rw-1"})
    addresses = {info["address"] for info in infos.values()}
    with cluster.client() as c:
        # a WorkerPlugin runs in the stock Worker processes rask worker supervises
        assert c.register_plugin(MarkWorker("rw"), name="e2e-rw") == {a: {"status": "OK"} for a in addresses}
        assert c.run(plugin_value) == {a: "rw" for a in addresses}
        c.unregister_worker_plugin("e2e-rw")

        # a NannyPlugin needs the Python Nanny object, which rask worker's nanny is not
        with pytest.raises(RuntimeError, match="rask worker's nanny runs no Python"):
            c.register_plugin(MarkNanny(str(tmp_path / "never-written")))
        assert not (tmp_path / "never-written").exists()
        assert c.submit(sum, [1, 2], pure=False).result(timeout=RESULT_TIMEOUT) == 3


def test_upload_file(cluster_factory, tmp_path):
    cluster = cluster_factory()
    cluster.add_workers(1)
    module = unique("uploaded").replace("-", "_")
    source = tmp_path / f"{module}.py"
    source.write_text("def answer(x):\n    return x + 41\n")
    with cluster.client() as c:
        responses = c.upload_file(str(source))
        assert responses == {a: {"status": "OK"} for a in cluster.worker_addresses().values()}
        assert c.submit(call_uploaded, module, 1, pure=False).result(timeout=RESULT_TIMEOUT) == 42

        # the scheduler has it too: a graph naming the module's function by reference
        # unpickles there
        sys.path.insert(0, str(tmp_path))
        try:
            uploaded = importlib.import_module(module)
            assert c.submit(uploaded.answer, 2, pure=False).result(timeout=RESULT_TIMEOUT) == 43
        finally:
            sys.path.remove(str(tmp_path))
            sys.modules.pop(module, None)

        # a worker that joins later gets the file too
        [late] = cluster.add_workers(1)
        late_address = cluster.worker_addresses()[late]
        seen = c.submit(call_uploaded, module, 3, workers=[late_address], pure=False)
        assert seen.result(timeout=RESULT_TIMEOUT) == 44


def test_install_plugin_runs_on_the_scheduler_and_every_worker(client, tmp_path):
    marks = tmp_path / "installed.log"
    plugin = InstallPlugin(InstallMarker(str(marks)), restart_workers=False)
    try:
        assert client.register_plugin(plugin) is None
        pids = {line.split()[1] for line in marks.read_text().splitlines()}
        # the scheduler's process (rask: its plugin host) and the two workers'
        assert len(pids) == 3
        worker_pids = set(map(str, client.run(os.getpid).values()))
        assert worker_pids < pids
    finally:
        client.unregister_worker_plugin(plugin.name)
    with pytest.raises(ValueError, match="Could not find plugin 'never-started'"):
        client.unregister_scheduler_plugin("never-started")
    client.unregister_scheduler_plugin(plugin.name)


def test_upload_directory_reaches_the_nannies(cluster_factory, tmp_path):
    cluster = cluster_factory()
    cluster.add_workers(1, nanny=True)
    tree = tmp_path / "e2e_tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "data.txt").write_text("uploaded")
    with cluster.client() as c:
        c.register_plugin(UploadDirectory(str(tree)))
        found = c.run(nanny_has, os.path.join("e2e_tree", "sub", "data.txt"), nanny=True)
        assert list(found.values()) == ["uploaded"]

        # a nanny starting later gets it at registration
        cluster.add_workers(1, nanny=True)
        found = c.run(nanny_has, os.path.join("e2e_tree", "sub", "data.txt"), nanny=True)
        assert list(found.values()) == ["uploaded", "uploaded"]
