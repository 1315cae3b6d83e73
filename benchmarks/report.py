"""Turns `benchmarks/results.json` into BENCHMARKS.md and `benchmarks/scaling.png`.

    .venv/bin/python benchmarks/report.py [results.json]   # rewrite the report only

The prose that explains the numbers lives in `benchmarks/analysis.md` and is appended as is.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def med(runs: list[dict], field: str) -> float:
    return statistics.median(r[field] for r in runs)


def tasks_of(entry: dict) -> int:
    if entry.get("tasks"):
        return entry["tasks"]
    counted = [r["tasks"] for k in ("rask", "dask") for r in entry["runs"][k] if "tasks" in r]
    return max(counted) if counted else 0


def secs(x: float) -> str:
    return f"{x:.3f} s" if x >= 0.1 else f"{x * 1000:.1f} ms"


def mib(x: float) -> str:
    return f"{x / 2**20:,.0f} MiB"


def us(x: float) -> str:
    return f"{x * 1e6:,.1f} µs"


def zero_table(entries: list[dict]) -> list[str]:
    out = [
        "| case | tasks | scheduling phase dask | rask | **dask/rask** | rask per task "
        "| wall dask | rask | **dask/rask** | sched. CPU/task dask | rask (+helpers) "
        "| peak RSS dask | rask (+helpers) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for e in entries:
        d, r, n = e["runs"]["dask"], e["runs"]["rask"], tasks_of(e)
        pd, pr, wd, wr = med(d, "phase"), med(r, "phase"), med(d, "wall"), med(r, "wall")
        out.append(
            f"| {e['case']} | {n:,} | {secs(pd)} | {secs(pr)} | **{pd / pr:.1f}×** "
            f"| {us(pr / n)} | {secs(wd)} | {secs(wr)} | **{wd / wr:.1f}×** "
            f"| {us(med(d, 'cpu') / n)} | {us(med(r, 'cpu') / n)} "
            f"(+{us(med(r, 'cpu_helpers') / n)}) | {mib(med(d, 'rss'))} "
            f"| {mib(med(r, 'rss'))} (+{mib(med(r, 'rss_helpers'))}) |")
    return out


def stock_table(entries: list[dict]) -> tuple[list[str], float]:
    out = [
        "| case | wall dask | rask | **dask/rask** | results equal to sync | sched. CPU dask "
        "| rask (+helpers) | peak RSS dask | rask |",
        "|---|--:|--:|--:|---|--:|--:|--:|--:|",
    ]
    ratios = []
    for e in entries:
        d, r = e["runs"]["dask"], e["runs"]["rask"]
        wd, wr = med(d, "wall"), med(r, "wall")
        ratios.append(wd / wr)
        ok = all(x.get("correct", True) for x in d + r)
        out.append(
            f"| {e['case']} | {secs(wd)} | {secs(wr)} | **{wd / wr:.2f}×** "
            f"| {'yes' if ok else '**NO**'} | {med(d, 'cpu'):.2f} s "
            f"| {med(r, 'cpu'):.2f} s (+{med(r, 'cpu_helpers'):.2f} s) "
            f"| {mib(med(d, 'rss'))} | {mib(med(r, 'rss'))} |")
    geo = math.exp(statistics.mean(math.log(x) for x in ratios)) if ratios else float("nan")
    return out, geo


def users_table(entries: list[dict]) -> list[str]:
    """One row per case: Dask's default config beside `worker-saturation: inf`."""
    out = [
        "| case | default: dask | rask | **dask/rask** | largest worker's peak RSS dask "
        "| rask | saturation inf: dask | rask | **dask/rask** | results equal to sync |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    by = {(e["case"], e.get("config", "default")): e for e in entries}
    for name in dict.fromkeys(e["case"] for e in entries):
        cells, ok = [], True
        for config in ("default", "saturation-inf"):
            e = by.get((name, config))
            if e is None:
                cells += ["", "", ""] + (["", ""] if config == "default" else [])
                continue
            d, r = e["runs"]["dask"], e["runs"]["rask"]
            wd, wr = med(d, "wall"), med(r, "wall")
            ok = ok and all(x.get("correct", True) for x in d + r)
            cells += [secs(wd), secs(wr), f"**{wd / wr:.2f}×**"]
            if config == "default":
                cells += [mib(med(d, "rss_worker")), mib(med(r, "rss_worker"))]
        out.append(f"| {name} | " + " | ".join(cells) + f" | {'yes' if ok else '**NO**'} |")
    return out


def million_table(entries: list[dict]) -> list[str]:
    out = []
    for e in entries:
        d, r, n = e["runs"]["dask"], e["runs"]["rask"], tasks_of(e)
        wd, wr = med(d, "wall"), med(r, "wall")
        out += [
            f"{e['about']} ({n:,} tasks):",
            "",
            "| | dask | rask | dask/rask |",
            "|---|--:|--:|--:|",
            f"| wall, submission to result | {secs(wd)} | {secs(wr)} | **{wd / wr:.1f}×** |",
            f"| scheduling phase | {secs(med(d, 'phase'))} | {secs(med(r, 'phase'))} "
            f"| {med(d, 'phase') / med(r, 'phase'):.1f}× |",
            f"| slowest small `submit` of a second client during it "
            f"| {secs(max(x['probe']['worst_s'] for x in d))} "
            f"| {secs(max(x['probe']['worst_s'] for x in r))} | |",
            f"| scheduler CPU | {med(d, 'cpu'):.1f} s | {med(r, 'cpu'):.1f} s "
            f"(+{med(r, 'cpu_helpers'):.1f} s helpers) | |",
            f"| scheduler peak RSS | {mib(med(d, 'rss'))} | {mib(med(r, 'rss'))} | |",
            f"| peak RSS per task | {med(d, 'rss') / n:,.0f} B | {med(r, 'rss') / n:,.0f} B | |",
            f"| RSS when the result arrived (every task still known) | {mib(med(d, 'rss_end'))} "
            f"| {mib(med(r, 'rss_end'))} | |",
            f"| that per task | {med(d, 'rss_end') / n:,.0f} B | {med(r, 'rss_end') / n:,.0f} B | |",
            f"| graph helpers' peak RSS | | {mib(med(r, 'rss_helpers'))} | |",
            "",
        ]
    return out


def scaling(entries: list[dict], png: Path) -> list[str]:
    if not entries:
        return []
    rows = []
    for e in entries:
        n = tasks_of(e)
        rows.append((e["nworkers"], n / med(e["runs"]["dask"], "phase"),
                     n / med(e["runs"]["rask"], "phase")))
    plot(rows, entries[0]["case"], png)
    out = [f"Throughput of {entries[0]['case']} in the scheduling phase (tasks/s, median):", "",
           "| zero workers | dask | rask | dask/rask |", "|--:|--:|--:|--:|"]
    out += [f"| {w:,} | {d:,.0f} | {r:,.0f} | {r / d:.1f}× |" for w, d, r in rows]
    from_ten = [r for w, _, r in rows if w >= 10]
    if len(from_ten) > 1:
        drop = 1 - rows[-1][2] / max(from_ten)
        out += ["", f"rask's throughput at {rows[-1][0]:,} workers is {drop * 100:.0f}% below "
                "its best at 10 or more workers."]
    out += ["", f"![throughput against zero workers]({png.relative_to(HERE.parent)})"]
    return out


def plot(rows, case: str, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    ws = [w for w, _, _ in rows]
    ax.plot(ws, [d for _, d, _ in rows], "o-", label="dask scheduler 2026.8.0")
    ax.plot(ws, [r for _, _, r in rows], "s-", label="rask scheduler")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("zero workers (1 thread each)")
    ax.set_ylabel("tasks/s in the scheduling phase")
    ax.set_title(f"{case}: scheduler throughput against cluster size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def write(results: dict, out: Path, png: Path) -> None:
    m = results["meta"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `benchmarks/run`, which runs `dask scheduler` and `rask scheduler` side by "
        "side in one invocation, alternating A B A B for every case, each run with a fresh "
        "scheduler and fresh workers, and reports medians. Benchmarks are not tests and do not "
        "run in CI. What each column means, and where the time goes, is explained below the "
        "tables.",
        "",
        f"Run: `{m['command']}` on {m['date']}, commit {m['commit']}, {m['machine']}, "
        f"distributed {m['distributed']}, {m['rounds']} rounds per case."
        + (f" {m['note']}" if m.get("note") else ""),
        "",
    ]
    if results["zero"]:
        lines += ["## The scheduler alone: zero workers", "",
                  "`rask zero-worker` plays the workers: every `compute-task` is finished at "
                  "once. The scheduling phase runs from its first `compute-task` to its last "
                  "`task-finished`; wall time runs from submitting the graph to the result.",
                  ""]
        lines += zero_table(results["zero"]) + [""]
    if results["stock"]:
        table, geo = stock_table(results["stock"])
        lines += ["## Stock Python workers", "",
                  "Two `dask worker --nthreads 1 --no-nanny`; results are compared with "
                  "`scheduler=\"sync\"`.", ""]
        lines += table + ["", f"Geometric mean of dask/rask: **{geo:.2f}×**.", ""]
    if results.get("users"):
        lines += ["## Users' graphs on stock workers", "",
                  "The same two workers; each case timed from submission to the result "
                  "(the delayed cases from building their calls on the client, so that "
                  "construction is in the time), with Dask's default config and again with "
                  "`worker-saturation: inf` given to both schedulers.", ""]
        lines += users_table(results["users"]) + [""]
    if results["million"]:
        lines += ["## One million tasks", ""] + million_table(results["million"])
    if results["scaling"]:
        lines += ["## Throughput against cluster size", ""] + scaling(results["scaling"], png)
        lines += [""]
    analysis = HERE / "analysis.md"
    if analysis.exists():
        lines += [analysis.read_text().rstrip(), ""]
    out.write_text("\n".join(lines))


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.json"
    write(json.loads(src.read_text()), HERE.parent / "BENCHMARKS.md", HERE / "scaling.png")
