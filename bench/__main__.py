"""`python -m bench [--quick] [--out DIR] [--only W1,W3,...]`: run the workloads, print one table.

Results go to bench/out/ unless --out says otherwise (bench/out/ is ignored by git).

Every row compares hpscaler with a baseline or a bound measured in the same run. See BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from bench.common import Result
from bench.report import machine, markdown_table, notes, plot, text_table, write_json

DEFAULT_OUT = Path("bench/out")  # in .gitignore: a run never overwrites tracked files

WORKLOADS = {
    "W1": "bench.w1_throughput",
    "W2": "bench.w2_packing",
    "W3": "bench.w3_latency",
    "W4": "bench.w4_interruptions",
    "W5": "bench.w5_consolidation",
    "W6": "bench.w6_memory",
    "W7": "bench.w7_hard_mix",
    "W8": "bench.w8_consolidation_spread",
    "big": "bench.big_inputs",
    "scaling": "bench.scaling",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke test, under a minute)")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"write results.json, table.md and scaling.png here (default {DEFAULT_OUT}, untracked by git)",
    )
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(WORKLOADS)}")
    args = parser.parse_args(argv)
    chosen = [w.strip() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {list(WORKLOADS)}")
    info = machine()
    print(
        f"hpscaler benchmarks ({'quick' if args.quick else 'full'}) on {info['nproc']} x {info['cpu']}, "
        f"Python {info['python']}, {info['date']}, commit {info['commit']}",
        flush=True,
    )
    results: list[Result] = []
    started = time.perf_counter()
    for name in chosen:
        print(f"{name} ...", flush=True)
        t0 = time.perf_counter()
        load_before = os.getloadavg()[0]
        result: Result = importlib.import_module(WORKLOADS[name]).run(quick=args.quick)
        result.seconds = time.perf_counter() - t0
        result.load = (load_before, os.getloadavg()[0])
        results.append(result)
    rows = [r for res in results for r in res.rows]
    print()
    print(text_table(rows))
    print()
    print(notes(rows))
    loads = ", ".join(f"{r.name} {r.load[0]:.1f}-{r.load[1]:.1f}" for r in results)
    print(f"\n1-minute load average around each workload ({info['nproc']} CPUs): {loads}")
    missed = [r for r in rows if r.met is False]
    print(
        f"\n{len(rows)} rows, {sum(1 for r in rows if r.met)} targets met, {len(missed)} missed; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "results.json", results, args.quick)
        (args.out / "table.md").write_text(
            markdown_table(rows) + "\n\n" + notes(rows) + "\n", encoding="utf-8"
        )
        if plot(args.out / "scaling.png", results):
            print(
                f"wrote {args.out / 'results.json'}, {args.out / 'table.md'} and {args.out / 'scaling.png'}"
            )
        else:
            print(f"wrote {args.out / 'results.json'} and {args.out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
