"""Side-by-side: wall time of N no-op `client.map` tasks on 2 stock workers, `dask scheduler`
vs `rask scheduler`, alternating A B A B in one invocation. Reports medians and the ratio.

    .venv/bin/python benchmarks/map_noop.py [--tasks 10000] [--rounds 5] [--rask target/release/rask]

Each round starts a fresh scheduler and two `dask worker --nthreads 1 --no-nanny`, waits for
them, times `client.gather(client.map(noop, range(N)))` (submission to last result), and
stops everything.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distributed import Client

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def noop(x):
    return x


def start(cmd, log):
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(p):
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def one_round(kind, rask_bin, n_tasks, workdir):
    sched_file = Path(workdir) / f"{kind}-{time.monotonic_ns()}.json"
    log = open(Path(workdir) / f"{kind}.log", "ab")
    if kind == "dask":
        cmd = [str(BIN / "dask"), "scheduler"]
    else:
        cmd = [rask_bin, "scheduler", "--python", sys.executable]
    cmd += ["--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)]
    procs = [start(cmd, log)]
    try:
        deadline = time.time() + 60
        while not (sched_file.exists() and sched_file.stat().st_size):
            if time.time() > deadline:
                raise RuntimeError(f"{kind} scheduler did not start")
            time.sleep(0.1)
        time.sleep(0.2)
        addr = json.loads(sched_file.read_text())["address"]
        for i in range(2):
            procs.append(start([str(BIN / "dask"), "worker", addr, "--nthreads", "1", "--no-nanny",
                                "--no-dashboard", "--name", f"w{i}"], log))
        with Client(addr, timeout=30) as c:
            c.wait_for_workers(2, timeout=60)
            c.gather(c.map(noop, range(10), key=[f"warm-{i}" for i in range(10)]))
            t0 = time.perf_counter()
            out = c.gather(c.map(noop, range(n_tasks)))
            dt = time.perf_counter() - t0
            assert out == list(range(n_tasks))
        return dt
    finally:
        for p in reversed(procs):
            stop(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rask", default=str(REPO / "target" / "release" / "rask"))
    a = ap.parse_args()
    times = {"dask": [], "rask": []}
    with tempfile.TemporaryDirectory() as wd:
        for r in range(a.rounds):
            for kind in ("dask", "rask"):
                dt = one_round(kind, a.rask, a.tasks, wd)
                times[kind].append(dt)
                print(f"round {r + 1} {kind}: {dt:.3f} s", flush=True)
    md, mr = statistics.median(times["dask"]), statistics.median(times["rask"])
    print(f"\n{a.tasks} no-op client.map tasks, 2 workers x 1 thread, {a.rounds} rounds (A B alternating)")
    print(f"dask scheduler: median {md:.3f} s   ({a.tasks / md:,.0f} tasks/s)")
    print(f"rask scheduler: median {mr:.3f} s   ({a.tasks / mr:,.0f} tasks/s)")
    print(f"ratio dask/rask: {md / mr:.2f}x")


if __name__ == "__main__":
    main()
