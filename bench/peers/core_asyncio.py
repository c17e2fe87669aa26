#!/usr/bin/python3
"""Core runtime benchmark, Python peer: stock asyncio, or uvloop with --uvloop.

Run with Debian's interpreter, /usr/bin/python3, which has python3-uvloop.
Prints one JSON object per line:
    {"impl": "asyncio"|"uvloop", "bench": NAME, "value": NUMBER, "unit": UNIT}

Workloads (see bench/README.md; bench/core_bench.cpp and bench/peers/core_asio.cpp
do the same thing):
  create_await  -> create_await_task (ns/task)
  sleep_1m      -> sleep_1m_wall (s), sleep_1m_rss (MB, peak), plus sleep_1m_rss_base
                   (MB, RSS just before the tasks are created) and sleep_1m_n (tasks used)
  pingpong      -> sleep0_pingpong (ns/switch)
  call_soon     -> call_soon_chain (callbacks/s), call_soon_batch (callbacks/s)
  queue_pingpong  -> queue_pingpong (ns/msg): two tasks, two asyncio.Queues, --queue-n round trips
  lock_contention -> lock_contention (ns/acquire): --lock-tasks tasks x --lock-iters iterations of
                     acquire; counter += 1; sleep(0); release
  to_thread       -> to_thread_latency (us/call, --thread-n sequential calls),
                     to_thread_throughput (calls/s, --thread-batch concurrent calls gathered)
"""

import argparse
import asyncio
import json
import resource
import sys
import time

ALL_GROUPS = ("sleep_1m", "create_await", "pingpong", "call_soon", "queue_pingpong", "lock_contention",
              "to_thread")


def current_rss_mb():
    """Current resident set size of this process, in MiB (VmRSS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def peak_rss_mb():
    """Peak resident set size of this process, in MiB (VmHWM, else ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --- 1. create + await trivial tasks, one after the other -------------------

async def trivial(i):
    return i


async def bench_create_await(n):
    create_task = asyncio.create_task
    total = 0
    t0 = time.perf_counter()
    for i in range(n):
        total += await create_task(trivial(i))
    t1 = time.perf_counter()
    assert total == n * (n - 1) // 2
    return (t1 - t0) * 1e9 / n


# --- 2. N concurrent tasks each sleeping 1 s ---------------------------------

async def sleeper():
    await asyncio.sleep(1.0)


async def bench_sleep(n):
    create_task = asyncio.create_task
    base = current_rss_mb()
    t0 = time.perf_counter()
    tasks = [create_task(sleeper()) for _ in range(n)]
    await asyncio.gather(*tasks)
    t1 = time.perf_counter()
    return t1 - t0, peak_rss_mb(), base


# --- 3. sleep(0) ping-pong between two tasks ----------------------------------

async def yielder(m):
    sleep = asyncio.sleep
    for _ in range(m):
        await sleep(0)


async def bench_pingpong(m):
    t0 = time.perf_counter()
    await asyncio.gather(asyncio.create_task(yielder(m)), asyncio.create_task(yielder(m)))
    t1 = time.perf_counter()
    return (t1 - t0) * 1e9 / (2 * m)


# --- 4. call_soon throughput ---------------------------------------------------

async def bench_call_soon_chain(n):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    call_soon = loop.call_soon
    count = 0

    def cb():
        nonlocal count
        count += 1
        if count < n:
            call_soon(cb)
        else:
            done.set_result(None)

    t0 = time.perf_counter()
    call_soon(cb)
    await done
    t1 = time.perf_counter()
    return n / (t1 - t0)


async def bench_call_soon_batch(n):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    call_soon = loop.call_soon
    count = 0

    def cb():
        nonlocal count
        count += 1
        if count == n:
            done.set_result(None)

    t0 = time.perf_counter()
    for _ in range(n):
        call_soon(cb)
    await done
    t1 = time.perf_counter()
    return n / (t1 - t0)


# --- 5. queue ping-pong: two tasks, two queues ---------------------------------

async def queue_pinger(to, frm, n):
    put, get = to.put, frm.get
    total = 0
    for i in range(n):
        await put(i & 0xffff)
        total += await get()
    return total


async def queue_ponger(frm, to, n):
    put, get = to.put, frm.get
    for _ in range(n):
        await put(await get())


async def bench_queue_pingpong(n):
    q1, q2 = asyncio.Queue(), asyncio.Queue()
    t0 = time.perf_counter()
    a = asyncio.create_task(queue_pinger(q1, q2, n))
    b = asyncio.create_task(queue_ponger(q1, q2, n))
    total = await a
    await b
    t1 = time.perf_counter()
    assert total == sum(i & 0xffff for i in range(n))
    return (t1 - t0) * 1e9 / (2 * n)


# --- 6. lock contention: T tasks x M iterations, the lock held across a sleep(0) ----

async def bench_lock_contention(tasks, m):
    lock = asyncio.Lock()
    counter = 0
    sleep = asyncio.sleep

    async def worker():
        nonlocal counter
        for _ in range(m):
            await lock.acquire()
            counter += 1
            await sleep(0)
            lock.release()

    t0 = time.perf_counter()
    await asyncio.gather(*[asyncio.create_task(worker()) for _ in range(tasks)])
    t1 = time.perf_counter()
    assert counter == tasks * m
    return (t1 - t0) * 1e9 / (tasks * m)


# --- 7. to_thread: latency (sequential) and throughput (concurrent, gathered) --------

def trivial_fn(i):
    return i


async def bench_to_thread_latency(n):
    to_thread = asyncio.to_thread
    total = 0
    t0 = time.perf_counter()
    for i in range(n):
        total += await to_thread(trivial_fn, i)
    t1 = time.perf_counter()
    assert total == n * (n - 1) // 2
    return (t1 - t0) * 1e6 / n


async def bench_to_thread_throughput(n):
    to_thread = asyncio.to_thread
    t0 = time.perf_counter()
    results = await asyncio.gather(*[to_thread(trivial_fn, i) for i in range(n)])
    t1 = time.perf_counter()
    assert sum(results) == n * (n - 1) // 2
    return n / (t1 - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uvloop", action="store_true", help="use uvloop's event loop")
    ap.add_argument("--n", type=int, default=1_000_000,
                    help="N for every workload (tasks, switches per task, callbacks)")
    ap.add_argument("--sleep-n", type=int, default=None,
                    help="override N for sleep_1m only (default: --n)")
    ap.add_argument("--queue-n", type=int, default=500_000, help="queue_pingpong round trips")
    ap.add_argument("--lock-tasks", type=int, default=1_000, help="lock_contention tasks")
    ap.add_argument("--lock-iters", type=int, default=1_000, help="lock_contention iterations per task")
    ap.add_argument("--thread-n", type=int, default=20_000, help="to_thread latency: sequential calls")
    ap.add_argument("--thread-batch", type=int, default=10_000,
                    help="to_thread throughput: concurrent calls")
    ap.add_argument("--bench", default=",".join(ALL_GROUPS),
                    help="comma-separated subset of: " + ", ".join(ALL_GROUPS))
    args = ap.parse_args()

    impl = "asyncio"
    if args.uvloop:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        impl = "uvloop"

    groups = [g.strip() for g in args.bench.split(",") if g.strip()]
    for g in groups:
        if g not in ALL_GROUPS:
            ap.error(f"unknown bench {g!r}")
    # sleep_1m first: its peak-RSS figure is the process-wide high-water mark.
    groups.sort(key=ALL_GROUPS.index)

    n = args.n
    sleep_n = args.sleep_n or n

    def emit(bench, value, unit):
        print(json.dumps({"impl": impl, "bench": bench, "value": value, "unit": unit}),
              flush=True)

    for g in groups:
        if g == "sleep_1m":
            wall, rss, base = asyncio.run(bench_sleep(sleep_n))
            emit("sleep_1m_wall", round(wall, 4), "s")
            emit("sleep_1m_rss", round(rss, 1), "MB")
            emit("sleep_1m_rss_base", round(base, 1), "MB")
            emit("sleep_1m_n", sleep_n, "tasks")
        elif g == "create_await":
            emit("create_await_task", round(asyncio.run(bench_create_await(n)), 1), "ns/task")
        elif g == "pingpong":
            emit("sleep0_pingpong", round(asyncio.run(bench_pingpong(n)), 1), "ns/switch")
        elif g == "call_soon":
            emit("call_soon_chain", round(asyncio.run(bench_call_soon_chain(n))), "callbacks/s")
            emit("call_soon_batch", round(asyncio.run(bench_call_soon_batch(n))), "callbacks/s")
        elif g == "queue_pingpong":
            emit("queue_pingpong", round(asyncio.run(bench_queue_pingpong(args.queue_n)), 1), "ns/msg")
        elif g == "lock_contention":
            emit("lock_contention",
                 round(asyncio.run(bench_lock_contention(args.lock_tasks, args.lock_iters)), 1),
                 "ns/acquire")
        elif g == "to_thread":
            emit("to_thread_latency", round(asyncio.run(bench_to_thread_latency(args.thread_n)), 3),
                 "us/call")
            emit("to_thread_throughput",
                 round(asyncio.run(bench_to_thread_throughput(args.thread_batch))), "calls/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
