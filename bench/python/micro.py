"""Loop micro-benchmarks: call_soon throughput, timer schedule+cancel, sleep(0) task switches.

    PYTHONPATH=build/py311/python /usr/bin/python3 bench/python/micro.py --loop asyncio_cpp

Prints one JSON line per benchmark: {"loop", "bench", "n", "seconds", "per_second"}.
"""
import argparse
import asyncio
import json
import time


def make_loop(name):
    if name == "asyncio":
        return asyncio.new_event_loop()
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    if name == "asyncio_cpp":
        import asyncio_cpp
        return asyncio_cpp.new_event_loop()
    raise SystemExit(f"unknown loop {name}")


def bench_call_soon(loop, n):
    """n callbacks, each scheduling the next (a chain), in batches of 100 in flight."""
    left = [n]

    def cb():
        left[0] -= 1
        if left[0] <= 0:
            loop.stop()
        elif left[0] >= 100:
            loop.call_soon(cb)

    t0 = time.perf_counter()
    for _ in range(100):
        loop.call_soon(cb)
    loop.run_forever()
    return time.perf_counter() - t0


def bench_timers(loop, n):
    """n call_later() handles made and cancelled, then the loop runs once."""
    def noop():
        pass

    t0 = time.perf_counter()
    for i in range(n):
        h = loop.call_later(10.0 + (i % 1000) * 0.001, noop)
        h.cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    return time.perf_counter() - t0


def bench_sleep0(loop, n):
    """n task switches: 10 tasks each awaiting asyncio.sleep(0) n/10 times."""
    async def worker(k):
        for _ in range(k):
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(*[worker(n // 10) for _ in range(10)])

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0


def bench_future(loop, n):
    """n futures made, awaited and resolved by call_soon (a task waits for each)."""
    async def main():
        for _ in range(n):
            f = loop.create_future()
            loop.call_soon(f.set_result, None)
            await f

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0


BENCHES = {"call_soon": bench_call_soon, "timers": bench_timers, "sleep0": bench_sleep0,
           "future": bench_future}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--loop", required=True)
    p.add_argument("--bench", default=",".join(BENCHES))
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    for name in args.bench.split(","):
        n = args.n if name in ("call_soon", "timers") else args.n // 5
        best = None
        for _ in range(args.repeat):
            loop = make_loop(args.loop)
            try:
                dt = BENCHES[name](loop, n)
            finally:
                loop.close()
            best = dt if best is None else min(best, dt)
        print(json.dumps({"loop": args.loop, "bench": name, "n": n, "seconds": round(best, 4),
                          "per_second": round(n / best)}), flush=True)


if __name__ == "__main__":
    main()
