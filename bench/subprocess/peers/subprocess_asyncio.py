#!/usr/bin/python3
"""Subprocess benchmark, Python side: stock asyncio, or uvloop with --uvloop.

  spawn     N times `create_subprocess_exec("/bin/true")` then `wait()`, C at once
            (C=1: one after the other)
  pipe      `communicate(input)` of SIZE bytes through `cat`, reading SIZE bytes back

Prints one JSON line: {"peer", "mode", "n", "concurrency", "bytes", "seconds"}.
Run with Debian's /usr/bin/python3 (it has python3-uvloop).

Usage: /usr/bin/python3 subprocess_asyncio.py spawn --n 1000 --concurrency 50 [--uvloop]
       /usr/bin/python3 subprocess_asyncio.py pipe --bytes 1073741824 [--uvloop]
"""

import argparse
import asyncio
import json
import time


async def spawn_and_wait():
    proc = await asyncio.create_subprocess_exec("/bin/true")
    rc = await proc.wait()
    if rc != 0:
        raise SystemExit(f"/bin/true exited with {rc}")


async def spawn(n, concurrency):
    remaining = n

    async def worker():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await spawn_and_wait()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def pipe(size):
    data = b"x" * size
    proc = await asyncio.create_subprocess_exec(
        "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate(data)
    if len(out) != size:
        raise SystemExit(f"cat gave back {len(out)} bytes of {size}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["spawn", "pipe"])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--bytes", type=int, default=1 << 30)
    ap.add_argument("--uvloop", action="store_true")
    args = ap.parse_args()
    if args.uvloop:
        import uvloop
        uvloop.install()
    coro = spawn(args.n, args.concurrency) if args.mode == "spawn" else pipe(args.bytes)
    start = time.perf_counter()
    asyncio.run(coro)
    seconds = time.perf_counter() - start
    print(json.dumps({"peer": "uvloop" if args.uvloop else "asyncio", "mode": args.mode, "n": args.n,
                      "concurrency": args.concurrency, "bytes": args.bytes, "seconds": seconds}))


if __name__ == "__main__":
    main()
