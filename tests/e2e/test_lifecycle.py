"""How the scheduler process itself behaves: shutdown on a signal, the files it writes,
and (for rask only) its command line and its graph helpers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

import e2e_remote as remote
from conftest import PYTHON, RASK_BIN, RESULT_TIMEOUT, child_env


def wait_exit(proc, timeout):
    try:
        return proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{proc.name} still running {timeout}s after the signal:\n{proc.report()}", pytrace=False)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_signal_closes_workers_and_exits_zero(cluster_factory, sig):
    c = cluster_factory()
    c.add_workers(1)
    with c.client() as client:
        assert client.submit(remote.inc, 1).result(timeout=RESULT_TIMEOUT) == 2
    c.close_control()
    c.scheduler.expected_exit = True
    worker = c.workers["w0"]
    worker.expected_exit = True
    c.scheduler.popen.send_signal(sig)
    assert wait_exit(c.scheduler, 30) == 0
    # the scheduler told the worker to close (a worker left alone would keep retrying)
    wait_exit(worker, 60)


def test_scheduler_file_is_the_identity(cluster_factory, tmp_path):
    c = cluster_factory()
    ident = json.loads(next(tmp_path.glob(f"{c.tag}-scheduler.json")).read_text())
    assert ident["type"] == "Scheduler"
    assert ident["address"] == c.address
    assert ident["id"].startswith("Scheduler-")
    assert isinstance(ident["services"]["dashboard"], int)
    assert ident["workers"] == {}


# ---- rask only ---------------------------------------------------------------------------

needs_rask = pytest.mark.skipif(not RASK_BIN.exists(), reason=f"no rask binary at {RASK_BIN}")


def run_cli(*args, timeout=60):
    return subprocess.run(
        [str(RASK_BIN), *args], capture_output=True, text=True, timeout=timeout, env=child_env()
    )


@needs_rask
def test_cli_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("rask ")


@needs_rask
def test_cli_refuses_unsupported_options():
    r = run_cli("scheduler", "--port", "0", "--jupyter")
    assert r.returncode != 0
    assert "--jupyter" in r.stderr and "not supported" in r.stderr


@needs_rask
def test_cli_names_a_preload_that_cannot_be_loaded(tmp_path):
    missing = tmp_path / "no_such_preload.py"
    r = run_cli(
        "scheduler", "--port", "0", "--no-dashboard", "--python", PYTHON, "--preload", str(missing)
    )
    assert r.returncode != 0
    assert "no_such_preload" in r.stderr and "plugin host" in r.stderr


@needs_rask
def test_cli_names_a_missing_tls_file():
    r = run_cli("scheduler", "--port", "0", "--tls-cert", "c.pem")
    assert r.returncode != 0
    assert "--tls-cert" in r.stderr and "c.pem" in r.stderr


@needs_rask
def test_cli_refuses_python_without_distributed(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    bare = tmp_path / "bare" / "bin" / "python"
    env = child_env()
    env.pop("PYTHONPATH", None)
    r = subprocess.run(
        [str(RASK_BIN), "scheduler", "--port", "0", "--python", str(bare)],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert r.returncode != 0
    assert str(bare) in r.stderr
    assert "distributed" in r.stderr and "2026.8.0" in r.stderr


@needs_rask
def test_cli_port_taken(cluster_factory, scheduler_kind):
    if scheduler_kind != "rask":
        pytest.skip("rask's own message")
    c = cluster_factory()
    port = c.address.rsplit(":", 1)[1]
    r = run_cli("scheduler", "--host", "127.0.0.1", "--port", port, "--python", PYTHON)
    assert r.returncode != 0
    assert port in r.stderr and "cannot listen" in r.stderr


def test_graph_helper_crash_errs_that_graph_only(cluster_factory, scheduler_kind):
    """A graph whose unpickling kills the process: the stock scheduler would die with it, so
    this is rask's own guarantee: that graph's keys err with a clear message, the helper is
    replaced, and everything else keeps working."""
    if scheduler_kind != "rask":
        pytest.skip("the stock scheduler unpickles graphs in its own process")
    c = cluster_factory()
    c.add_workers(1)
    with c.client() as client:
        before = client.submit(remote.slow_inc, 1, 0.5)
        # more crashes than there are helpers, so a replaced helper is used too
        for i in range(3):
            bad = client.submit(remote.inc, remote.ExitOnUnpickle(), key=f"bad-{i}")
            with pytest.raises(RuntimeError, match="graph helper"):
                bad.result(timeout=RESULT_TIMEOUT)
        assert before.result(timeout=RESULT_TIMEOUT) == 2
        assert client.submit(remote.inc, 41).result(timeout=RESULT_TIMEOUT) == 42
    assert c.scheduler.alive()


def test_slow_graph_does_not_stall_other_clients(cluster_factory, scheduler_kind):
    """While one client's graph is being materialized, another client's work goes through.
    (The stock scheduler unpickles graphs on its event loop, so this is rask's guarantee.)"""
    if scheduler_kind != "rask":
        pytest.skip("the stock scheduler deserializes graphs on its event loop")
    c = cluster_factory()
    c.add_workers(1)
    with c.client() as slow_client, c.client() as other:
        slow = slow_client.submit(remote.inc, remote.SlowToUnpickle(8, 1), key="slow-graph")
        time.sleep(0.5)  # let the slow graph reach a helper first
        for i in range(5):
            assert other.submit(remote.inc, i, key=f"quick-{i}").result(timeout=RESULT_TIMEOUT) == i + 1
        # ordering, not timing: the quick work finished while the slow graph was still
        # being materialized
        assert slow.status == "pending"
        assert slow.result(timeout=RESULT_TIMEOUT) == 2


def test_versions_check(cluster, client):
    """`get_versions(check=True)` compares client, scheduler and workers: the scheduler's
    report must be a real Python environment report."""
    v = client.get_versions(check=True)
    assert v["scheduler"]["packages"]["distributed"] == v["client"]["packages"]["distributed"]
    assert set(v["workers"]) == set(client.scheduler_info()["workers"])


def test_idle_timeout_and_pid_file(scheduler_kind, procs, tmp_path):
    """`--idle-timeout`: with no clients and no work the scheduler exits by itself (code 0);
    `--pid-file` holds its pid while it runs."""
    from conftest import scheduler_argv

    sched_file, pid_file = tmp_path / "s.json", tmp_path / "s.pid"
    argv = scheduler_argv(scheduler_kind, sched_file) + ["--idle-timeout", "3s", "--pid-file", str(pid_file)]
    p = procs.start(f"idle-scheduler-{scheduler_kind}", argv)
    p.expected_exit = True
    deadline = time.monotonic() + 30
    while not (sched_file.exists() and pid_file.exists() and pid_file.read_text().strip()):
        assert p.alive(), p.report()
        assert time.monotonic() < deadline, p.report()
        time.sleep(0.05)
    assert int(pid_file.read_text()) == p.pid
    assert wait_exit(p, 60) == 0
