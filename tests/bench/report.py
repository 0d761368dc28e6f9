"""The chart of docs/reliability.md, drawn from the figures the runs wrote (not a benchmark).

    python -m tests.bench.report --sim data/sim-1000-1999.json [--sim ...] \\
        --load data/load.json --out docs/reliability.png

`--sim`: the totals `python -m tests.sim --seeds A-B --json F` writes (several are summed,
e.g. a range run in two processes). `--load`: what `python -m tests.bench.load_bench --json F`
writes (its load part and its push throughput part; either may be missing). Four panels:
the faults the simulation injected, per kind; the verdicts the server gave and the
violations found (divergent, lost, duplicated, resurrected: the target is 0); push and pull
latency p50/p99 under load; push throughput as a ratio of raw TransactWriteItems per
concurrency level (each round, and the median), with the 0.8x target.
`make reliability` runs all of it (docs/reliability.md, "Reproduce").
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI

import matplotlib.pyplot as plt  # after the backend is chosen
from matplotlib.axes import Axes

VIOLATIONS = ("divergent", "lost", "duplicated", "resurrected")
VERDICTS = ("applied", "conflict", "rejected", "duplicate")
TARGET_RATIO = 0.8  # issue 8: push throughput >= 0.8x raw TransactWriteItems at every level


def merged_sim(paths: list[Path]) -> dict[str, Any]:
    """The totals of several runs of `python -m tests.sim --json`, summed."""
    out: dict[str, Any] = {"histories": 0, "failed": 0, "mutations": 0, "seeds": [],
                           "verdicts": Counter(), "faults": Counter(), "counts": Counter()}
    for path in paths:
        run = json.loads(path.read_text())
        for name in ("histories", "failed", "mutations"):
            out[name] += run.get(name, 0)
        for name in ("verdicts", "faults", "counts"):
            out[name].update(run.get(name) or {})
        out["seeds"].append(str(run.get("seeds", path.stem)))
    return out


def _label_bars(ax: Axes, values: list[float], fmt: str = "{:,.0f}") -> None:
    for i, v in enumerate(values):
        ax.annotate(fmt.format(v), (i, v), ha="center", va="bottom", fontsize=7,
                    xytext=(0, 1), textcoords="offset points")


def faults_panel(ax: Axes, sim: dict[str, Any]) -> None:
    faults = sorted(sim["faults"].items(), key=lambda kv: -kv[1])
    names, counts = [k for k, _ in faults], [float(v) for _, v in faults]
    ax.bar(range(len(names)), counts, color="#4c72b0")
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
    _label_bars(ax, counts)
    ax.set_ylabel("injected")
    ax.set_title(f"Simulation: faults injected ({sim['histories']:,} histories, "
                 f"seeds {', '.join(sim['seeds'])})", fontsize=9)


def outcomes_panel(ax: Axes, sim: dict[str, Any]) -> None:
    names = [f"verdict: {v}" for v in VERDICTS] + list(VIOLATIONS) + ["failed histories"]
    counts = [float(sim["verdicts"].get(v, 0)) for v in VERDICTS]
    counts += [float(sim["counts"].get(v, 0)) for v in VIOLATIONS] + [float(sim["failed"])]
    colors = ["#55a868"] * len(VERDICTS) + ["#c44e52"] * (len(VIOLATIONS) + 1)
    ax.bar(range(len(names)), counts, color=colors)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
    ax.set_yscale("symlog", linthresh=10)  # the violations (target 0) next to thousands
    _label_bars(ax, counts)
    ax.set_title(f"Simulation: {sim['mutations']:,} mutations sent; violations (red) "
                 "target 0", fontsize=9)


def latency_panel(ax: Axes, load: dict[str, Any] | None) -> None:
    if not load or not load.get("push_latency_ms"):
        ax.text(0.5, 0.5, "no load run", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    names, values = [], []
    for kind in ("push", "pull"):
        for cut in ("p50", "p99"):
            names.append(f"{kind} {cut}")
            values.append(float(load[f"{kind}_latency_ms"][cut]))
    ax.bar(range(len(names)), values, color=["#4c72b0", "#4c72b0", "#dd8452", "#dd8452"])
    ax.set_xticks(range(len(names)), names, fontsize=8)
    _label_bars(ax, values, "{:,.0f} ms")
    ax.set_ylabel("ms")
    errors = sum((load.get("errors") or {}).values())
    ax.set_title(f"Load: {load['clients']} clients, {load['servers']} servers, "
                 f"{load['seconds']:.0f} s; {load['mutations_acknowledged']:,} mutations; "
                 f"errors {errors}, 5xx {load['server_errors_5xx']}, lost {load['lost']}, "
                 f"dup. {load['duplicated']}", fontsize=9)


def throughput_panel(ax: Axes, rounds: list[dict[str, Any]]) -> None:
    if not rounds:
        ax.text(0.5, 0.5, "no throughput run", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    levels = sorted({r["concurrency"] for r in rounds})
    for i, level in enumerate(levels):
        ratios = [r["pysync"] / r["raw"] for r in rounds if r["concurrency"] == level]
        ax.scatter([i] * len(ratios), ratios, color="#4c72b0", alpha=0.6, s=18,
                   label="one round" if i == 0 else "_nolegend_")
        median = statistics.median(ratios)
        ax.hlines(median, i - 0.25, i + 0.25, color="#222222",
                  label="median" if i == 0 else "_nolegend_")
        ax.annotate(f"{median:.2f}x", (i + 0.27, median), va="center", fontsize=8)
    ax.axhline(TARGET_RATIO, color="#c44e52", linestyle="--", label=f"target {TARGET_RATIO}x")
    ax.set_xticks(range(len(levels)), [f"{level} client{'s' * (level > 1)}"
                                       for level in levels], fontsize=8)
    ax.set_xlim(-0.5, len(levels) - 0.3)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("pysync /v1/push / raw TransactWriteItems")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Push throughput next to raw TransactWriteItems, same run", fontsize=9)


def draw(sim: dict[str, Any], load_report: dict[str, Any], out: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    faults_panel(axes[0][0], sim)
    outcomes_panel(axes[0][1], sim)
    latency_panel(axes[1][0], load_report.get("load"))
    throughput_panel(axes[1][1], load_report.get("throughput") or [])
    fig.suptitle("pysync reliability: seeded simulation and load (docs/reliability.md)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sim", type=Path, action="append", required=True,
                   help="totals written by python -m tests.sim --json (repeatable)")
    p.add_argument("--load", type=Path, help="figures written by load_bench --json")
    p.add_argument("--out", type=Path, default=Path("docs/reliability.png"))
    args = p.parse_args(argv)
    load_report = json.loads(args.load.read_text()) if args.load else {}
    draw(merged_sim(args.sim), load_report, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
