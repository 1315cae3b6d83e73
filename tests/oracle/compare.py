"""Compares the JUnit reports of scripts/oracle: passes per file on each scheduler, and the
tests that pass on the stock scheduler but not on rask."""

import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path


def outcomes(path: Path) -> dict[tuple[str, str], str]:
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        file = case.get("classname", "").rsplit(".", 1)[-1] + ".py"
        name = case.get("name", "")
        if case.find("skipped") is not None:
            out[(file, name)] = "skipped"
        elif case.find("failure") is not None or case.find("error") is not None:
            out[(file, name)] = "failed"
        else:
            out[(file, name)] = "passed"
    return out


def main() -> None:
    work = Path(sys.argv[1])
    kinds = sys.argv[2:]
    results = {k: outcomes(work / f"{k}.xml") for k in kinds if (work / f"{k}.xml").exists()}
    if len(results) == 2:
        # a side that was interrupted (Ctrl-C still writes its report) ran fewer tests:
        # both sides are counted over the tests both ran
        both = set.intersection(*(set(r) for r in results.values()))
        for kind, res in results.items():
            if len(res) != len(both):
                print(f"{kind}: {len(res) - len(both)} test(s) not run on the other side left out")
        results = {k: {t: o for t, o in r.items() if t in both} for k, r in results.items()}
    per_file: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for kind, res in results.items():
        for (file, _), outcome in res.items():
            per_file[file][kind][outcome] += 1
    cols = list(results)
    print()
    print(f"{'file':40}" + "".join(f"{k + ' pass/fail/skip':>26}" for k in cols))
    totals = defaultdict(Counter)
    for file in sorted(per_file):
        row = f"{file:40}"
        for k in cols:
            c = per_file[file][k]
            totals[k].update(c)
            row += f"{c['passed']:>12}/{c['failed']}/{c['skipped']:<11}"
        print(row)
    row = f"{'total':40}"
    for k in cols:
        c = totals[k]
        row += f"{c['passed']:>12}/{c['failed']}/{c['skipped']:<11}"
    print(row)
    if "dask" in results and "rask" in results:
        worse = sorted(
            t for t, o in results["dask"].items() if o == "passed" and results["rask"].get(t) != "passed"
        )
        better = sorted(
            t for t, o in results["rask"].items() if o == "passed" and results["dask"].get(t) != "passed"
        )
        (work / "dask-only.txt").write_text("".join(f"{f}::{n}\n" for f, n in worse))
        print(f"\npass on dask, not on rask: {len(worse)} (list: {work / 'dask-only.txt'})")
        print(f"pass on rask, not on dask: {len(better)}")


if __name__ == "__main__":
    main()
