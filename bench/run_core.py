#!/usr/bin/env python3
"""Run the core runtime benchmark side by side and print a Markdown table.

Implementations (columns):
  asyncio-cpp  <build-dir>/bench/bench_core
  asyncio      /usr/bin/python3 bench/peers/core_asyncio.py
  uvloop       /usr/bin/python3 bench/peers/core_asyncio.py --uvloop
  asio         <build-dir>/bench/bench_core_asio

Each (round, workload) runs every implementation once, in a fresh process, interleaved
(A B C D, A B C D, ...); each cell of the table is the median over the rounds.

Examples:
  bench/run_core.py --build-dir build-bench                 # full run, 3 rounds
  bench/run_core.py --build-dir build-bench --quick         # smoke test, small N
  bench/run_core.py --impls asyncio,uvloop,asio --build-dir build-bench

Exits non-zero if any program fails (non-zero exit, timeout, or missing result).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
IMPLS = ("asyncio-cpp", "asyncio", "uvloop", "asio")
GROUPS = ("sleep_1m", "create_await", "pingpong", "call_soon", "queue_pingpong", "lock_contention",
          "to_thread")
GROUP_BENCHES = {
    "sleep_1m": ("sleep_1m_wall", "sleep_1m_rss", "sleep_1m_rss_base", "sleep_1m_n"),
    "create_await": ("create_await_task",),
    "pingpong": ("sleep0_pingpong",),
    "call_soon": ("call_soon_chain", "call_soon_batch"),
    "queue_pingpong": ("queue_pingpong",),
    "lock_contention": ("lock_contention",),
    "to_thread": ("to_thread_latency", "to_thread_throughput"),
}
# Sizes of the primitives/threads workloads: same for every implementation; (default, --quick).
SIZES = {
    "queue_n": (500_000, 20_000),      # queue_pingpong round trips (2 messages each)
    "lock_tasks": (1_000, 1_000),      # lock_contention tasks
    "lock_iters": (1_000, 20),         # lock_contention iterations per task
    "thread_n": (20_000, 2_000),       # to_thread latency: sequential calls
    "thread_batch": (10_000, 2_000),   # to_thread throughput: concurrent calls
}
# Table rows: bench, label, display unit, scale applied to the raw value, higher-is-better.
ROWS = (
    ("create_await_task", "create + await task (sequential)", "ns/task", 1.0, False),
    ("sleep_1m_wall", "{n} tasks × sleep(1 s), wall", "s", 1.0, False),
    ("sleep_1m_rss", "{n} tasks × sleep(1 s), peak RSS", "MB", 1.0, False),
    ("sleep_1m_rss_per_task", "{n} tasks × sleep(1 s), (peak − base RSS) / task", "KB/task", 1.0, False),
    ("sleep0_pingpong", "sleep(0) ping-pong, 2 tasks", "ns/switch", 1.0, False),
    ("call_soon_chain", "call_soon chain (self re-scheduling)", "M callbacks/s", 1e-6, True),
    ("call_soon_batch", "call_soon batch (N scheduled up front)", "M callbacks/s", 1e-6, True),
    ("queue_pingpong", "queue ping-pong, 2 tasks × 2 queues, {queue_n} round trips", "ns/msg", 1.0, False),
    ("lock_contention", "Lock contention, {lock_tasks} tasks × {lock_iters} (acquire; sleep(0); release)",
     "ns/acquire", 1.0, False),
    ("to_thread_latency", "to_thread(f) latency, {thread_n} sequential calls", "µs/call", 1.0, False),
    ("to_thread_throughput", "to_thread(f) throughput, {thread_batch} concurrent calls gathered",
     "k calls/s", 1e-3, True),
)


def commands(args, n, sleep_n_py):
    bdir = os.path.abspath(args.build_dir) if args.build_dir else None
    peer = os.path.join(HERE, "peers", "core_asyncio.py")
    cmds = {
        "asyncio-cpp": [os.path.join(bdir, "bench", "bench_core")] if bdir else None,
        "asyncio": [args.python, peer],
        "uvloop": [args.python, peer, "--uvloop"],
        "asio": [os.path.join(bdir, "bench", "bench_core_asio")] if bdir else None,
    }
    out = {}
    for impl in args.impls:
        cmd = cmds[impl]
        if cmd is None:
            sys.exit(f"run_core.py: --build-dir is required for {impl}")
        cmd = cmd + ["--n", str(n)]
        for key in SIZES:
            cmd += ["--" + key.replace("_", "-"), str(getattr(args, key))]
        if impl in ("asyncio", "uvloop") and sleep_n_py:
            cmd += ["--sleep-n", str(sleep_n_py)]
        out[impl] = cmd
    return out


def run_one(impl, cmd, group, timeout):
    """Run one program for one workload group; returns ({bench: value}, error or None)."""
    full = cmd + ["--bench", group]
    try:
        p = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return {}, f"not found: {full[0]}"
    except subprocess.TimeoutExpired:
        return {}, f"timed out after {timeout} s: {' '.join(full)}"
    values = {}
    for line in p.stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("impl") != impl:
            return values, f"{impl}: unexpected impl in output: {line}"
        values[rec["bench"]] = float(rec["value"])
    if p.returncode != 0:
        err = (p.stderr or "").strip().splitlines()[-5:]
        return values, f"{impl} {group}: exit code {p.returncode}: " + " | ".join(err)
    missing = [b for b in GROUP_BENCHES[group] if b not in values]
    if missing:
        return values, f"{impl} {group}: missing results {missing}"
    return values, None


def fmt_value(v, unit):
    if v is None:
        return "—"
    if unit in ("s",):
        return f"{v:.2f}"
    if unit in ("MB",):
        return f"{v:.0f}"
    if unit in ("KB/task",):
        return f"{v:.2f}"
    if unit in ("M callbacks/s",):
        return f"{v:.2f}"
    if unit in ("k calls/s",):
        return f"{v:.1f}"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def fmt_ratio(ours, peer, higher_better):
    if ours is None or peer is None or ours <= 0 or peer <= 0:
        return "—"
    r = ours / peer if higher_better else peer / ours
    return f"{r:.1f}×" if r >= 10 else f"{r:.2f}×"


def machine_info():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


def build_type(build_dir):
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    return line.split("=", 1)[1].strip() or "(none)"
    except OSError:
        pass
    return "?"


def peer_versions(python):
    code = ("import sys\ntry:\n import uvloop; u = uvloop.__version__\nexcept ImportError:\n u = 'missing'\n"
            "print('Python %d.%d.%d' % sys.version_info[:3], 'uvloop', u)")
    try:
        return subprocess.run([python, "-c", code], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except OSError as e:
        return f"cannot run: {e}"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", help="CMake build dir with bench/bench_core and bench/bench_core_asio")
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 3; 1 with --quick)")
    ap.add_argument("--n", type=int, default=None,
                    help="N passed to every program (default 1000000; 10000 with --quick)")
    ap.add_argument("--python-sleep-n", type=int, default=None,
                    help="smaller N for the Python peers' sleep_1m only (per-task rows then "
                         "make the comparison); default: same N as everyone")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: N=10000, 1 round, small sizes for the workloads below")
    for key, (default, quick) in SIZES.items():
        ap.add_argument("--" + key.replace("_", "-"), type=int, default=None,
                        help=f"{key} (default {default:,}; {quick:,} with --quick)")
    ap.add_argument("--impls", default=",".join(IMPLS),
                    help="comma-separated subset of: " + ", ".join(IMPLS))
    ap.add_argument("--bench", default=",".join(GROUPS),
                    help="comma-separated subset of workloads: " + ", ".join(GROUPS))
    ap.add_argument("--python", default="/usr/bin/python3",
                    help="interpreter for the Python peers (needs uvloop; default /usr/bin/python3)")
    ap.add_argument("--timeout", type=float, default=300.0, help="per-process timeout, s")
    ap.add_argument("--json", metavar="FILE", help="also write every raw result to FILE (JSON)")
    args = ap.parse_args()

    args.impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    for i in args.impls:
        if i not in IMPLS:
            ap.error(f"unknown impl {i!r}")
    groups = [g.strip() for g in args.bench.split(",") if g.strip()]
    for g in groups:
        if g not in GROUPS:
            ap.error(f"unknown workload {g!r}")
    groups.sort(key=GROUPS.index)
    n = args.n or (10_000 if args.quick else 1_000_000)
    rounds = args.rounds or (1 if args.quick else 3)
    for key, (default, quick) in SIZES.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else default)
        if getattr(args, key) <= 0:
            ap.error(f"--{key.replace('_', '-')} must be > 0")
    cmds = commands(args, n, args.python_sleep_n)
    missing = [c[0] for c in cmds.values() if not (os.path.isfile(c[0]) and os.access(c[0], os.X_OK))]
    if missing:
        print("run_core.py: missing program(s): " + ", ".join(missing)
              + "\n  build them with: cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release "
              "-DASYNCIO_BUILD_BENCH=ON && ninja -C build-bench bench_core bench_core_asio",
              file=sys.stderr)
        return 1
    versions = peer_versions(args.python) if {"asyncio", "uvloop"} & set(args.impls) else ""

    # raw[bench][impl] -> list of values over rounds
    raw = {}
    failures = []
    t_start = time.monotonic()
    for r in range(rounds):
        for g in groups:
            for impl in args.impls:
                t0 = time.monotonic()
                values, err = run_one(impl, cmds[impl], g, args.timeout)
                print(f"[round {r + 1}/{rounds}] {g:<15} {impl:<12} {time.monotonic() - t0:6.1f} s"
                      + (f"  FAILED: {err}" if err else ""), file=sys.stderr, flush=True)
                if err:
                    failures.append(err)
                for bench, v in values.items():
                    raw.setdefault(bench, {}).setdefault(impl, []).append(v)
                if "sleep_1m_rss" in values and values.get("sleep_1m_n"):
                    raw.setdefault("sleep_1m_rss_per_task", {}).setdefault(impl, []).append(
                        (values["sleep_1m_rss"] - values.get("sleep_1m_rss_base", 0.0))
                        * 1024.0 / values["sleep_1m_n"])

    def median(bench, impl):
        vs = raw.get(bench, {}).get(impl)
        return statistics.median(vs) if vs else None

    peers = [i for i in args.impls if i != "asyncio-cpp"]
    ours = "asyncio-cpp" in args.impls
    sleep_ns = {impl: median("sleep_1m_n", impl) for impl in args.impls}
    distinct_sleep_n = {int(v) for v in sleep_ns.values() if v}
    n_label = (f"{distinct_sleep_n.pop():,}" if len(distinct_sleep_n) == 1 else "N")

    header = ["Benchmark", "Unit"] + list(args.impls)
    if ours:
        header += [f"vs {p}" for p in peers]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|"]
    for bench, label, unit, scale, higher in ROWS:
        if bench not in raw:
            continue
        meds = {impl: median(bench, impl) for impl in args.impls}
        scaled = {k: (v * scale if v is not None else None) for k, v in meds.items()}
        fmt_args = {k: f"{getattr(args, k):,}" for k in SIZES}
        row = [label.format(n=n_label, **fmt_args), unit] + [fmt_value(scaled[i], unit) for i in args.impls]
        if ours:
            row += [fmt_ratio(meds["asyncio-cpp"], meds[p], higher) for p in peers]
        lines.append("| " + " | ".join(row) + " |")

    print()
    print(f"Core runtime benchmark — N = {n:,}, median of {rounds} round(s), "
          f"{time.monotonic() - t_start:.0f} s total")
    print(f"Machine: {machine_info()}")
    if args.build_dir:
        print(f"C++ build type: {build_type(args.build_dir)} (bench_core and bench_core_asio, same flags)")
    if versions:
        print(f"Python peers: {args.python}: {versions}")
    if len(distinct_sleep_n) > 1 or (args.python_sleep_n and args.python_sleep_n != n):
        print("Note: sleep_1m used different N per implementation: "
              + ", ".join(f"{k} {int(v):,}" for k, v in sleep_ns.items() if v)
              + " — compare the per-task row.")
    print()
    print("\n".join(lines))
    print()
    if ours and peers:
        print("Ratio columns: how many times better asyncio-cpp is than that peer "
              "(>1 = asyncio-cpp faster / smaller; <1 = the peer wins).")
    if failures:
        print()
        print(f"FAILURES ({len(failures)}):")
        for f in failures:
            print(f"  - {f}")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": n, "sizes": {k: getattr(args, k) for k in SIZES}, "rounds": rounds, "machine": machine_info(), "results": raw,
                       "failures": failures}, f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
