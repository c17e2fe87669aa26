#!/usr/bin/python3
"""Runs the subprocess benchmark matrix in one run and prints ratios (bench/subprocess/README.md).

  spawn-seq   1,000 x spawn-and-wait of /bin/true, one after the other
  spawn-50    1,000 x spawn-and-wait of /bin/true, 50 at once
  pipe        1 GiB into `cat` and back with communicate()
  baseline    `cat FILE | cat > /dev/null` on a 1 GiB file in /dev/shm (the machine's pipe floor)

Each cell is the best of --reps runs (the machine is shared: the best run is the least
disturbed). Usage: bench/subprocess/run_subprocess.py --build-dir build/bench [--reps 3]
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"  # Debian's interpreter: it has python3-uvloop


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def best(fn, reps):
    return min(fn() for _ in range(reps))


def baseline(size, reps):
    path = "/dev/shm/asyncio_cpp_subprocess_bench"
    with open(path, "wb") as f:
        block = b"x" * (1 << 20)
        for _ in range(size >> 20):
            f.write(block)

    def once():
        start = time.perf_counter()
        subprocess.run(f"cat {path} | cat > /dev/null", shell=True, check=True)
        return time.perf_counter() - start

    try:
        return best(once, reps)
    finally:
        os.unlink(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default="build/bench")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--bytes", type=int, default=1 << 30)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    bench = os.path.join(args.build_dir, "bench", "subprocess")
    ours = os.path.join(bench, "subprocess_ours")
    boost = os.path.join(bench, "subprocess_boost")
    py = os.path.join(HERE, "peers", "subprocess_asyncio.py")

    peers = {
        "asyncio": lambda mode, *a: [PY, py, mode, *a],
        "uvloop": lambda mode, *a: [PY, py, mode, *a, "--uvloop"],
    }
    if os.path.exists(boost):
        peers["boost.process"] = lambda mode, *a: [boost, mode, *[x for x in a if not x.startswith("--")]]
    if os.path.exists(ours):
        peers["ours"] = lambda mode, *a: [ours, mode, *[x for x in a if not x.startswith("--")]]

    cases = {
        "spawn-seq": ("spawn", ["--n", str(args.n), "--concurrency", "1"]),
        "spawn-50": ("spawn", ["--n", str(args.n), "--concurrency", "50"]),
        "pipe": ("pipe", ["--bytes", str(args.bytes)]),
    }
    results = {}
    for case, (mode, flags) in cases.items():
        for peer, make in peers.items():
            if peer in ("boost.process", "ours"):
                argv = make(mode, *[flags[i + 1] for i in range(0, len(flags), 2)])
            else:
                argv = make(mode, *flags)
            results[(case, peer)] = best(lambda: run_json(argv), args.reps)
            print(f"{case:10} {peer:14} {results[(case, peer)]:.3f} s", file=sys.stderr)
    floor = baseline(args.bytes, args.reps)
    print(f"{'pipe':10} {'cat | cat':14} {floor:.3f} s", file=sys.stderr)

    print("\n| case | " + " | ".join(peers) + " |")
    print("|---|" + "---:|" * len(peers))
    for case, (mode, _) in cases.items():
        unit = (lambda s: f"{args.n / s:,.0f}/s") if mode == "spawn" else (lambda s: f"{args.bytes / s / 1e6:,.0f} MB/s")
        print(f"| {case} | " + " | ".join(unit(results[(case, p)]) for p in peers) + " |")
    print(f"\npipe floor (`cat file | cat > /dev/null`): {args.bytes / floor / 1e6:,.0f} MB/s")
    if "ours" in peers:
        for case in cases:
            for p in peers:
                if p != "ours":
                    print(f"{case}: ours is {results[(case, p)] / results[(case, 'ours')]:.2f}x {p}")
        print(f"pipe: ours reaches {floor / results[('pipe', 'ours')] * 100:.0f}% of the floor")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": {f"{c}/{p}": s for (c, p), s in results.items()}, "floor": floor}, f, indent=1)


if __name__ == "__main__":
    main()
