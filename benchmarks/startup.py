"""Start-up time, stock Dask against rask, side by side in one run:

- ``scheduler``: from starting ``dask scheduler`` / ``rask scheduler`` (the CLI) to its
  scheduler file having an address;
- ``local-cluster``: ``distributed.LocalCluster(n_workers=2, threads_per_worker=1)`` against
  ``rask.LocalCluster(...)`` with the same arguments, constructor call to return (the workers
  are up), in this process;
- ``first-result``: the same, then a ``Client`` and a small ``dask.dataframe`` groupby
  computed on it, constructor call to the result (a graph that arrives this early waits for
  rask's graph helper to import dask.dataframe, which the stock scheduler has already).

Rounds alternate dask and rask so drift hits both; medians and the ratio dask/rask are
printed. ``rask`` is the installed package's command unless ``--rask PATH`` (or
``$RASK_BIN``) names another build.

    .venv/bin/python benchmarks/startup.py --rounds 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def time_scheduler_cli(argv: list[str], workdir: Path) -> float:
    scheduler_file = workdir / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    with open(workdir / "scheduler.log", "ab") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*argv, "--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=workdir,
        )
        try:
            deadline = started + 60
            while True:
                try:
                    if json.loads(scheduler_file.read_text()).get("address"):
                        return time.perf_counter() - started
                except (OSError, ValueError):
                    pass
                if proc.poll() is not None or time.perf_counter() > deadline:
                    raise RuntimeError(f"{argv[0]} did not start; see {workdir}/scheduler.log")
                time.sleep(0.005)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def time_local_cluster(cls) -> float:
    started = time.perf_counter()
    cluster = cls(n_workers=2, threads_per_worker=1, dashboard_address=":0")
    seconds = time.perf_counter() - started
    cluster.close()
    return seconds


def time_first_result(cls) -> float:
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client

    df = dd.from_pandas(pd.DataFrame({"k": [i % 7 for i in range(1000)], "v": range(1000)}), npartitions=4)
    started = time.perf_counter()
    with cls(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster):
        df.groupby("k").v.sum().compute()
        seconds = time.perf_counter() - started
    return seconds


def report(name: str, dask: list[float], rask: list[float]) -> None:
    d, r = statistics.median(dask), statistics.median(rask)
    print(
        f"{name:14s} dask median {d:.3f} s (min {min(dask):.3f}, max {max(dask):.3f})   "
        f"rask median {r:.3f} s (min {min(rask):.3f}, max {max(rask):.3f})   dask/rask {d / r:.2f}x",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--rask", help="the rask binary (default: the installed package's)")
    parser.add_argument("--only", choices=["scheduler", "local-cluster", "first-result"])
    args = parser.parse_args()
    if args.rask:
        os.environ["RASK_BIN"] = str(Path(args.rask).resolve())
    import distributed

    import rask

    rask_bin = rask.find_rask_bin()
    dask_cli = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    print(f"dask: {dask_cli} (distributed {distributed.__version__}); rask: {rask_bin}; {args.rounds} rounds")
    with tempfile.TemporaryDirectory(prefix="rask-startup-") as tmp:
        workdir = Path(tmp)
        cases = {
            "scheduler": (
                lambda: time_scheduler_cli([dask_cli, "scheduler"], workdir),
                lambda: time_scheduler_cli([rask_bin, "scheduler", "--python", sys.executable], workdir),
            ),
            "local-cluster": (
                lambda: time_local_cluster(distributed.LocalCluster),
                lambda: time_local_cluster(rask.LocalCluster),
            ),
            "first-result": (
                lambda: time_first_result(distributed.LocalCluster),
                lambda: time_first_result(rask.LocalCluster),
            ),
        }
        for name, (run_dask, run_rask) in cases.items():
            if args.only in (None, name):
                dask_times, rask_times = [], []
                for _ in range(args.rounds):  # alternating, so drift hits both
                    dask_times.append(run_dask())
                    rask_times.append(run_rask())
                report(name, dask_times, rask_times)


if __name__ == "__main__":
    main()
