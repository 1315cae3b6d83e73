"""Side by side: `dask scheduler` 2026.8.0 and `rask scheduler` on the same cases, alternating
A B A B in one invocation; writes BENCHMARKS.md and the scaling plot. Run it through
`benchmarks/run` (which builds rask in release mode and installs the plotting library).

Every (case, scheduler, round) starts a fresh scheduler and fresh workers, so peak RSS and
CPU are the case's own. Measured per run:
- wall: from submitting the (pre-built) graph to holding the result, on the client;
- phase: the scheduling phase, from the zero worker's first `compute-task` to its last
  `task-finished` (zero-worker runs only);
- cpu: scheduler CPU seconds (user+system) spent during `wall`; for rask this includes its
  Python graph helpers, which are reported separately too;
- rss: the scheduler process's peak RSS (VmHWM), and its RSS when the result arrived;
  rask's helpers separately; on stock workers also the largest worker's peak RSS.

The users' part runs its cases twice: with Dask's default config and with
`worker-saturation: inf` given to both schedulers (`DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION`).
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases as suite  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
KINDS = ("dask", "rask")
START_TIMEOUT = 120


class Procs:
    """Every process of one run, each in its own process group, logged to one file."""

    def __init__(self, workdir: Path, tag: str):
        self.log = open(workdir / f"{tag}.log", "ab")
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], env=None) -> subprocess.Popen:
        self.log.write(f"\n$ {' '.join(cmd)}\n".encode())
        self.log.flush()
        p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 20) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(timeout)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)
        self.log.close()


def start_scheduler(kind: str, procs: Procs, workdir: Path, rask: str,
                    watch: bool = False, env: dict | None = None) -> tuple[str, int]:
    sched_file = workdir / f"{kind}-{time.monotonic_ns()}.json"
    if kind == "dask":
        cmd = [str(BIN / "dask"), "scheduler"]
    else:
        cmd = [rask, "scheduler", "--python", sys.executable]
    dashboard = ["--dashboard-address", "127.0.0.1:0"] if watch else ["--no-dashboard"]
    cmd += ["--host", "127.0.0.1", "--port", "0", *dashboard,
            "--scheduler-file", str(sched_file)]
    p = procs.start(cmd, env={**os.environ, **env} if env else None)
    deadline = time.time() + START_TIMEOUT
    while True:
        if p.poll() is not None:
            raise RuntimeError(f"{kind} scheduler exited with {p.returncode}; see {procs.log.name}")
        if sched_file.exists() and sched_file.stat().st_size:
            try:
                identity = json.loads(sched_file.read_text())
                if watch:
                    start_watcher(identity["services"]["dashboard"])
                return identity["address"], p.pid
            except (ValueError, KeyError):
                pass
        if time.time() > deadline:
            raise RuntimeError(f"{kind} scheduler did not start in {START_TIMEOUT} s")
        time.sleep(0.05)


def start_stock_workers(procs: Procs, addr: str, n: int,
                        env: dict | None = None) -> list[subprocess.Popen]:
    """`n` x `dask worker --nthreads 1 --no-nanny`, named w0, w1, ..."""
    return [procs.start([str(BIN / "dask"), "worker", addr, "--nthreads", "1", "--no-nanny",
                         "--no-dashboard", "--name", f"w{i}"],
                        env={**os.environ, **env} if env else None)
            for i in range(n)]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(the process's own CPU, its descendants' CPU) in seconds: the live descendants and
    the children they have reaped (a graph helper's forked picklers)."""
    proc = psutil.Process(pid)
    own = sum(proc.cpu_times()[:2])
    children = 0.0
    for c in proc.children(recursive=True):
        try:
            children += sum(c.cpu_times()[:4])
        except psutil.NoSuchProcess:
            pass
    return own, children


def hwm(pid: int) -> int:
    """The process's peak RSS (VmHWM) in bytes; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss(pid: int) -> tuple[int, int]:
    """(VmHWM of the process, sum of its descendants' VmHWM) in bytes."""
    kids = sum(hwm(c.pid) for c in psutil.Process(pid).children(recursive=True))
    return hwm(pid), kids


def start_watcher(port: int) -> None:
    """`--watch`: what an open dashboard page costs the scheduler. A thread reads rask's
    dashboard event stream (the page's only connection: a picture every 0.5 s) until the
    scheduler closes it."""
    import threading
    import urllib.request

    def read():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard/events",
                                        timeout=600) as r:
                for _ in r:
                    pass
        except OSError:
            pass  # the scheduler stopped

    threading.Thread(target=read, daemon=True).start()


def one_run(kind: str, case: suite.Case, workers: str, nworkers: int, a, workdir: Path,
            built, probe: bool = False, env: dict | None = None) -> dict:
    from distributed import Client

    procs = Procs(workdir, f"{case.name}-{kind}-{workers}{nworkers}")
    report = workdir / f"zero-{time.monotonic_ns()}.json"
    stock = []
    try:
        addr, spid = start_scheduler(kind, procs, workdir, a.rask,
                                     watch=a.watch and kind == "rask", env=env)
        expect = nworkers
        if workers == "zero":
            zero = procs.start([a.rask, "zero-worker", addr, "--nworkers", str(nworkers),
                                "--nthreads", "1", "--report", str(report)])
            if probe:
                # the probe's tasks go to a zero worker of their own, so they do not
                # count in the measured one's scheduling phase
                procs.start([a.rask, "zero-worker", addr, "--name-prefix", "probe"])
                expect += 1
        else:
            stock = start_stock_workers(procs, addr, nworkers)
        with Client(addr, timeout=60) as client:
            client.wait_for_workers(expect, timeout=START_TIMEOUT)
            if workers != "zero":
                # zero workers count every task they see, so only stock runs warm up
                client.submit(operator.add, 1, 2, key="warm-up").result(timeout=60)
            if a.plugin:
                register_counter(client)
            prober = start_probe(addr, workdir) if probe else None
            cpu0 = cpu_seconds(spid)
            t0_unix, t0 = time.time(), time.perf_counter()
            result = case.run(client, built)
            wall = time.perf_counter() - t0
            if a.plugin:
                # rask's plugin runs beside the scheduler: when it has seen every task
                # finish (three transitions each) is the plugin's own finish line
                seen = wait_counted(client, 3 * (case.tasks or 0))
                plugin_wall = time.perf_counter() - t0
            cpu1 = cpu_seconds(spid)
            rss = peak_rss(spid)
            # with every task of the graph still known (the client holds the result)
            rss_now = psutil.Process(spid).memory_info().rss
            latency = stop_probe(prober) if prober else None
        out = {"wall": wall, "cpu": cpu1[0] - cpu0[0], "cpu_helpers": cpu1[1] - cpu0[1],
               "rss": rss[0], "rss_helpers": rss[1], "rss_end": rss_now}
        if stock:
            out["rss_worker"] = max(hwm(p.pid) for p in stock)
        if latency is not None:
            out["probe"] = latency
        if a.plugin:
            out["plugin_wall"], out["plugin_transitions"] = plugin_wall, seen
        if workers == "zero":
            procs.stop(zero)
            if zero.returncode != 0:
                raise RuntimeError(f"zero worker exited with {zero.returncode}")
            rep = json.loads(report.read_text())
            out["phase"] = rep["span_s"]
            out["tasks"] = rep["tasks"]
            # before the phase: client submission and graph materialization
            out["to_first"] = rep["first_compute"] - t0_unix
        elif case.expected is not None:
            out["correct"] = bool(equal(result, case.expected(built)))
        return out
    finally:
        procs.stop_all()


def register_counter(client) -> None:
    """`--plugin`: a transition-counting scheduler plugin, pickled by value."""
    import cloudpickle

    import counting_plugin

    cloudpickle.register_pickle_by_value(counting_plugin)
    client.register_plugin(counting_plugin.TransitionCounter())


def wait_counted(client, expected: int, timeout: float = 120) -> int:
    """Polls the counter until it has seen `expected` transitions; returns its count."""
    import counting_plugin

    deadline = time.monotonic() + timeout
    while True:
        seen = client.run_on_scheduler(counting_plugin.count)
        if seen >= expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.005)


PROBE = r"""
import sys, time, operator
from distributed import Client
c = Client(sys.argv[1], timeout=60)
c.submit(operator.add, 0, 1, key="probe-warm", workers=["probe-0"]).result()
open(sys.argv[2], "w").close()
i = 0
while True:
    t0, t = time.time(), time.perf_counter()
    c.submit(operator.add, i, 1, pure=False, workers=["probe-0"]).result()
    print(f"{t0:.3f} {time.perf_counter() - t:.4f}", flush=True)
    i += 1
    time.sleep(0.01)
"""


def start_probe(addr: str, workdir: Path):
    """Another client that submits one small task after another and tracks the slowest."""
    ready = workdir / f"probe-{time.monotonic_ns()}"
    out = open(workdir / f"probe-{time.monotonic_ns()}.out", "w+")
    p = subprocess.Popen([sys.executable, "-c", PROBE, addr, str(ready)], stdout=out,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while not ready.exists():
        if time.time() > deadline or p.poll() is not None:
            raise RuntimeError("latency probe did not start")
        time.sleep(0.05)
    return p, out


def stop_probe(prober) -> dict:
    p, out = prober
    time.sleep(0.5)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(10)
    out.seek(0)
    # one line per submit: when it was sent (unix time) and how long it took
    waits = [float(line.split()[1]) for line in out.read().splitlines() if line.strip()]
    if not waits:
        return {"worst_s": float("inf"), "submits": 0}
    return {"worst_s": max(waits), "submits": len(waits),
            "over_200ms": sum(w > 0.2 for w in waits)}


def equal(a, b) -> bool:
    import numpy as np
    import pandas as pd

    if isinstance(a, np.ndarray):
        return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-9))
    if isinstance(a, pd.Series):
        try:
            pd.testing.assert_series_equal(a.sort_index(), b.sort_index(), check_exact=False)
            return True
        except AssertionError:
            return False
    if isinstance(a, (float, np.floating)) or isinstance(b, (float, np.floating)):
        return bool(np.isclose(a, b, rtol=1e-9))
    return a == b


def run_case(case: suite.Case, workers: str, nworkers: int, a, workdir: Path, rounds: int,
             probe: bool = False, config: str = "default") -> dict:
    built = case.build()
    runs = {k: [] for k in KINDS}
    env = CONFIGS[config]
    for r in range(rounds):
        for kind in a.schedulers:
            out = one_run(kind, case, workers, nworkers, a, workdir, built, probe, env)
            runs[kind].append(out)
            phase = (f" (to first task {out['to_first']:.3f} s, phase {out['phase']:.3f} s)"
                     if "phase" in out else "")
            plugin = (f" plugin saw {out['plugin_transitions']} transitions by "
                      f"{out['plugin_wall']:.3f} s" if "plugin_wall" in out else "")
            print(f"  {case.name} [{workers} x{nworkers}, {config}] round {r + 1} {kind}: wall "
                  f"{out['wall']:.3f} s{phase} cpu {out['cpu'] + out['cpu_helpers']:.2f} s "
                  f"rss {out['rss'] / 2**20:.0f} MiB{plugin}", flush=True)
    return {"case": case.name, "about": case.about, "workers": workers, "nworkers": nworkers,
            "tasks": case.tasks, "config": config, "runs": runs}


# the scheduler's environment per config of the users' part
CONFIGS = {"default": None,
           "saturation-inf": {"DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "inf"}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rask", default=str(REPO / "target" / "release" / "rask"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--zero-workers", type=int, default=8,
                    help="fake workers for the scheduler-only suite")
    ap.add_argument("--stock-workers", type=int, default=2)
    ap.add_argument("--scaling", default="1,10,100,1000",
                    help="zero-worker counts for the throughput plot")
    ap.add_argument("--scaling-case", default="merge-20k")
    ap.add_argument("--only", default="",
                    help="comma-separated parts: zero,stock,users,million,scaling "
                         "(default: all)")
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--schedulers", default="dask,rask", type=lambda s: s.split(","),
                    help="for quick looks at one side; the report needs both")
    ap.add_argument("--watch", action="store_true",
                    help="keep rask's live dashboard open in every rask run (its event "
                         "stream read by a thread), to measure what watching costs")
    ap.add_argument("--plugin", action="store_true",
                    help="register a transition-counting scheduler plugin in every run "
                         "(benchmarks/counting_plugin.py); runs report when it saw every "
                         "task finish")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results.json"))
    ap.add_argument("--write", default=str(REPO / "BENCHMARKS.md"),
                    help="markdown report to write ('' to skip)")
    ap.add_argument("--keep-logs", action="store_true",
                    help="keep the processes' logs (and the probe's submits) after a run "
                         "that succeeds too")
    a = ap.parse_args()
    parts = (set(filter(None, a.only.split(",")))
             or {"zero", "stock", "users", "million", "scaling"})
    wanted = set(filter(None, a.cases.split(",")))

    def pick(cs):
        return [c for c in cs if not wanted or c.name in wanted]

    results = {"meta": meta(a), "zero": [], "stock": [], "users": [], "million": [],
               "scaling": []}

    def save():
        # after every case, so an interrupted run keeps what it measured
        Path(a.json).write_text(json.dumps(results, indent=1))
    # the processes' logs stay when a run fails, for its post-mortem
    workdir = Path(tempfile.mkdtemp(prefix="rask-bench-"))
    try:
        if "zero" in parts:
            print(f"== scheduler alone: {a.zero_workers} zero workers", flush=True)
            for case in pick(suite.zero_worker_suite()):
                results["zero"].append(run_case(case, "zero", a.zero_workers, a, workdir,
                                                a.rounds))
                save()
        if "stock" in parts:
            print(f"== stock workers: {a.stock_workers} x dask worker --nthreads 1", flush=True)
            for case in pick(suite.stock_worker_suite()):
                results["stock"].append(run_case(case, "stock", a.stock_workers, a, workdir,
                                                 a.rounds))
                save()
        if "users" in parts:
            for config in CONFIGS:
                print(f"== users' graphs: {a.stock_workers} x dask worker --nthreads 1, "
                      f"{config} config", flush=True)
                for case in pick(suite.users_suite()):
                    results["users"].append(run_case(case, "stock", a.stock_workers, a,
                                                     workdir, a.rounds, config=config))
                    save()
        if "million" in parts:
            print("== 1M tasks on zero workers, with a second client submitting", flush=True)
            for case in pick([suite.million()]):
                results["million"].append(run_case(case, "zero", a.zero_workers, a, workdir,
                                                   a.rounds, probe=True))
                save()
        if "scaling" in parts:
            case = suite.by_name()[a.scaling_case]
            for n in [int(x) for x in a.scaling.split(",")]:
                print(f"== scaling: {case.name} on {n} zero workers", flush=True)
                results["scaling"].append(run_case(case, "zero", n, a, workdir, a.rounds))
                save()
        save()
        print(f"wrote {a.json}")
    except BaseException:
        print(f"logs of the runs kept in {workdir}", file=sys.stderr)
        raise
    if a.keep_logs:
        print(f"logs of the runs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if a.write:
        import report

        report.write(results, Path(a.write), REPO / "benchmarks" / "scaling.png")
        print(f"wrote {a.write}")
    return 0


def meta(a) -> dict:
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    import distributed

    return {"date": time.strftime("%Y-%m-%d"), "commit": commit + ("+dirty" if dirty else ""),
            "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
                       f"{platform.machine()}",
            "distributed": distributed.__version__, "rounds": a.rounds,
            "command": "benchmarks/run " + " ".join(sys.argv[1:])}


if __name__ == "__main__":
    sys.exit(main())
