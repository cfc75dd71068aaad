"""Charts of bench/results.csv: one PNG per op under bench/plots/, median time by shape and
provider (p20–p80 as error bars, the roofline floor as a black tick), forward and forward +
backward side by side, log scale.

    python bench/plot.py [--csv bench/results.csv] [--out bench/plots] [--device H100] [--commit abc1234]

For each (op, provider, mode, shape, device) the latest row is drawn. matplotlib is optional
(``pip install matplotlib``).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("fwd", "fwd+bwd")


def latest_rows(rows, device=None, commit=None):
    """The last row of each (op, provider, mode, shape, device), after the filters."""
    keep = OrderedDict()
    for r in rows:
        if device and device.lower() not in r["device"].lower():
            continue
        if commit and not r["commit"].startswith(commit):
            continue
        keep[(r["op"], r["provider"], r["mode"], r["shape"], r["device"])] = r
    return list(keep.values())


def _float(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def plot_op(plt, op, rows, out_dir):
    shapes = list(OrderedDict.fromkeys(r["shape"] for r in rows))
    providers = list(OrderedDict.fromkeys(r["provider"] for r in rows))
    devices = sorted({r["device"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(shapes) + 4), 5.5), sharey=True)
    width = 0.8 / max(len(providers), 1)
    for ax, mode in zip(axes, MODES):
        by = {(r["provider"], r["shape"]): r for r in rows if r["mode"] == mode}
        for i, provider in enumerate(providers):
            xs, ys, lo, hi = [], [], [], []
            for j, shape in enumerate(shapes):
                r = by.get((provider, shape))
                if r is None or _float(r["median_ms"]) is None:
                    continue
                med = _float(r["median_ms"])
                xs.append(j + (i - (len(providers) - 1) / 2) * width)
                ys.append(med)
                lo.append(max(med - (_float(r["p20_ms"]) or med), 0))
                hi.append(max((_float(r["p80_ms"]) or med) - med, 0))
            if xs:
                ax.bar(xs, ys, width, yerr=[lo, hi], label=provider, capsize=2)
        for j, shape in enumerate(shapes):
            floors = [_float(by[p, shape]["floor_ms"]) for p in providers if (p, shape) in by]
            floors = [f for f in floors if f]
            if floors:
                ax.hlines(min(floors), j - 0.45, j + 0.45, colors="black", linewidth=2,
                          label="roofline floor" if j == 0 else None)
        ax.set_title(f"{op} — {mode}")
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels(shapes, rotation=25, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("median time (ms), p20–p80")
    handles, labels = axes[0].get_legend_handles_labels()
    h2, l2 = axes[1].get_legend_handles_labels()
    seen = dict(zip(labels + l2, handles + h2))
    fig.legend(seen.values(), seen.keys(), loc="upper center", ncol=min(4, len(seen)), fontsize=8)
    fig.suptitle(", ".join(devices), y=0.02, fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 0.9))
    path = os.path.join(out_dir, f"{op}.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", default=os.path.join(HERE, "results.csv"))
    p.add_argument("--out", default=os.path.join(HERE, "plots"))
    p.add_argument("--device", default=None, help="only rows whose device name contains this")
    p.add_argument("--commit", default=None, help="only rows of this commit (prefix)")
    args = p.parse_args(argv)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench/plot.py needs matplotlib: pip install matplotlib (or pip install -e '.[bench]')",
              file=sys.stderr)
        return 2
    if not os.path.exists(args.csv):
        print(f"no results file {args.csv}: run `pytest bench` on the GPU first", file=sys.stderr)
        return 1
    with open(args.csv, newline="") as f:
        rows = latest_rows(list(csv.DictReader(f)), args.device, args.commit)
    if not rows:
        print("no rows match", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    for op in OrderedDict.fromkeys(r["op"] for r in rows):
        print(plot_op(plt, op, [r for r in rows if r["op"] == op], args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
