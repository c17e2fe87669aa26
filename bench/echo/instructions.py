#!/usr/bin/env python3
"""User-space instructions per round trip of the compiled echo servers (see README.md here).

Throughput on this 2-CPU VM is bound by the kernel's TCP work and by the load generator (both
cores are busy in ping-pong), so servers whose own code differs several-fold in cost can tie in
requests/s. This measures what a server itself adds per message, without that noise: each
server runs under valgrind's callgrind (pinned to CPU 0) while the usual load generator drives
it (CPU 1); after a warm-up, callgrind counts the server's instructions for --seconds, and the
load generator reports (SIGUSR1) how many round trips completed in that window. The result is
deterministic to about 1 %, whatever else the machine does. It counts only user-space
instructions - the kernel's share (about 90 % of a server's CPU time here) is not in it.

Keep the default 1 KiB messages for comparisons: from about 2 KiB up glibc's memcpy switches to
`rep movsb`, which callgrind counts once per byte, so a server that copies (the streams ones
copy each message into the reader and out as a std::string) then shows ~10,000 instructions
per 10 KiB copied - far beyond what the copy costs - while one that does not (c-epoll, asio,
a Protocol) shows the same count at every size.

  bench/echo/instructions.py --build-dir build-bench
  bench/echo/instructions.py --build-dir build-bench --servers asio,ours-streams --size 10K --top 15

The Python servers are offered to compare event loops on one interpreter: uvloop's and
asyncio_cpp's Protocol or streams server run the same Python code, so the difference of their
counts is what the loops themselves cost (CPython's own instructions are in both):

  PYTHONPATH=build/release/python-cpython-311 bench/echo/instructions.py --build-dir build/bench \
      --servers uvloop-protocol,asyncio_cpp-protocol,c-epoll --conns 10

Needs valgrind (apt-get install -y valgrind). Exits non-zero if a server or the load
generator fails.
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_echo  # noqa: E402  (the server table and the start-up helpers)

COMPILED = ["c-epoll", "asio", "ours-streams", "ours-protocol", "ours-streams-uring", "ours-protocol-uring"]
PYTHON = ["asyncio-protocol", "asyncio-streams", "uvloop-protocol", "uvloop-streams", "asyncio_cpp-protocol",
          "asyncio_cpp-streams"]
DEFAULT = ["c-epoll", "asio", "ours-streams", "ours-protocol"]


def read_progress(loadgen):
    """Asks the load generator for its counters; returns completed round trips."""
    loadgen.send_signal(signal.SIGUSR1)
    while True:
        line = loadgen.stdout.readline()
        if not line:
            raise RuntimeError("the load generator exited before reporting progress")
        if line.startswith("progress "):
            return int(re.search(r"requests=(\d+)", line).group(1))


def callgrind_control(option, pid):
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True)


def total_instructions(path):
    # "totals:" (the sum over the dump), not "summary:", which is 0 when instrumentation was
    # switched off before the dump.
    with open(path) as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {path}")


def top_functions(path, count):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", path], capture_output=True,
                         text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([\s\d.]+%\)\s+(.*)", line)
        if m and "PROGRAM TOTALS" not in line:
            rows.append((int(m.group(1).replace(",", "")), m.group(2)))
    return rows[:count]


def measure(args, name, loadgen_path, workdir):
    port = run_echo.free_port()
    out = os.path.join(workdir, f"callgrind.{name}")
    cmd = (["taskset", "-c", args.server_cpu, "valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out}"] + run_echo.server_command(name, args, port))
    log = tempfile.TemporaryFile(mode="w+")
    server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        err = run_echo.wait_for_port(port, server, 60)
        if err:
            raise RuntimeError(f"server {name} {err}")
        lg_cmd = ["taskset", "-c", args.client_cpu, loadgen_path, "--port", str(port), "--mode", "pingpong",
                  "--size", str(args.size), "--conns", str(args.conns), "--warmup", "0",
                  "--duration", str(args.warmup + args.seconds + 5), "--timeout", "30"]
        loadgen = subprocess.Popen(lg_cmd, stdout=subprocess.PIPE, text=True)
        time.sleep(args.warmup)
        callgrind_control("--instr=on", server.pid)
        before = read_progress(loadgen)
        time.sleep(args.seconds)
        callgrind_control("--instr=off", server.pid)
        after = read_progress(loadgen)
        callgrind_control("--dump", server.pid)
        loadgen.wait()
        if loadgen.returncode != 0:
            raise RuntimeError(f"load generator failed against {name} (exit code {loadgen.returncode})")
        dumps = sorted(p for p in os.listdir(workdir) if p.startswith(f"callgrind.{name}."))
        if not dumps:
            raise RuntimeError(f"callgrind wrote no dump for {name}")
        dump = os.path.join(workdir, dumps[-1])
        trips = after - before
        if trips <= 0:
            raise RuntimeError(f"no round trips completed against {name} in the window")
        instr = total_instructions(dump)
        return {"server": name, "round_trips": trips, "instructions": instr,
                "per_round_trip": instr / trips,
                "top": top_functions(dump, args.top) if args.top else []}
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-dir", required=True)
    p.add_argument("--servers", default=",".join(DEFAULT),
                   help=f"comma-separated subset of {', '.join(COMPILED + PYTHON)} (default: {', '.join(DEFAULT)})")
    p.add_argument("--size", default="1K", help="message size (bytes, or 1K, 10K, 100K); default 1K")
    p.add_argument("--conns", type=int, default=100, help="ping-pong connections (default 100)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds under load before counting (default 2)")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds counted (default 4)")
    p.add_argument("--top", type=int, default=0, help="also list the N costliest functions of each server")
    p.add_argument("--server-cpu", default="0")
    p.add_argument("--client-cpu", default="1")
    args = p.parse_args()
    args.size = run_echo.parse_size(args.size)
    args.python = "/usr/bin/python3"  # Debian's: the one with python3-uvloop
    servers = [s for s in args.servers.split(",") if s]
    unknown = [s for s in servers if s not in COMPILED + PYTHON]
    if unknown:
        p.error(f"unknown server(s): {', '.join(unknown)}")
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            sys.exit(f"instructions.py: {tool} not found (apt-get install -y valgrind)")
    errors, loadgen = run_echo.check_programs(args, servers)
    if errors:
        sys.exit("instructions.py: " + "\n".join(errors))

    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in servers:
            print(f"... {name}", file=sys.stderr, flush=True)
            results.append(measure(args, name, loadgen, workdir))

    ref = next((r for r in results if r["server"] == "asio"), None)
    print(f"\nUser-space instructions per round trip, ping-pong {run_echo.size_label(args.size)}, "
          f"{args.conns} connections (callgrind, {args.seconds:g} s window):\n")
    print("| server | round trips counted | instructions / round trip |" + (" ÷ asio |" if ref else ""))
    print("|---|---:|---:|" + ("---:|" if ref else ""))
    for r in results:
        row = f"| {r['server']} | {r['round_trips']:,} | {r['per_round_trip']:,.0f} |"
        if ref:
            row += f" {r['per_round_trip'] / ref['per_round_trip']:.2f} |"
        print(row)
    for r in results:
        if r["top"]:
            print(f"\n{r['server']}: costliest functions (instructions per round trip)")
            for instr, fn in r["top"]:
                print(f"  {instr / r['round_trips']:8.1f}  {fn[:150]}")


if __name__ == "__main__":
    main()
