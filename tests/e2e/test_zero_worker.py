"""``rask zero-worker``: fake workers that finish every task at once, against both schedulers.

The benchmark tool must speak the worker protocol well enough that an unmodified client's
``map``/``gather`` and a ``delayed`` graph with dependencies complete on the stock scheduler
and on rask, so both are measured on the same footing.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess

import dask
import pytest
from distributed import wait

import e2e_remote as remote
from conftest import RASK_BIN, RESULT_TIMEOUT, child_env, wait_until

pytestmark = pytest.mark.skipif(not RASK_BIN.exists(), reason=f"no rask binary at {RASK_BIN}")


def start_zero_worker(procs, address: str, n: int, report):
    return procs.start(
        "zero-worker",
        [str(RASK_BIN), "zero-worker", address, "--nworkers", str(n), "--report", str(report)],
    )


def read_report(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def wait_exit(proc, timeout: float) -> int:
    try:
        return proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{proc.name} still running {timeout}s after the signal:\n{proc.report()}", pytrace=False)


def test_map_gather_and_tree_on_zero_workers(cluster_factory, procs, tmp_path):
    c = cluster_factory()
    report = tmp_path / "zero-report.json"
    zw = start_zero_worker(procs, c.address, 4, report)
    c.wait_for_workers(4)
    workers = c.control.scheduler_info(n_workers=-1)["workers"]
    assert len(workers) == 4
    assert all(ws["name"].startswith("zero-") and ws["nthreads"] == 1 for ws in workers.values())
    assert len({addr.rsplit(":", 1)[1] for addr in workers}) == 4  # each its own listener

    with c.client() as client:
        futures = client.map(remote.inc, range(500))
        wait(futures, timeout=RESULT_TIMEOUT)
        results = client.gather(futures)
        # every value is the placeholder 0 the zero workers serve from get_data
        assert len(results) == 500 and set(results) == {0}

        leaves = [dask.delayed(remote.inc)(i) for i in range(8)]
        while len(leaves) > 1:
            leaves = [dask.delayed(remote.add)(a, b) for a, b in zip(leaves[::2], leaves[1::2])]
        total = client.compute(leaves[0])
        assert total.result(timeout=RESULT_TIMEOUT) == 0

        # scatter reaches the workers' update_data; a task may depend on scattered data
        scattered = client.scatter(list(range(10)))
        assert client.gather(scattered) == [0] * 10
        assert client.submit(remote.add, scattered[0], scattered[1]).result(timeout=RESULT_TIMEOUT) == 0

    ntasks = 500 + 8 + 7 + 1
    # rewritten after 200 ms without tasks, while the process keeps running
    rep = wait_until(
        lambda: (r := read_report(report)) and r["tasks"] >= ntasks and r, f"a report with {ntasks} tasks"
    )
    assert rep["span_s"] >= 0 and rep["first_compute"] <= rep["last_finished"]
    assert zw.alive()

    zw.expected_exit = True
    zw.popen.send_signal(signal.SIGTERM)
    assert wait_exit(zw, 30) == 0
    final = read_report(report)
    assert final["tasks"] >= ntasks and final["span_s"] >= 0
    # the workers said goodbye: the scheduler removed all four
    wait_until(lambda: not c.control.scheduler_info(n_workers=-1)["workers"], "the workers to be removed")


def test_zero_worker_exits_zero_when_the_scheduler_closes(cluster_factory, procs, tmp_path):
    c = cluster_factory()
    report = tmp_path / "zero-report.json"
    zw = start_zero_worker(procs, c.address, 2, report)
    c.wait_for_workers(2)
    c.close_control()
    c.scheduler.expected_exit = True
    zw.expected_exit = True
    c.scheduler.popen.send_signal(signal.SIGTERM)
    assert wait_exit(c.scheduler, 30) == 0
    assert wait_exit(zw, 30) == 0
    assert read_report(report)["tasks"] == 0


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    r = subprocess.run(
        [str(RASK_BIN), "zero-worker", address, "--nworkers", "2"],
        capture_output=True, text=True, timeout=60, env=child_env(), cwd=tmp_path,
    )
    assert r.returncode == 1
    assert address in r.stderr and "cannot connect" in r.stderr
