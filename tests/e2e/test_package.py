"""rask as pip installs it: the wheel (maturin) in a fresh venv, with the stock Dask pinned
beside it, and the cluster managers that construct a scheduler in Python.

The wheel is ``$RASK_WHEEL`` if set (``scripts/test`` builds it once), else built here with
``maturin build --release``. The fresh venv never sees the checkout: the ``rask`` command,
``python -m rask`` and ``import rask`` must all come from the wheel. The user's side runs
in ``e2e_package_user.py``, once with rask's classes and once with the stock ones.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from conftest import DISTRIBUTED_RELEASE, E2E_DIR, REPO, TESTED_RELEASE, child_env, wait_until

pytestmark = pytest.mark.timeout(900)

USER = E2E_DIR / "e2e_package_user.py"


def run(argv, timeout, **kwargs):
    """Runs a command to its end in its own process group; its output is in the error."""
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, start_new_session=True, **kwargs
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, argv))} exited with {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-5000:]}\n--- stderr ---\n{proc.stderr[-8000:]}",
            pytrace=False,
        )
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    given = os.environ.get("RASK_WHEEL")
    if given:
        if not Path(given).is_file():
            pytest.fail(f"$RASK_WHEEL is {given!r}, which is not a file (give an absolute path)", pytrace=False)
        return Path(given)
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "maturin", "build", "--release", "--out", str(out)], 1800, cwd=REPO)
    return next(out.glob("rask-*.whl"))


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel, the pinned Dask, dask-jobqueue and cryptography, nothing
    else."""
    if DISTRIBUTED_RELEASE != TESTED_RELEASE:
        pytest.skip("the package is tested on the pinned release")
    path = tmp_path_factory.mktemp("venv") / "env"
    base = getattr(sys, "_base_executable", sys.executable)
    run([base, "-m", "venv", str(path)], 120)
    run(
        [
            path / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
            str(wheel), f"dask[distributed,dataframe,array]=={TESTED_RELEASE}", "dask-jobqueue==0.9.0",
            "cryptography==50.0.2",  # Security.temporary(), for LocalCluster(security=True)
        ],
        900,
    )
    return path


def user_env(extra_path: list[Path] = ()) -> dict[str, str]:
    """The test's environment without anything that points at the checkout's build."""
    env = child_env()
    env.pop("RASK_BIN", None)
    env.pop("RASK_PYTHON", None)
    env["PATH"] = os.pathsep.join([*map(str, extra_path), "/usr/local/bin", "/usr/bin", "/bin"])
    return env


def run_user(venv: Path, scenario: str, kind: str, tmp_path: Path, *args, env=None, timeout=300) -> dict:
    out = tmp_path / f"{scenario}-{kind}.json"
    run([venv / "bin" / "python", USER, scenario, kind, str(out), *args], timeout, env=env or user_env(), cwd=tmp_path)
    return json.loads(out.read_text())


def gone(pids) -> bool:
    """No process of `pids` runs any more (a zombie nobody reaped has ended too)."""
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


def elf_section_names(binary: bytes) -> set[str]:
    """The section names of a 64-bit little-endian ELF file (what `readelf -S` lists)."""
    import struct

    assert binary[:6] == b"\x7fELF\x02\x01", "not a 64-bit little-endian ELF file"
    shoff, = struct.unpack_from("<Q", binary, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", binary, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", binary, shoff + i * shentsize) for i in range(shnum)]
    strtab = headers[shstrndx][4]  # sh_offset of the section-name table
    return {binary[strtab + h[0] : binary.index(b"\0", strtab + h[0])].decode() for h in headers}


# -- the wheel ---------------------------------------------------------------------------------


def test_wheel_gives_the_command_the_module_and_the_package(venv, tmp_path):
    env = user_env()
    version = run([venv / "bin" / "rask", "--version"], 60, env=env).stdout.strip()
    assert version.startswith("rask ")
    assert run([venv / "bin" / "python", "-m", "rask", "--version"], 60, env=env).stdout.strip() == version
    where = run(
        [venv / "bin" / "python", "-c", "import rask; print(rask.find_rask_bin()); print(rask.__file__); print(rask.__version__)"],
        60,
        env=env,
        cwd=tmp_path,
    ).stdout.split()
    # what a scheduler in another process cannot honour is refused, not ignored
    refused = subprocess.run(
        [venv / "bin" / "python", "-c", "import rask; rask.Scheduler(transition_counter_max=5)"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )
    assert refused.returncode == 1
    assert "TypeError: rask.Scheduler does not take transition_counter_max" in refused.stderr
    assert where[0] == str(venv / "bin" / "rask")
    assert where[1].startswith(str(venv))
    assert version == f"rask {where[2]}"
    # stripped: no symbol table, no debug sections
    sections = elf_section_names((venv / "bin" / "rask").read_bytes())
    assert ".text" in sections
    assert not {".symtab", ".debug_info", ".debug_line"} & sections, sorted(sections)


def test_installed_command_uses_the_python_beside_it(venv, tmp_path, procs):
    """`rask scheduler` from the venv, not activated and with no --python: its graph helpers
    run the venv's Python (python3 on PATH has no Dask here)."""
    scheduler_file = tmp_path / "scheduler.json"
    argv = [str(venv / "bin" / "rask"), "scheduler", "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)]
    proc = procs.start("installed-scheduler", argv, env=user_env())
    wait_until(lambda: scheduler_file.exists() and "address" in scheduler_file.read_text(), "the scheduler file", 60)
    assert f"graph helpers: {venv}/bin/python" in proc.log_path.read_text()


# -- clusters in Python, against both schedulers ---------------------------------------------------


def test_local_cluster_computes(venv, tmp_path, scheduler_kind):
    result = run_user(venv, "local_cluster", scheduler_kind, tmp_path)
    assert result["n_workers"] == 2
    assert result["total"] == result["threads_total"] == 1275
    assert result["threads_address"].startswith("tcp://" if scheduler_kind == "rask" else "inproc://")
    assert result["dashboard"].startswith("http://")
    if scheduler_kind == "rask":
        assert result["scheduler_type"] == "rask._scheduler.Scheduler"
        assert result["scheduler_exe"] == str(venv / "bin" / "rask")
        assert len(result["scheduler_pids"]) >= 2  # the binary and its graph helpers
    assert gone(result["scheduler_pids"])


def test_local_cluster_with_temporary_tls(venv, tmp_path, scheduler_kind):
    result = run_user(venv, "tls", scheduler_kind, tmp_path)
    assert result["total"] == 6
    assert result["address"].startswith("tls://")
    assert [a.startswith("tls://") for a in result["workers"]] == [True]


def test_local_cluster_adapts(venv, tmp_path, scheduler_kind):
    result = run_user(venv, "adapt", scheduler_kind, tmp_path)
    assert result["results"] == 40
    assert 1 <= result["peak"] <= 2


def test_killed_python_leaves_no_process(venv, tmp_path, procs, scheduler_kind):
    """SIGKILL to the Python process that made the cluster (only to it): the scheduler, its
    helpers and the workers all end by themselves."""
    out = tmp_path / "killed.json"
    user = procs.start(
        f"killed-user-{scheduler_kind}",
        [str(venv / "bin" / "python"), str(USER), "killed", scheduler_kind, str(out)],
        env=user_env(),
    )
    wait_until(lambda: out.exists(), "the cluster to start", 120, interval=0.2)
    pids = json.loads(out.read_text())["pids"]
    assert pids
    user.expected_exit = True
    os.kill(user.pid, signal.SIGKILL)
    user.popen.wait(timeout=10)
    wait_until(lambda: gone(pids), f"processes {pids} to end after their Python was killed", 60, interval=0.2)


def test_spec_cluster_takes_the_scheduler_class(venv, tmp_path, scheduler_kind):
    result = run_user(venv, "spec_cluster", scheduler_kind, tmp_path)
    assert result["workers"] == 2 and result["total"] == 1275
    assert gone(result["scheduler_pids"])


FAKE_SUBMIT = """\
#!/usr/bin/env bash
# A fake {submit}: runs the job script on this machine, in its own session, and prints what
# the real one prints. The script is copied first (dask-jobqueue deletes it once {submit}
# returns).
set -euo pipefail
job=$(mktemp "$FAKE_QUEUE/job-XXXXXX")
cp "${{@: -1}}" "$job.sh"
setsid bash "$job.sh" >"$job.log" 2>&1 </dev/null &
echo "$!" >>"$FAKE_QUEUE/jobs"
echo "{output}"
"""

FAKE_CANCEL = """\
#!/usr/bin/env bash
# A fake {cancel}: ends the job's session (SIGTERM: the worker retires, as on a real queue).
kill -TERM -- "-${{1%%.*}}" 2>/dev/null || true
"""


@pytest.mark.parametrize(
    "system, submit, output, cancel",
    [("pbs", "qsub", "$!.fakepbs", "qdel"), ("slurm", "sbatch", "Submitted batch job $!", "scancel")],
)
def test_jobqueue_cluster_takes_the_scheduler_class(venv, tmp_path, scheduler_kind, system, submit, output, cancel):
    queue = tmp_path / "queue"
    queue.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in ((submit, FAKE_SUBMIT.format(submit=submit, output=output)), (cancel, FAKE_CANCEL.format(cancel=cancel))):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = user_env([bin_dir])
    env["FAKE_QUEUE"] = str(queue)
    try:
        result = run_user(venv, "jobqueue", scheduler_kind, tmp_path, system, str(queue), env=env)
        jobs = [int(j) for j in (queue / "jobs").read_text().split()]
        assert len(jobs) == 2
        assert result["workers"] == 2 and result["total"] == 1275
        assert f"{venv}/bin/python -m distributed.cli.dask_worker" in result["script"]
        logs = "".join(p.read_text() for p in queue.glob("job-*.log"))
        assert result["address"] in logs  # the workers were told the scheduler's address
        # the cluster's close cancelled the jobs
        wait_until(lambda: gone(jobs), "the jobs to end", 60, interval=0.2)
    finally:
        for job in (queue / "jobs").read_text().split() if (queue / "jobs").exists() else []:
            try:
                os.killpg(int(job), signal.SIGKILL)
            except ProcessLookupError:
                pass


# -- dask-mpi ----------------------------------------------------------------------------------


MPI_CLIENT = textwrap.dedent(
    """
    import sys
    from distributed import Client
    with Client(scheduler_file=sys.argv[1], timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
        print(sum(client.gather(client.map(lambda x: x * x, range(100)))))
    """
)


def test_mpi_workers_join_an_external_scheduler(cluster_factory, procs, tmp_path):
    """dask-mpi's documented way with a scheduler of its own: `mpirun -n 2 dask-mpi
    --no-scheduler --scheduler-file FILE` starts a worker on every rank."""
    import shutil

    mpirun = shutil.which("mpirun")
    dask_mpi = Path(sys.executable).parent / "dask-mpi"
    if not mpirun or not dask_mpi.exists():
        pytest.skip("needs mpirun (Debian openmpi-bin) and dask-mpi with mpi4py (tests/e2e/requirements.txt)")
    cluster = cluster_factory()
    scheduler_file = tmp_path / f"{cluster.tag}-scheduler.json"  # written by the scheduler
    argv = [mpirun, "-n", "2", "--oversubscribe"]
    if os.geteuid() == 0:
        argv.append("--allow-run-as-root")
    argv += [str(dask_mpi), "--no-scheduler", "--scheduler-file", str(scheduler_file), "--nthreads", "1", "--memory-limit", "1GB"]
    procs.start("mpirun", argv)
    client = tmp_path / "mpi_client.py"
    client.write_text(MPI_CLIENT)
    out = run([sys.executable, str(client), str(scheduler_file)], 180, env=child_env()).stdout
    assert out.split()[-1] == str(sum(x * x for x in range(100)))
    assert len(cluster.control.scheduler_info()["workers"]) == 2
