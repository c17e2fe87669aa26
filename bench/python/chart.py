#!/usr/bin/env python3
"""Draws results.json (run_python_bench.py --json) as results.png: for each row, asyncio's and
asyncio_cpp's median against uvloop's (1.0 = uvloop; higher is better - for CPU per request
and bytes per connection the ratio is uvloop / loop). Needs python3-matplotlib.

  bench/python/chart.py bench/python/results.json bench/python/results.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def ratios(rows, loop):
    out = []
    for row, r in rows.items():
        med = r["median"]
        lower_is_better = "us/req" in row or "bytes" in row
        out.append(med["uvloop"] / med[loop] if lower_is_better else med[loop] / med["uvloop"])
    return out


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "bench/python/results.json"
    dst = sys.argv[2] if len(sys.argv) > 2 else "bench/python/results.png"
    with open(src) as f:
        data = json.load(f)
    rows = data["rows"]
    names = list(rows)
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(names) + 1.5))
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], ratios(rows, "asyncio"), height=0.4, label="asyncio (stock loop)", color="#bbbbbb")
    ax.barh([i - 0.2 for i in y], ratios(rows, "asyncio_cpp"), height=0.4, label="asyncio_cpp", color="#3b7dd8")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(list(y))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("vs uvloop (1.0 = uvloop; right is better; log scale)")
    rounds = data.get("args", {}).get("rounds")
    ax.set_title(f"Python {data['python'].split()[0]}: medians of {rounds} interleaved rounds", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main()
