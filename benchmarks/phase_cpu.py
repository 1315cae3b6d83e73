#!/usr/bin/env python3
"""CPU per task in the scheduling phase on zero workers, by process, from `perf` samples.

The phase's wall time on this 2-core machine moves by 30% from round to round (which task
the state task takes when, who gets the cores), so a change to the per-task path is hard
to see in it. The CPU each process spends in the phase is steadier: this runs one round
of a zero-worker case (`bench.py --schedulers rask`) with `perf record -a` over the whole
machine, takes the phase as the span between the first and the last sample in the core's
`add_to_memory` (so the rask binary needs symbols: `cargo build --profile profiling`),
and prints the scheduler's and the zero workers' CPU per task in it.

    cargo build --profile profiling
    benchmarks/phase_cpu.py --rask target/profiling/rask --case tree-15 --rounds 3

Needs `perf` (Debian's `linux-perf`) and root or `kernel.perf_event_paranoid <= 0`.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
HZ = 999
SAMPLE = re.compile(r"\s*(\S+)\s+(\d+)/\d+\s+([\d.]+):\s*\S+\s+(.*)")


def one_round(rask: Path, case: str, work: Path) -> dict:
    data = work / "perf.data"
    pidfile = work / "perf.pid"
    # bench.py starts the scheduler through this wrapper, which starts perf beside it
    wrapper = work / "rask"
    wrapper.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = scheduler ]; then\n'
        f"  perf record -a -F {HZ} -o {data} >{work}/perf.log 2>&1 &\n"
        f"  echo $! >{pidfile}\n"
        "fi\n"
        f'exec {rask} "$@"\n')
    wrapper.chmod(0o755)
    result = work / "result.json"
    try:
        subprocess.run([sys.executable, str(HERE / "bench.py"), "--rask", str(wrapper),
                        "--only", "zero", "--cases", case, "--schedulers", "rask",
                        "--rounds", "1", "--write", "", "--json", str(result)],
                       check=True, timeout=900, stdout=subprocess.DEVNULL)
    finally:
        if pidfile.exists():
            perf = int(pidfile.read_text())
            os.kill(perf, signal.SIGINT)  # perf writes its file on SIGINT
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    os.kill(perf, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
    script = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,pid,tid,time,ip,sym"],
                            capture_output=True, text=True, timeout=600).stdout
    rows = [(m[1], int(m[2]), float(m[3]), m[4]) for m in map(SAMPLE.match, script.splitlines())
            if m]
    marks = [t for _, _, t, sym in rows if "add_to_memory" in sym]
    if not marks:
        raise SystemExit("no samples in add_to_memory: does the rask binary have symbols?")
    start, end = min(marks), max(marks)
    by_pid = Counter(pid for _, pid, t, _ in rows if start <= t <= end)
    sched = Counter(pid for _, pid, _, sym in rows if "add_to_memory" in sym).most_common(1)[0][0]
    # the busiest other process: the zero workers (one process for all of them)
    zero = max((p for p in by_pid if p not in (0, sched)), key=by_pid.get, default=None)
    tasks = json.loads(result.read_text())["zero"][0]["tasks"]
    us = lambda n: n / HZ / tasks * 1e6  # noqa: E731
    return {"window_s": end - start, "tasks": tasks, "scheduler_us": us(by_pid[sched]),
            "zero_workers_us": us(by_pid[zero]) if zero else 0.0,
            "idle_share": by_pid[0] / HZ / (end - start) / os.cpu_count()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rask", type=Path, default=HERE.parent / "target" / "profiling" / "rask")
    ap.add_argument("--case", default="tree-15")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    rounds = []
    for i in range(a.rounds):
        with tempfile.TemporaryDirectory() as d:
            r = one_round(a.rask.resolve(), a.case, Path(d))
        rounds.append(r)
        print(f"round {i + 1}: phase {r['window_s']:.3f} s, {r['tasks']} tasks, CPU per task: "
              f"scheduler {r['scheduler_us']:.1f} µs, zero workers {r['zero_workers_us']:.1f} µs, "
              f"idle {r['idle_share']:.0%}", flush=True)
    print(f"median: scheduler {statistics.median(r['scheduler_us'] for r in rounds):.1f} µs, "
          f"zero workers {statistics.median(r['zero_workers_us'] for r in rounds):.1f} µs, "
          f"phase {statistics.median(r['window_s'] for r in rounds):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
