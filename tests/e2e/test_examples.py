"""examples/pbs-job.sh and examples/slurm-job.sh, run with bash as the batch system would run
them, with a node list naming this machine (``127.0.0.1`` and ``localhost``) and a real
``sshd`` on 127.0.0.1 (reached through the ``RASK_SSH_*`` variables, so the scripts run
unchanged). The job must exit 0 with examples/my_program.py's result, which is checked against
Dask's synchronous scheduler, and leave nothing running.

These run rask's own commands once, with ``rask`` in their id (``-k rask`` selects them).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import dask
import pytest

from conftest import PYTHON, RASK_BIN, REPO, child_env, wait_until
from sshd import processes_naming, start_sshd

pytestmark = pytest.mark.skipif(not RASK_BIN.exists(), reason=f"no rask binary at {RASK_BIN}")

EXAMPLES = REPO / "examples"
JOB_TIMEOUT = 200.0  # two SSH logins, scheduler, two rask workers, the program, the stop


def expected_result() -> int:
    spec = importlib.util.spec_from_file_location("my_program", EXAMPLES / "my_program.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (value,) = dask.compute(module.computation(), scheduler="sync")
    return int(value)


@pytest.fixture(params=["rask"])
def sshd(request, procs, tmp_path):
    return start_sshd(procs, tmp_path)


def job_env(sshd, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = child_env()
    for k in list(env):
        # the job must get its settings from this test, not from the environment of the run
        if k.startswith(("PBS_", "SLURM_", "RASK_SSH_")) or k in ("NCPUS", "PROGRAM", "MIN_WORKERS"):
            del env[k]
    env.update(sshd.env())
    env.update(
        RASK=str(RASK_BIN),
        RASK_PYTHON=PYTHON,
        PROGRAM=str(EXAMPLES / "my_program.py"),
        DASHBOARD_ADDRESS=":0",
        TMPDIR=str(tmp_path),
        RASK_STARTUP_TIMEOUT="120",
    )
    env.update(extra)
    return env


def run_job(procs, name: str, script: str, env: dict[str, str]):
    proc = procs.start(name, ["bash", str(EXAMPLES / script)], env=env)
    try:
        rc = proc.popen.wait(timeout=JOB_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script} still running after {JOB_TIMEOUT}s:\n{proc.report()}", pytrace=False)
    proc.expected_exit = True
    return rc, proc.log_path.read_text(errors="replace"), proc


def cluster_log(jobdir: Path) -> str:
    try:
        return (jobdir / "rask-ssh.log").read_text(errors="replace")
    except OSError as e:
        return f"<no cluster log: {e}>"


def wait_nothing_left(jobdir: Path) -> None:
    left: list[str] = []

    def gone():
        left[:] = processes_naming(str(jobdir))
        return not left

    wait_until(gone, f"the job's processes to exit (still running: {left})", timeout=60)


def check_job(rc: int, out: str, jobdir: Path) -> None:
    report = f"job output:\n{out}\ncluster log:\n{cluster_log(jobdir)}"
    assert rc == 0, report
    assert "workers = 2" in out, report
    assert f"result = {expected_result()}" in out, report
    log = cluster_log(jobdir)
    assert "[worker 127.0.0.1]" in log and "[worker localhost]" in log, report
    wait_nothing_left(jobdir)
    assert "rask ssh: stopped" in cluster_log(jobdir), report


@pytest.mark.timeout(300)
def test_pbs_job_runs_the_program_on_the_allocation(sshd, procs, tmp_path):
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("127.0.0.1\n127.0.0.1\nlocalhost\nlocalhost\n")  # select=2:ncpus=2
    env = job_env(
        sshd, tmp_path,
        PBS_NODEFILE=str(nodefile), PBS_O_WORKDIR=str(tmp_path), PBS_JOBID="4242.pbs", NCPUS="2",
    )
    rc, out, _ = run_job(procs, "pbs-job", "pbs-job.sh", env)
    check_job(rc, out, tmp_path / "rask-4242.pbs")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("scontrol", [False, True], ids=["split", "scontrol"])
def test_slurm_job_runs_the_program_on_the_allocation(sshd, procs, tmp_path, scontrol):
    env = job_env(
        sshd, tmp_path,
        SLURM_JOB_NODELIST="127.0.0.1,localhost", SLURM_SUBMIT_DIR=str(tmp_path),
        SLURM_JOB_ID="77", SLURM_CPUS_PER_TASK="2",
    )
    bindir = tmp_path / "bin"
    bindir.mkdir()
    if scontrol:
        # a stand-in for Slurm's: `scontrol show hostnames LIST` prints one host per line
        fake = bindir / "scontrol"
        fake.write_text(
            '#!/bin/sh\n[ "$1 $2" = "show hostnames" ] || exit 2\nprintf "127.0.0.1\\nlocalhost\\n"\n'
        )
        fake.chmod(0o755)
        env["SLURM_JOB_NODELIST"] = "this-list-is-for-scontrol[1-2]"
    else:
        # PATH without a real scontrol, should this machine have one
        env["PATH"] = os.pathsep.join(
            p for p in env.get("PATH", "").split(os.pathsep) if not (Path(p) / "scontrol").exists()
        )
    env["PATH"] = os.pathsep.join([str(bindir), env.get("PATH", "")])
    rc, out, _ = run_job(procs, "slurm-job", "slurm-job.sh", env)
    jobdir = tmp_path / "rask-77"
    check_job(rc, out, jobdir)
    assert (jobdir / "hosts").read_text().split() == ["127.0.0.1", "localhost"]


def test_job_with_an_unreachable_node_fails_with_a_message(sshd, procs, tmp_path):
    nodefile = tmp_path / "nodefile"
    nodefile.write_text("127.0.0.1\nnosuchnode.invalid\n")
    env = job_env(sshd, tmp_path, PBS_NODEFILE=str(nodefile), PBS_O_WORKDIR=str(tmp_path), PBS_JOBID="9")
    rc, out, _ = run_job(procs, "pbs-job-unreachable", "pbs-job.sh", env)
    assert rc != 0, out
    assert "rask ssh exited before the scheduler was up" in out, out
    assert "cannot reach host nosuchnode.invalid over SSH" in out, out
    wait_nothing_left(tmp_path / "rask-9")
