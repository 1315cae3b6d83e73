"""``rask run script.py``: a local cluster (``rask scheduler`` + ``rask worker``) that lives
exactly as long as the script, found through ``DASK_SCHEDULER_ADDRESS``; the script's exit
code is rask's.

rask only: nothing here takes the ``scheduler_kind`` fixture. Each ``rask run`` gets its own
``TMPDIR`` (where it keeps the scheduler file), so the processes it started can be found by
that path while the script runs and checked to be gone after it returns.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import textwrap

import pytest

from conftest import PYTHON, RASK_BIN, REPO, child_env, wait_until

pytestmark = pytest.mark.skipif(not RASK_BIN.exists(), reason=f"no rask binary at {RASK_BIN}")

# startup (up to 60 s inside rask run) + the script + stopping the cluster
RUN_TIMEOUT = 180.0

# Printed by test scripts: the process groups of everything rask run started (the scheduler
# and `rask worker` lead their own groups; graph helpers are in the scheduler's; Python
# workers in rask worker's or in groups of their own).
CLUSTER_PGIDS = """
import os, subprocess

def cluster_pgids():
    out = subprocess.run(["pgrep", "-f", os.environ["TMPDIR"]], capture_output=True, text=True)
    pgids = set()
    for pid in out.stdout.split():
        try:
            pgids.add(os.getpgid(int(pid)))
        except ProcessLookupError:
            pass
    return sorted(pgids)
"""


def start_run(procs, tmp_path, name: str, script_text: str | None, *script_args: str,
              run_args: tuple[str, ...] = ("--nworkers", "1"), python: str = PYTHON):
    """Starts ``rask run [run_args] NAME.py [script_args]`` with its own TMPDIR; the script
    is ``script_text`` (dedented) after the ``cluster_pgids()`` helper."""
    script = tmp_path / f"{name}.py"
    if script_text is not None:
        script.write_text(CLUSTER_PGIDS + textwrap.dedent(script_text))
    tmpdir = tmp_path / f"raskruntmp-{name}"
    tmpdir.mkdir()
    env = child_env()
    env["TMPDIR"] = str(tmpdir)
    argv = [str(RASK_BIN), "run", "--python", python, *run_args, str(script), *script_args]
    proc = procs.start(f"run-{name}", argv, env=env)
    proc.expected_exit = True  # it ends with its script
    return proc, tmpdir


def wait_exit(proc, timeout: float = RUN_TIMEOUT) -> int:
    try:
        return proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"rask run did not return within {timeout}s:\n{proc.report()}", pytrace=False)


def output(proc) -> str:
    return proc.log_path.read_text(errors="replace")


def result(proc) -> dict:
    """The ``RESULT {json}`` line a test script printed."""
    for line in output(proc).splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    pytest.fail(f"the script printed no RESULT line:\n{proc.report()}", pytrace=False)


def pgrep(*args: str) -> list[str]:
    return subprocess.run(["pgrep", *args], capture_output=True, text=True).stdout.split()


def assert_nothing_left(tmpdir, pgids=(), address: str | None = None) -> None:
    """No process rask run started is alive and its scheduler file is gone."""
    assert pgrep("-f", str(tmpdir)) == []
    for pgid in pgids:
        assert pgrep("-g", str(pgid)) == [], f"process group {pgid} still has processes"
    assert list(tmpdir.iterdir()) == [], "rask run left its temporary directory"
    if address is not None:
        host, port = address.removeprefix("tcp://").rsplit(":", 1)
        with pytest.raises(OSError):
            socket.create_connection((host, int(port)), timeout=5).close()


def test_script_gets_a_cluster_and_its_args(procs, tmp_path):
    proc, tmpdir = start_run(
        procs, tmp_path, "compute",
        """
        import json, os, sys
        import dask.array as da
        from distributed import Client

        client = Client(timeout=30)  # no address: DASK_SCHEDULER_ADDRESS
        workers = client.scheduler_info(n_workers=-1)["workers"]
        x = da.random.RandomState(0).random((400, 400), chunks=100)
        y = (x + x.T).sum(axis=0)
        got, want = y.compute(), y.compute(scheduler="sync")
        print("RESULT " + json.dumps({
            "workers": len(workers),
            "nthreads": sorted(w["nthreads"] for w in workers.values()),
            "argv": sys.argv[1:],
            "address": os.environ["DASK_SCHEDULER_ADDRESS"],
            "client_address": client.scheduler.address,
            "equal": bool((got == want).all()),
            "pgids": cluster_pgids(),
        }), flush=True)
        client.close()
        """,
        "a", "b", "--flag", "-x",
        run_args=("--nworkers", "2", "--nthreads", "1"),
    )
    assert wait_exit(proc) == 0, proc.report()
    r = result(proc)
    assert r["workers"] == 2 and r["nthreads"] == [1, 1]
    assert r["argv"] == ["a", "b", "--flag", "-x"]  # everything after the script is its own
    assert r["address"].startswith("tcp://127.0.0.1:") and r["client_address"] == r["address"]
    assert r["equal"]
    # the scheduler and `rask worker` lead groups of their own (and rask worker may start
    # each Python worker in one too): none of them is rask run's, so Ctrl-C misses them
    assert len(r["pgids"]) >= 2 and proc.pid not in r["pgids"], r  # it leads its own group
    assert_nothing_left(tmpdir, r["pgids"], r["address"])


@pytest.mark.parametrize(
    "body, code",
    [("import sys; sys.exit(3)", 3), ("raise ValueError('from the script')", 1)],
    ids=["sys-exit-3", "raises"],
)
def test_exit_code_is_the_scripts(procs, tmp_path, body, code):
    proc, tmpdir = start_run(
        procs, tmp_path, "exits",
        """
        import json, os
        print("RESULT " + json.dumps({"pgids": cluster_pgids(),
                                      "address": os.environ["DASK_SCHEDULER_ADDRESS"]}), flush=True)
        """ + body + "\n",
    )
    assert wait_exit(proc) == code, proc.report()
    r = result(proc)
    if code == 1:
        assert "ValueError: from the script" in output(proc)
    assert_nothing_left(tmpdir, r["pgids"], r["address"])


def test_ctrl_c_reaches_the_script_and_stops_everything(procs, tmp_path):
    proc, tmpdir = start_run(
        procs, tmp_path, "sleeps",
        """
        import json, os, time
        print("RESULT " + json.dumps({"pgids": cluster_pgids(),
                                      "address": os.environ["DASK_SCHEDULER_ADDRESS"]}), flush=True)
        try:
            time.sleep(600)
        except KeyboardInterrupt:
            print("script got KeyboardInterrupt", flush=True)
            raise
        """,
    )
    wait_until(lambda: "RESULT " in output(proc), "the script to start", timeout=RUN_TIMEOUT)
    r = result(proc)
    # As a terminal's Ctrl-C does: SIGINT to the foreground process group (rask run and its
    # script; the cluster runs in groups of its own).
    os.killpg(proc.pid, signal.SIGINT)
    rc = wait_exit(proc, timeout=60)
    assert rc == 128 + signal.SIGINT, proc.report()  # Python re-raises SIGINT on exit
    assert "script got KeyboardInterrupt" in output(proc)
    assert_nothing_left(tmpdir, r["pgids"], r["address"])


def test_sigterm_is_passed_to_the_script(procs, tmp_path):
    proc, tmpdir = start_run(
        procs, tmp_path, "terminated",
        """
        import json, os, time
        print("RESULT " + json.dumps({"pgids": cluster_pgids(),
                                      "address": os.environ["DASK_SCHEDULER_ADDRESS"]}), flush=True)
        time.sleep(600)
        """,
    )
    wait_until(lambda: "RESULT " in output(proc), "the script to start", timeout=RUN_TIMEOUT)
    r = result(proc)
    os.kill(proc.pid, signal.SIGTERM)  # rask run alone, as a batch system would stop it
    assert wait_exit(proc, timeout=60) == 128 + signal.SIGTERM, proc.report()
    assert_nothing_left(tmpdir, r["pgids"], r["address"])


def test_missing_script_starts_nothing(procs, tmp_path):
    proc, tmpdir = start_run(procs, tmp_path, "missing", None)
    assert wait_exit(proc, timeout=30) == 2
    assert "missing.py" in output(proc) and "not found" in output(proc)
    assert_nothing_left(tmpdir)


def _python_without_distributed() -> str | None:
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and os.path.exists(candidate):
            probe = subprocess.run([candidate, "-c", "import distributed"], capture_output=True)
            if probe.returncode != 0:
                return candidate
    return None


@pytest.mark.parametrize("which", ["nonexistent", "no-distributed"])
def test_python_without_distributed_is_named(procs, tmp_path, which):
    if which == "nonexistent":
        python = str(tmp_path / "no-such-python")
    else:
        python = _python_without_distributed()
        if python is None:
            pytest.skip("every python3 on this machine imports distributed")
    proc, tmpdir = start_run(procs, tmp_path, "nopython", "print('never runs')\n", python=python)
    rc = wait_exit(proc, timeout=120)
    text = output(proc)
    assert rc != 0, text
    assert "never runs" not in text
    assert "rask: error: the scheduler exited during startup" in text
    assert python in text
    assert ("cannot import distributed" if which == "no-distributed" else "cannot run") in text
    assert_nothing_left(tmpdir)


def test_taken_port_is_named(procs, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc, tmpdir = start_run(
            procs, tmp_path, "port", "print('never runs')\n",
            run_args=("--nworkers", "1", "--scheduler-port", str(port)),
        )
        rc = wait_exit(proc, timeout=120)
    text = output(proc)
    assert rc != 0, text
    assert "never runs" not in text
    assert f"127.0.0.1:{port}" in text and "in use" in text
    assert_nothing_left(tmpdir)


def test_quickstart_example(procs, tmp_path):
    example = REPO / "examples" / "quickstart.py"
    tmpdir = tmp_path / "raskruntmp-quickstart"
    tmpdir.mkdir()
    env = child_env()
    env["TMPDIR"] = str(tmpdir)
    proc = procs.start(
        "run-quickstart",
        [str(RASK_BIN), "run", "--python", PYTHON, "--nworkers", "2", str(example)],
        env=env,
    )
    proc.expected_exit = True
    assert wait_exit(proc) == 0, proc.report()
    text = output(proc)
    assert "with 2 workers" in text and "all results match" in text
    assert_nothing_left(tmpdir)
