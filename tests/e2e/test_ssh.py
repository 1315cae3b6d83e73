"""``rask ssh`` against a real ``sshd`` on 127.0.0.1 (hosts named ``127.0.0.1`` and
``localhost``): a scheduler and ``rask worker``s started over SSH run a stock client's work, a
Ctrl-C stops everything, and every way the start goes wrong ends with a message naming the
host and nothing left running.

These test rask's own command, so they run once, with ``rask`` in their id (``-k rask``
selects them, ``-k dask`` does not).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import dask
import dask.array as da
import pytest
from distributed import Client

from conftest import CLIENT_TIMEOUT, PYTHON, RASK_BIN, RESULT_TIMEOUT, wait_until
from sshd import free_port, processes_naming, start_sshd

pytestmark = pytest.mark.skipif(not RASK_BIN.exists(), reason=f"no rask binary at {RASK_BIN}")

STARTUP_TIMEOUT = 90.0  # two SSH logins, a scheduler, two rask workers with Python workers
EXIT_TIMEOUT = 90.0  # graceful: workers (40 s at most), then the scheduler (15 s at most)


@pytest.fixture(params=["rask"])
def sshd(request, procs, tmp_path):
    return start_sshd(procs, tmp_path)


def write_hostfile(path: Path, hosts: list[str]) -> Path:
    path.write_text("".join(f"{h}\n" for h in hosts))
    return path


def ssh_argv(tmp_path: Path, sshd, hosts: list[str], *extra: str, ssh_port: int | None = None, python: str = PYTHON,
    scheduler_port: int = 0,
) -> list[str]:
    hostfile = write_hostfile(tmp_path / "nodefile", hosts)
    cluster_dir = tmp_path / "cluster"
    cluster_dir.mkdir(exist_ok=True)
    return [
        str(RASK_BIN), "ssh",
        "--hostfile", str(hostfile),
        "--scheduler-port", str(scheduler_port),
        "--dashboard-address", ":0",
        "--scheduler-file", str(cluster_dir / "scheduler.json"),
        "--local-directory", str(cluster_dir / "space"),
        "--remote-python", python,
        *sshd.client_options(port=ssh_port),
        *extra,
    ]


def wait_nothing_left(tmp_path: Path) -> None:
    marker = str(tmp_path / "cluster")
    left: list[str] = []

    def gone():
        left[:] = processes_naming(marker)
        return not left

    wait_until(gone, f"the remote processes to exit (still running: {left})", timeout=EXIT_TIMEOUT)


def wait_exit(proc, timeout: float = EXIT_TIMEOUT) -> int:
    try:
        rc = proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{proc.name} still running after {timeout}s:\n{proc.report()}", pytrace=False)
    proc.expected_exit = True
    return rc


def read_address(path: Path) -> str | None:
    try:
        return json.loads(path.read_text())["address"]
    except (OSError, ValueError, KeyError, TypeError):
        return None



def cluster_client(procs, scheduler_file: Path, nworkers: int) -> Client:
    """A client of the cluster ``rask ssh`` is starting, once ``nworkers`` have registered."""

    def address():
        procs.check_alive("while the cluster was starting")
        return read_address(scheduler_file)

    wait_until(address, "the scheduler file", timeout=STARTUP_TIMEOUT)
    client = Client(scheduler_file=str(scheduler_file), timeout=CLIENT_TIMEOUT)

    def registered():
        procs.check_alive("while the workers were starting")
        return len(client.scheduler_info(n_workers=-1)["workers"]) >= nworkers

    wait_until(registered, f"{nworkers} workers to register", timeout=STARTUP_TIMEOUT, interval=0.5)
    return client


def test_cluster_over_ssh_computes_and_stops_on_ctrl_c(sshd, procs, tmp_path):
    hosts = ["127.0.0.1"] * 3 + ["localhost"] * 2  # a PBS node file: one line per core
    argv = ssh_argv(tmp_path, sshd, hosts, "--nworkers", "1", "--nthreads", "2", "--memory-limit", "2GB")
    proc = procs.start("ssh-cluster", argv)
    scheduler_file = tmp_path / "cluster" / "scheduler.json"
    with cluster_client(procs, scheduler_file, nworkers=2) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        assert len(workers) == 2, workers
        assert all(w["nthreads"] == 2 for w in workers.values())

        x = da.arange(200_000, chunks=10_000)
        y = (x * x + 1).sum() - x[::3].mean()
        z = dask.delayed(sum)([dask.delayed(pow)(i, 2) for i in range(50)])
        expected = dask.compute(y, z, scheduler="sync")
        assert dask.compute(y, z) == expected
        assert client.compute(y).result(timeout=RESULT_TIMEOUT) == expected[0]

    log = proc.log_path.read_text(errors="replace")
    for prefix in ("[scheduler 127.0.0.1]", "[worker 127.0.0.1]", "[worker localhost]"):
        assert prefix in log, f"no {prefix!r} line in the output:\n{proc.log_tail()}"
    assert "Scheduler at:" in log

    # Ctrl-C in a terminal: SIGINT to the whole process group, ssh clients included
    os.killpg(proc.pid, signal.SIGINT)
    rc = wait_exit(proc)
    assert rc == 0, proc.report()
    wait_nothing_left(tmp_path)
    log = proc.log_path.read_text(errors="replace")
    assert "stopped" in log, proc.log_tail()


@pytest.mark.parametrize("bad", ["name", "port"])
def test_unreachable_host_is_named_and_nothing_starts(sshd, procs, tmp_path, bad):
    if bad == "name":
        hosts, port, host, why = ["127.0.0.1", "nosuchhost.invalid"], None, "nosuchhost.invalid", "resolve"
    else:
        # a port where nothing listens
        hosts, port, host, why = ["127.0.0.1"], free_port(), "127.0.0.1", "refused"
    proc = procs.start("ssh-unreachable", ssh_argv(tmp_path, sshd, hosts, ssh_port=port))
    rc = wait_exit(proc)
    log = proc.log_path.read_text(errors="replace")
    assert rc != 0, log
    assert f"cannot reach host {host} over SSH" in log, log
    assert why in log.lower(), log
    assert "[scheduler" not in log, log  # the check comes before anything starts
    wait_nothing_left(tmp_path)


def _python_without_distributed() -> list[str]:
    candidates = ["/nonexistent/bin/python3"]
    system = Path("/usr/bin/python3")
    if system.exists():
        r = subprocess.run([str(system), "-c", "import distributed"], capture_output=True, timeout=60)
        if r.returncode != 0:
            candidates.append(str(system))
    return candidates


@pytest.mark.parametrize("python", _python_without_distributed())
def test_remote_python_without_distributed_is_refused(sshd, procs, tmp_path, python):
    argv = ssh_argv(tmp_path, sshd, ["127.0.0.1", "localhost"], python=python)
    proc = procs.start("ssh-bad-python", argv)
    rc = wait_exit(proc)
    log = proc.log_path.read_text(errors="replace")
    assert rc != 0, log
    assert f"{python} cannot import distributed" in log, log
    assert "host 127.0.0.1" in log and "host localhost" in log, log
    wait_nothing_left(tmp_path)


def test_missing_remote_binary_is_named(sshd, procs, tmp_path):
    missing = str(tmp_path / "not-installed" / "rask")
    argv = ssh_argv(tmp_path, sshd, ["127.0.0.1"], "--remote-rask", missing)
    proc = procs.start("ssh-no-binary", argv)
    rc = wait_exit(proc)
    log = proc.log_path.read_text(errors="replace")
    assert rc != 0, log
    assert f"host 127.0.0.1 cannot run the rask binary {missing}" in log, log
    wait_nothing_left(tmp_path)


def test_scheduler_port_taken_is_reported(sshd, procs, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ssh_argv(tmp_path, sshd, ["127.0.0.1"], scheduler_port=port)
        proc = procs.start("ssh-port-taken", argv)
        rc = wait_exit(proc)
    log = proc.log_path.read_text(errors="replace")
    assert rc != 0, log
    assert "the scheduler on host 127.0.0.1" in log, log
    assert "Address already in use" in log, log
    wait_nothing_left(tmp_path)


def test_scheduler_that_dies_stops_the_workers_and_fails(sshd, procs, tmp_path):
    """A scheduler killed on its host takes the workers and ``rask ssh`` with it, with a
    non-zero exit and a message naming the host."""
    proc = procs.start("ssh-scheduler-dies", ssh_argv(tmp_path, sshd, ["127.0.0.1", "localhost"], "--nthreads", "1"))
    scheduler_file = tmp_path / "cluster" / "scheduler.json"
    with cluster_client(procs, scheduler_file, nworkers=2) as client:
        assert client.submit(sum, [1, 2, 3]).result(timeout=RESULT_TIMEOUT) == 6
        schedulers = [
            line for line in processes_naming(str(scheduler_file))
            # the process itself, not the ssh client whose remote command names it
            if line.split(": ", 1)[1].startswith(f"{RASK_BIN} scheduler ")
        ]
        assert len(schedulers) == 1, schedulers
        os.kill(int(schedulers[0].split(":", 1)[0]), signal.SIGKILL)
        rc = wait_exit(proc)
    log = proc.log_path.read_text(errors="replace")
    assert rc != 0, log
    assert "error: the scheduler on host 127.0.0.1 ended" in log, log
    wait_nothing_left(tmp_path)
