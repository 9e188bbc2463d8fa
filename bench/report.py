"""The results table, the JSON file and the scaling plot."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Result, Row

COLUMNS = ("workload", "metric", "hpscaler", "baseline", "ratio", "target", "met?")


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, int) or (abs(value) >= 100 and unit not in ("x LB", "x LP", "x")):
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:,.1f}"
    elif unit in ("x LB", "x LP", "x"):
        text = f"{value:.3f}"
    elif abs(value) >= 0.1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip() if unit in ("ms", "s", "MB", "pods/s", "$/h") else text


def _ratio(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}x"
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def _met(value: bool | None) -> str:
    return "info" if value is None else ("yes" if value else "NO")


def table_rows(rows: Sequence[Row]) -> list[list[str]]:
    return [
        [
            r.workload,
            r.metric,
            _number(r.hpscaler, r.unit),
            _number(r.baseline, r.unit),
            _ratio(r.ratio),
            r.target,
            _met(r.met),
        ]
        for r in rows
    ]


def text_table(rows: Sequence[Row]) -> str:
    body = table_rows(rows)
    widths = [max(len(c), *(len(r[i]) for r in body)) for i, c in enumerate(COLUMNS)]
    line = "  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(out)


def markdown_table(rows: Sequence[Row]) -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(r) + " |" for r in table_rows(rows)]
    return "\n".join(out)


def notes(rows: Sequence[Row]) -> str:
    return "\n".join(f"- {r.workload} {r.metric}: {r.note}" for r in rows if r.note)


def machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "hpscaler"], capture_output=True, text=True, check=False
        )
        commit = head.stdout.strip() + (
            " (hpscaler/ has uncommitted changes)" if dirty.stdout.strip() else ""
        )
    except OSError:
        commit = "unknown"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": model or platform.processor(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "commit": commit,
    }


def write_json(path: Path, results: Sequence[Result], quick: bool) -> None:
    payload = {
        "machine": machine(),
        "quick": quick,
        "rows": [r.as_dict() for res in results for r in res.rows],
        "workloads": {
            res.name: {"seconds": res.seconds, "load_average": res.load, "data": res.data} for res in results
        },
    }
    path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")


def plot(path: Path, results: Sequence[Result]) -> bool:
    """Time vs pods (W1) and vs instance groups (scaling), log-log, hpscaler against the port."""
    by_name = {r.name: r for r in results}
    pods = by_name.get("W1", Result("W1")).data.get("points", [])
    groups = by_name.get("scaling", Result("scaling")).data.get("groups", [])
    if not pods and not groups:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    if pods:
        ax = axes[0]
        xs = [p["pods"] for p in pods]
        ax.plot(xs, [p["hpscaler_seconds"] for p in pods], "o-", label="hpscaler solve()")
        ax.plot(xs, [p["baseline_seconds"] for p in pods], "s--", label="Karpenter port")
        ax.plot(xs, [x / 1000 for x in xs], ":", color="grey", label="1,000 pods/s")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("pods (makeDiversePods, 400 types)")
        ax.set_ylabel("seconds")
        ax.set_title("W1: time vs pods")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    if groups:
        ax = axes[1]
        xs = [p["groups"] for p in groups]
        ax.plot(xs, [p["hpscaler_seconds"] for p in groups], "o-", label="hpscaler solve()")
        ax.plot(xs, [p["baseline_seconds"] for p in groups], "s--", label="Karpenter port")
        ax.set_xlabel(f"instance groups ({groups[0]['pods']:,} pods)")
        ax.set_ylabel("seconds")
        ax.set_title("time vs instance groups")
        ax.legend()
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
