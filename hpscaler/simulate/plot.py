"""`hpscaler simulate --plot FILE`: the run as a picture (PNG, SVG, or an HTML page with the SVG).

Four panels over virtual time, drawn from the exact trace (`hpscaler.simulate.trace`), not from the
5-minute samples: running nodes stacked by instance group (Spot groups hatched), pending pods, the
faults (Spot interruptions with and without notice, rebalance recommendations, and the spans in
which a group had no capacity), and the cumulative cost against running the same nodes On-Demand.

matplotlib is an optional dependency: `pip install 'hpscaler[plot]'`.
"""

from __future__ import annotations

import html
import io
from bisect import bisect_right
from pathlib import Path
from typing import Any

FORMATS = (".png", ".svg", ".html")
INSTALL_HINT = "--plot needs matplotlib: pip install 'hpscaler[plot]' (or pip install matplotlib)"


class PlotError(RuntimeError):
    """The picture cannot be drawn: no matplotlib, an unknown format, or an unwritable file."""


def _times(trace: dict[str, Any]) -> list[float]:
    """Every moment the node count changes, plus the start and the end."""
    points = {0.0, float(trace["duration"])}
    for node in trace["nodes"]:
        points.update((node["start"], node["end"]))
    return sorted(points)


def node_counts(trace: dict[str, Any], times: list[float]) -> dict[str, list[int]]:
    """Running nodes of each group at each of `times` (a node counts from its start until its end)."""
    counts = {group: [0] * len(times) for group in trace["groups"]}
    for node in trace["nodes"]:
        series = counts.setdefault(node["group"], [0] * len(times))
        first = bisect_right(times, node["start"]) - 1
        last = bisect_right(times, node["end"]) - 1
        for i in range(max(first, 0), last):
            series[i] += 1
    return {g: s for g, s in counts.items() if any(s)}


def cumulative_cost(trace: dict[str, Any], times: list[float], on_demand: bool) -> list[float]:
    """Dollars spent up to each of `times`, at Spot/On-Demand prices or all at On-Demand prices."""
    key = "onDemandPricePerHour" if on_demand else "pricePerHour"
    return [
        sum(max(0.0, min(n["end"], t) - n["start"]) * n[key] for n in trace["nodes"]) / 3600.0 for t in times
    ]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotError(INSTALL_HINT) from exc
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _figure(report: dict[str, Any]) -> Any:
    plt = _pyplot()
    trace = report["trace"]
    hours = 3600.0
    times = _times(trace)
    x = [t / hours for t in times]
    fig, axes = plt.subplots(
        4, 1, figsize=(11, 9), sharex=True, gridspec_kw={"height_ratios": [3, 1.5, 1.5, 2]}
    )
    nodes_ax, pending_ax, faults_ax, cost_ax = axes
    savings = 1 - report["cost"] / report["costAllOnDemand"] if report["costAllOnDemand"] else 0.0
    fig.suptitle(
        f"{report['scenario']}: {report['description']}\n"
        f"cost \\${report['cost']:.2f} vs \\${report['costAllOnDemand']:.2f} all On-Demand "
        f"({savings:.0%} saved), {len(trace['interruptions'])} interruptions, "
        f"{len(report['violations'])} invariant violations",
        fontsize=11,
    )
    # 1. running nodes by group, stacked; Spot groups hatched
    counts = node_counts(trace, times)
    base = [0] * len(times)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (group, series) in enumerate(sorted(counts.items())):
        top = [b + s for b, s in zip(base, series, strict=True)]
        spot = trace["groups"].get(group) == "spot"
        nodes_ax.fill_between(
            x,
            base,
            top,
            step="post",
            color=colors[i % len(colors)],
            alpha=0.75,
            hatch="//" if spot else None,
            linewidth=0,
            label=f"{group} ({'Spot' if spot else 'On-Demand'})",
        )
        base = top
    nodes_ax.set_ylabel("running nodes")
    if counts:
        nodes_ax.legend(loc="upper left", fontsize=8, ncol=2)
    # 2. pending pods, at every change
    pending = trace["pending"] or [[0.0, 0]]
    px = [t / hours for t, _ in pending] + [trace["duration"] / hours]
    py = [n for _, n in pending] + [pending[-1][1]]
    pending_ax.step(px, py, where="post", color="tab:orange")
    pending_ax.fill_between(px, py, step="post", color="tab:orange", alpha=0.3)
    pending_ax.set_ylabel("pending pods")
    # 3. faults: one row per group
    groups = sorted(trace["groups"])
    row = {g: i for i, g in enumerate(groups)}
    for span in trace["capacityLosses"]:
        faults_ax.broken_barh(
            [(span["start"] / hours, (span["end"] - span["start"]) / hours)],
            (row.get(span["group"], 0) - 0.35, 0.7),
            color="0.6",
            label="no capacity",
        )
    markers = (
        ([i for i in trace["interruptions"] if i["notice"]], "v", "tab:red", "interruption, 2-min notice"),
        ([i for i in trace["interruptions"] if not i["notice"]], "X", "black", "interruption, no notice"),
        (trace["rebalances"], "o", "tab:blue", "rebalance recommendation"),
    )
    for events, marker, color, label in markers:
        if events:
            faults_ax.scatter(
                [e["t"] / hours for e in events],
                [row.get(e["group"], 0) for e in events],
                marker=marker,
                color=color,
                s=36,
                label=label,
                zorder=3,
            )
    faults_ax.set_yticks(range(len(groups)), groups, fontsize=7)
    faults_ax.set_ylim(-0.6, len(groups) + 0.4)  # a free row on top for the legend
    handles, labels = faults_ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if unique:
        faults_ax.legend(unique.values(), unique.keys(), loc="upper left", fontsize=7, ncol=4)
    faults_ax.set_ylabel("faults")
    # 4. cumulative cost
    actual = cumulative_cost(trace, times, on_demand=False)
    all_on_demand = cumulative_cost(trace, times, on_demand=True)
    cost_ax.plot(x, all_on_demand, color="0.4", linestyle="--", label="same nodes all On-Demand")
    cost_ax.plot(x, actual, color="tab:green", label="hpscaler")
    cost_ax.fill_between(x, actual, all_on_demand, color="tab:green", alpha=0.15)
    cost_ax.set_ylabel("cumulative cost ($)")
    cost_ax.set_xlabel("virtual time (hours)")
    cost_ax.legend(loc="upper left", fontsize=8)
    cost_ax.set_xlim(0, trace["duration"] / hours)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _html(report: dict[str, Any], svg: str) -> str:
    latency = report["pendingToRunningSeconds"]
    rows = [
        ("pods scheduled", f"{report['podsScheduled']}/{report['podsTotal']}"),
        (
            "pending → running p50 / p99",
            f"{latency['p50']:.0f}s / {latency['p99']:.0f}s",
        ),
        ("cost / all On-Demand", f"${report['cost']:.2f} / ${report['costAllOnDemand']:.2f}"),
        ("Spot share", f"{report['spotShare']:.0%}"),
        ("pods killed before grace period", str(report["podsKilledBeforeGracePeriod"])),
        ("invariant violations", str(len(report["violations"]))),
    ]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    title = html.escape(f"hpscaler simulate: {report['scenario']}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}</style>"
        f"</head><body><h1>{title}</h1><p>{html.escape(report['description'])}</p>"
        f"<table>{table}</table>\n{svg}\n</body></html>\n"
    )


def check_plot_target(path: str | Path) -> None:
    """Fail before a long simulation if the picture could not be drawn: format and matplotlib."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in FORMATS:
        raise PlotError(f"--plot {target}: unknown format {suffix!r}; use one of {', '.join(FORMATS)}")
    if not target.parent.is_dir():
        raise PlotError(f"--plot {target}: the folder {target.parent} does not exist")
    _pyplot()


def write_plot(report: dict[str, Any], path: str | Path) -> Path:
    """Draw the report (it must carry a `trace`) into `path`; the format follows the suffix."""
    target = Path(path)
    suffix = target.suffix.lower()
    check_plot_target(target)
    if "trace" not in report:
        raise PlotError("the report has no trace; run the simulation with trace=True")
    fig = _figure(report)
    plt = _pyplot()
    try:
        if suffix == ".html":
            buffer = io.StringIO()
            fig.savefig(buffer, format="svg")
            svg = buffer.getvalue()
            svg = svg[svg.index("<svg") :]  # drop the XML prolog and DOCTYPE inside HTML
            target.write_text(_html(report, svg), encoding="utf-8")
        else:
            fig.savefig(target, format=suffix[1:], dpi=110)
    except OSError as exc:
        raise PlotError(f"--plot {target}: cannot write the file: {exc}") from exc
    finally:
        plt.close(fig)
    return target
