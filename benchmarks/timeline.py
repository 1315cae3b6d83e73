"""Where the time goes between the scheduler and stock workers, task by task (issue 17,
item 2). Runs one case of the users' suite (default: the seed's delayed example) on a fresh
scheduler and two `dask worker --nthreads 1`, with the transition logs long enough to hold
every task, then reads the scheduler's story of every key (`get_story`, both schedulers
serve it) and each worker's transition log, and prints:

- per task, medians: dispatch (scheduler -> processing) to the worker receiving it, received
  to started, run time, finished to the scheduler's processing -> memory;
- per worker thread, the time between finishing one task and starting the next, split by
  what the next task was waiting for: the scheduler (not yet received), a dependency
  (received but not ready), or nothing (ready: the worker's own overhead).

    .venv/bin/python benchmarks/timeline.py --case seed-delayed-3k [--saturation inf]

All processes run on this machine, so their `time()` stamps are comparable.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import cases as suite  # noqa: E402

LOG_LENGTH = "2000000"


def worker_logs(dask_worker):
    return [tuple(r) for r in dask_worker.state.log]


def one(kind: str, case: suite.Case, a, workdir: Path) -> dict:
    from distributed import Client

    env = {"DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH": LOG_LENGTH}
    if a.saturation:
        env["DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION"] = a.saturation
    procs = bench.Procs(workdir, f"timeline-{kind}")
    try:
        addr, _ = bench.start_scheduler(kind, procs, workdir, a.rask, env=env)
        bench.start_stock_workers(procs, addr, 2, env=env)
        with Client(addr, timeout=60) as client:
            client.wait_for_workers(2, timeout=bench.START_TIMEOUT)
            client.submit(sum, [1, 2], key="warm-up").result(timeout=60)
            built = case.build()
            t0 = time.time()
            case.run(client, built)
            wall = time.time() - t0
            logs = client.run(worker_logs)
            keys = {r[0] for log in logs.values() for r in log if r[2] == "executing"}
            keys.discard("warm-up")
            story = client.story(*keys) if keys else []
        return {"wall": wall, "t0": t0, "workers": logs,
                "scheduler": [r[1:] for r in story if r[0] == "scheduler"]}
    finally:
        procs.stop_all()


def analyse(data: dict) -> list[str]:
    dispatch, to_memory = {}, {}
    for key, start, finish, _recs, _sid, stamp, *_ in data["scheduler"]:
        if finish == "processing":
            dispatch[key] = stamp
        elif start == "processing" and finish == "memory":
            to_memory[key] = stamp
    lags = defaultdict(list)
    gaps = defaultdict(float)
    ngaps = defaultdict(int)
    busy_total, span_total = 0.0, 0.0
    for _w, log in data["workers"].items():
        received, ready, started, ended = {}, {}, {}, {}
        for key, start, finish, *_rest, stamp in log:
            if key == "warm-up":
                continue
            if start == "compute-task":
                received.setdefault(key, stamp)
            elif finish == "ready":
                ready.setdefault(key, stamp)
            elif finish == "executing":
                started[key] = stamp
            elif start == "executing" and finish == "memory":
                ended[key] = stamp
        runs = sorted((started[k], ended[k], k) for k in ended if k in started)
        for s, e, k in runs:
            if k in dispatch and k in received:
                lags["dispatch -> worker received"].append(received[k] - dispatch[k])
            if k in received:
                lags["received -> started"].append(s - received[k])
            lags["run"].append(e - s)
            if k in to_memory:
                lags["finished -> scheduler memory"].append(to_memory[k] - e)
        busy_total += sum(e - s for s, e, _ in runs)
        if runs:
            span_total += runs[-1][1] - data["t0"]
            first_gap = runs[0][0] - data["t0"]
            gaps["before the first task"] += first_gap
        for (_, e, _), (s, _, k) in zip(runs, runs[1:]):
            gap = s - e
            if received.get(k, 0) > e:
                why = "waiting for the scheduler (next task not yet received)"
            elif ready.get(k, 0) > e:
                why = "waiting for a dependency (received, not ready)"
            else:
                why = "worker's own overhead (next task was ready)"
            gaps[why] += gap
            ngaps[why] += 1
    out = [f"wall {data['wall']:.2f} s; worker threads busy running tasks "
           f"{busy_total:.2f} s of {span_total:.2f} s ({busy_total / span_total * 100:.0f}%)",
           "", "| per task | median | 90th percentile |", "|---|--:|--:|"]
    for name, xs in lags.items():
        xs.sort()
        out.append(f"| {name} | {statistics.median(xs) * 1e3:.2f} ms "
                   f"| {xs[int(len(xs) * 0.9)] * 1e3:.2f} ms |")
    out += ["", "| worker threads idle | total | gaps |", "|---|--:|--:|"]
    for why, total in sorted(gaps.items(), key=lambda kv: -kv[1]):
        out.append(f"| {why} | {total:.2f} s | {ngaps.get(why, '')} |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="seed-delayed-3k")
    ap.add_argument("--rask", default=str(bench.REPO / "target" / "release" / "rask"))
    ap.add_argument("--schedulers", default="dask,rask")
    ap.add_argument("--saturation", default="", help="worker-saturation for both (e.g. inf)")
    a = ap.parse_args()
    case = {c.name: c for c in suite.users_suite()}[a.case]
    with tempfile.TemporaryDirectory(prefix="rask-timeline-") as wd:
        for kind in a.schedulers.split(","):
            print(f"## {kind}: {case.name}, saturation {a.saturation or 'default'}")
            print("\n".join(analyse(one(kind, case, a, Path(wd)))), "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
