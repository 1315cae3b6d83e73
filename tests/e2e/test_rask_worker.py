"""`rask worker`: stock worker processes supervised by rask, against both schedulers.

rask worker must be a drop-in for `dask worker` in front of `dask scheduler` too, so the
tests that need a scheduler run against both kinds. The last tests are about rask worker's
own error messages and need no scheduler.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess

import dask
import dask.array as da
import pytest
from conftest import PYTHON, RASK_BIN, RESULT_TIMEOUT, child_env, wait_until
from distributed import KilledWorker
from distributed.system import MEMORY_LIMIT

BOUNDED_EXIT = 45.0  # retiring and closing a rask worker


def rask_worker(cluster, tag: str, *flags: str, address: bool = True):
    """Start `rask worker` (own process group, logged) for ``cluster`` (by its address, or
    by the flags alone with ``address=False``)."""
    target = [cluster.address] if address else []
    argv = [str(RASK_BIN), "worker", *target, "--python", PYTHON, "--no-dashboard",
            "--local-directory", str(cluster.workdir / f"{tag}-space"), *flags]
    return cluster.pm.start(f"{cluster.tag}-rask-worker-{tag}", argv)


def workers_info(cluster) -> dict:
    return cluster.control.scheduler_info(n_workers=-1)["workers"]


def wait_for_names(cluster, names: set[str], timeout: float = 60.0) -> dict:
    """Waits until the workers named ``names`` are registered; returns {name: info}."""

    def check():
        cluster.pm.check_alive("while waiting for rask worker's workers")
        byname = {str(w["name"]): dict(w, address=a) for a, w in workers_info(cluster).items()}
        return byname if names <= byname.keys() else None

    return wait_until(check, f"workers {sorted(names)}", timeout=timeout, interval=0.2)


def array_sum(client) -> None:
    x = da.arange(200_000, chunks=10_000)
    expected = dask.compute((x * 2).sum(), scheduler="sync")[0]
    assert client.compute((x * 2).sum()).result(timeout=RESULT_TIMEOUT) == expected


def exit_within(proc, timeout: float = BOUNDED_EXIT) -> int:
    proc.expected_exit = True
    try:
        return proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{proc.name} did not exit within {timeout}s:\n{proc.report()}", pytrace=False)


def test_flags_reach_the_workers(cluster_factory):
    """--nprocs (the HPC guides' spelling), --nthreads, --memory-limit, --name, --resources
    and --local-directory, as `dask worker` applies them; each worker has a nanny."""
    cluster = cluster_factory()
    rask_worker(cluster, "a", "--nprocs", "2", "--nthreads", "2", "--memory-limit", "1GB",
                "--name", "hpc", "--resources", "GPU=1 MEM=5e9")
    info = wait_for_names(cluster, {"hpc-0", "hpc-1"})
    for name in ("hpc-0", "hpc-1"):
        w = info[name]
        assert w["nthreads"] == 2
        assert w["memory_limit"] == 1_000_000_000
        assert w["resources"] == {"GPU": 1, "MEM": 5e9}
        assert w["nanny"] and w["nanny"] != w["address"]
    with cluster.client() as c:
        dirs = c.run(lambda dask_worker: dask_worker.local_directory)
        assert all(str(cluster.workdir / "a-space") in d for d in dirs.values()), dirs
        array_sum(c)


def test_scheduler_file_and_memory_limit_forms(cluster_factory):
    """--scheduler-file; `auto` splits the node's memory across the processes, a fraction
    is of the node's memory, 0 is no limit."""
    cluster = cluster_factory()
    sfile = cluster.workdir / "scheduler-copy.json"
    sfile.write_text(json.dumps({"address": cluster.address}))
    rask_worker(cluster, "auto", "--scheduler-file", str(sfile), "--nworkers", "2",
                "--nthreads", "1", "--name", "auto", address=False)
    rask_worker(cluster, "frac", "--memory-limit", "0.25", "--name", "frac", "--nthreads", "1")
    rask_worker(cluster, "none", "--memory-limit", "0", "--name", "none", "--nthreads", "1")
    info = wait_for_names(cluster, {"auto-0", "auto-1", "frac", "none"})
    assert info["auto-0"]["memory_limit"] == MEMORY_LIMIT // 2
    assert info["frac"]["memory_limit"] == int(0.25 * MEMORY_LIMIT)
    assert not info["none"]["memory_limit"]


def test_a_dead_worker_process_is_restarted(cluster_factory):
    cluster = cluster_factory()
    proc = rask_worker(cluster, "a", "--nworkers", "2", "--nthreads", "1", "--name", "r")
    before = wait_for_names(cluster, {"r-0", "r-1"})
    with cluster.client() as c:
        pid = c.run(os.getpid, workers=[before["r-0"]["address"]])[before["r-0"]["address"]]
        os.kill(pid, signal.SIGKILL)

        def replaced():
            now = wait_for_names(cluster, {"r-0", "r-1"})
            return now["r-0"]["address"] != before["r-0"]["address"]

        wait_until(replaced, "r-0 to come back in a new process", timeout=60, interval=0.2)
        array_sum(c)
    assert proc.alive()
    assert "was killed by signal 9; restarting it" in proc.log_path.read_text()


def test_memory_past_the_terminate_threshold_restarts_the_worker(cluster_factory):
    """A task that holds more than 95% of its worker's memory limit gets the worker killed
    and restarted, as Dask's nanny does; the task then ends as KilledWorker."""
    cluster = cluster_factory()
    proc = rask_worker(cluster, "a", "--nthreads", "1", "--memory-limit", "400MB", "--name", "m")
    wait_for_names(cluster, {"m"})

    def hog():
        import time

        block = bytearray(600_000_000)
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(30)
        return len(block)

    with cluster.client() as c:
        fut = c.submit(hog, pure=False)
        with pytest.raises(KilledWorker):
            fut.result(timeout=180)
        wait_for_names(cluster, {"m"})
        array_sum(c)
    assert "exceeded 95% memory budget. Restarting..." in proc.log_path.read_text()
    assert proc.alive()


def test_client_restart_goes_through_rask_worker(cluster_factory):
    cluster = cluster_factory()
    rask_worker(cluster, "a", "--nworkers", "2", "--nthreads", "1", "--name", "cr")
    before = wait_for_names(cluster, {"cr-0", "cr-1"})
    with cluster.client() as c:
        kept = c.submit(lambda: 41, pure=False)
        assert kept.result(timeout=RESULT_TIMEOUT) == 41
        c.restart(timeout=60)
        after = wait_for_names(cluster, {"cr-0", "cr-1"})
        assert {after[n]["address"] for n in after}.isdisjoint(
            {before[n]["address"] for n in before}
        )
        array_sum(c)


def test_sigterm_retires_workers_and_keeps_their_results(cluster_factory):
    """SIGTERM: rask worker retires its workers; results only they held move first."""
    cluster = cluster_factory()
    leaving = rask_worker(cluster, "leaving", "--nthreads", "1", "--name", "leaving")
    rask_worker(cluster, "staying", "--nthreads", "1", "--name", "staying")
    info = wait_for_names(cluster, {"leaving", "staying"})
    with cluster.client() as c:
        futs = c.map(lambda i: i * 10, range(20), workers=[info["leaving"]["address"]], pure=False)
        c.gather(futs)
        assert set(c.who_has(futs).values()) == {(info["leaving"]["address"],)}
        os.killpg(leaving.pid, signal.SIGTERM)
        assert exit_within(leaving) == 0
        assert c.gather(futs) == [i * 10 for i in range(20)]
        wait_until(lambda: "leaving" not in {str(w["name"]) for w in workers_info(cluster).values()},
                   "the retired worker to leave")
    assert "retiring the workers" in leaving.log_path.read_text()


def test_rask_worker_exits_when_the_scheduler_closes(cluster_factory):
    cluster = cluster_factory()
    proc = rask_worker(cluster, "a", "--nworkers", "2", "--nthreads", "1", "--name", "s")
    wait_for_names(cluster, {"s-0", "s-1"})
    cluster.close_control()
    os.killpg(cluster.scheduler.pid, signal.SIGTERM)  # as a batch job's end does
    assert exit_within(cluster.scheduler) == 0
    assert exit_within(proc) == 0


# -- deployment errors: what a user sees when something is wrong ---------------------------


def run_rask_worker(tmp_path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Runs `rask worker` expecting it to give up by itself (own session, bounded)."""
    try:
        return subprocess.run([str(RASK_BIN), "worker", *args], capture_output=True, text=True,
                              timeout=timeout, cwd=tmp_path, env=child_env(), start_new_session=True)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"rask worker {args} did not give up within {timeout}s: {e.stderr}", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_error_no_python_with_distributed(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    r = run_rask_worker(tmp_path, "tcp://127.0.0.1:1", "--python", str(bare / "bin" / "python"))
    assert r.returncode != 0
    assert "cannot import distributed" in r.stderr and "--python" in r.stderr, r.stderr
    r = run_rask_worker(tmp_path, "tcp://127.0.0.1:1", "--python", str(tmp_path / "nope"))
    assert r.returncode != 0
    assert "no usable Python" in r.stderr and "nope" in r.stderr, r.stderr


def test_error_scheduler_unreachable(tmp_path):
    port = free_port()
    r = run_rask_worker(tmp_path, f"tcp://127.0.0.1:{port}", "--python", PYTHON, "--death-timeout", "2")
    assert r.returncode != 0
    assert f"cannot reach the scheduler at tcp://127.0.0.1:{port}" in r.stderr, r.stderr


def test_error_scheduler_file_never_appears(tmp_path):
    missing = tmp_path / "never" / "scheduler.json"
    r = run_rask_worker(tmp_path, "--scheduler-file", str(missing), "--python", PYTHON,
                        "--death-timeout", "2")
    assert r.returncode != 0
    assert f"the scheduler file {missing} did not appear" in r.stderr, r.stderr


@pytest.mark.parametrize("flag", ["--nanny-port", "--worker-port"])
def test_error_port_taken(cluster_factory, tmp_path, flag):
    cluster = cluster_factory()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_rask_worker(tmp_path, cluster.address, "--python", PYTHON, "--host", "127.0.0.1",
                            flag, str(port), "--no-dashboard")
    assert r.returncode != 0
    assert str(port) in r.stderr and ("in use" in r.stderr or "cannot listen" in r.stderr), r.stderr


# -- job scripts of dask-jobqueue -----------------------------------------------------------


def jobqueue_worker_line(kind: str, address: str, name: str) -> str:
    """The worker command line of a dask-jobqueue job script, as it generates it."""
    from dask_jobqueue.pbs import PBSJob
    from dask_jobqueue.slurm import SLURMJob

    job = {"pbs": PBSJob, "slurm": SLURMJob}[kind](
        scheduler=address, name=name, cores=2, processes=2, memory="2GiB", death_timeout=60,
        local_directory="$TMPDIR", worker_extra_args=["--lifetime", "55m", "--lifetime-stagger", "4m"],
    )
    (line,) = [ln for ln in job.job_script().splitlines() if "distributed.cli.dask_worker" in ln]
    return line


@pytest.mark.parametrize("runner", ["rask worker", "stock dask worker"])
@pytest.mark.parametrize("kind", ["pbs", "slurm"])
def test_dask_jobqueue_job_scripts(cluster_factory, tmp_path, kind, runner):
    """A dask-jobqueue worker line works unchanged against the scheduler, and with its
    `python -m distributed.cli.dask_worker` replaced by `rask worker`."""
    cluster = cluster_factory()
    name = f"jq{kind}"
    line = jobqueue_worker_line(kind, cluster.address, name)
    if runner == "rask worker":
        stock = f"{PYTHON} -m distributed.cli.dask_worker"
        assert line.startswith(stock), line
        line = f"{RASK_BIN} worker --python {PYTHON}" + line[len(stock):]
    env = child_env()
    env["TMPDIR"] = str(tmp_path)
    script = tmp_path / f"{kind}-job.sh"
    script.write_text(f"#!/usr/bin/env bash\nexec {line}\n")
    cluster.pm.start(f"{cluster.tag}-{kind}-job", ["bash", str(script)], env=env)
    info = wait_for_names(cluster, {f"{name}-0", f"{name}-1"})
    assert {w["memory_limit"] for w in info.values()} == {1 << 30}
    assert {w["nthreads"] for w in info.values()} == {1}
    with cluster.client() as c:
        array_sum(c)
