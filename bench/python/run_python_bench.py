#!/usr/bin/env python3
"""asyncio vs uvloop vs asyncio_cpp, side by side, same run, interleaved rounds, medians.

Rows (see README.md here):
  call_soon, timers (call_later + cancel), sleep(0) task switches, future round trips
      bench/python/micro.py, per second;
  echo {sock,streams,protocol} x {1 KiB, 10 KiB, 100 KiB}
      bench/echo/python_server.py driven by bench/echo/loadgen (ping-pong, --conns
      connections): requests/s, and the server's CPU time per request (the figure a loaded
      2-core machine keeps stable: the load generator shares the machine);
  uvicorn "hello world" with wrk (requests/s);
  memory per idle connection (server RSS growth over --idle-conns connections, per connection).

Every round runs each loop once, in turn (the order rotates each round); the table gives the
median of the rounds and the ratio ours/uvloop. Needs /usr/bin/python3 with python3-uvloop and
python3-uvicorn, wrk, the loadgen (cmake --preset bench; cmake --build --preset bench --target
loadgen), and asyncio_cpp built for /usr/bin/python3 (scripts/test_python.sh or
scripts/install_python.sh).

  bench/python/run_python_bench.py --build-dir build/bench --pythonpath build/release/python-cpython-311 \
      --rounds 5 --json bench/python/results.json
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LOOPS = ["asyncio", "uvloop", "asyncio_cpp"]
SIZES = {"1K": 1024, "10K": 10 * 1024, "100K": 100 * 1024}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def env_for(args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(args.pythonpath)
    return env


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Server:
    """A server process on a free port: started, waited for, then stopped (SIGINT, then kill)."""

    def __init__(self, args, argv_for_port):
        self.port = free_port()
        self.proc = subprocess.Popen(argv_for_port(self.port), env=env_for(args))

    def __enter__(self):
        try:
            wait_for_port(self.port, self.proc)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def echo_server(args, loop, mode):
    if loop == "c-floor":  # the plain C epoll server: the kernel's share, with no Python at all
        return Server(args, lambda port: [os.path.join(os.path.abspath(args.build_dir), "bench", "echo",
                                                       "c_epoll_server"), "--port", str(port)])
    return Server(args, lambda port: [args.python, os.path.join(ROOT, "bench", "echo", "python_server.py"), "--port",
                                      str(port), "--mode", mode, "--loop", loop])


def micro(args, loop):
    out = subprocess.run([args.python, os.path.join(HERE, "micro.py"), "--loop", loop, "--n", str(args.micro_n),
                          "--repeat", "1"], capture_output=True, text=True, env=env_for(args), check=True).stdout
    return {json.loads(l)["bench"]: json.loads(l)["per_second"] for l in out.splitlines() if l.startswith("{")}


def echo(args, loop, mode, size):
    with echo_server(args, loop, mode) as server:
        out = subprocess.run([args.loadgen, "--port", str(server.port), "--mode", "pingpong", "--size", str(size),
                              "--conns", str(args.conns), "--duration", str(args.seconds), "--warmup", "1",
                              "--server-pid", str(server.proc.pid)], capture_output=True, text=True, timeout=120)
    line = out.stdout.strip().splitlines()[-1]
    d = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
    requests = float(d["requests"])
    per_request = (lambda cpu: float(cpu) * float(d["seconds"]) / requests * 1e6 if requests else None)
    return {"rps": float(d["requests_per_s"]), "cpu_us": per_request(d["server_cpu"]),
            "user_us": per_request(d["server_user_cpu"])}


def uvicorn(args, loop):
    def argv(port):
        code = (f"import sys, asyncio\nsys.path.insert(0, {HERE!r})\n"
                f"loop = {loop!r}\n"
                "if loop == 'asyncio_cpp':\n import asyncio_cpp; asyncio_cpp.install()\n"
                "elif loop == 'uvloop':\n import uvloop; uvloop.install()\n"
                "import uvicorn\n"
                f"uvicorn.run('hello_asgi:app', host='127.0.0.1', port={port}, loop='asyncio', log_level='warning',"
                " access_log=False, lifespan='off')\n")
        return [args.python, "-c", code]

    with Server(args, argv) as server:
        out = subprocess.run(["wrk", "-t1", f"-c{args.conns}", f"-d{args.seconds}s",
                              f"http://127.0.0.1:{server.port}/"], capture_output=True, text=True, timeout=120).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError("wrk saw errors:\n" + out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}


def idle_memory(args, loop):
    with echo_server(args, loop, "protocol") as server:
        time.sleep(0.3)
        before = rss_kib(server.proc.pid)
        socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(args.idle_conns)]
        for s in socks:  # one round trip each: every connection is accepted and set up
            s.sendall(b"x")
        for s in socks:
            s.recv(1)
        time.sleep(0.3)
        after = rss_kib(server.proc.pid)
        for s in socks:
            s.close()
    return {"bytes_per_conn": (after - before) * 1024 / args.idle_conns}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default="build/bench", help="where bench/echo/loadgen was built")
    ap.add_argument("--pythonpath", default="build/release/python-cpython-311", help="where asyncio_cpp is")
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--micro-n", type=int, default=500_000)
    ap.add_argument("--idle-conns", type=int, default=2000)
    ap.add_argument("--rows", default="micro,echo,uvicorn,idle")
    ap.add_argument("--modes", default="sock,streams,protocol")
    ap.add_argument("--sizes", default="1K,10K,100K")
    ap.add_argument("--c-floor", action="store_true",
                    help="also run bench/echo/c_epoll_server (no Python: the kernel's share) in the Protocol rows")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.loadgen = os.path.join(os.path.abspath(args.build_dir), "bench", "echo", "loadgen")
    rows = args.rows.split(",")
    samples = {}  # row -> loop -> [values]

    def add(row, loop, value):
        samples.setdefault(row, {}).setdefault(loop, []).append(value)

    loops = LOOPS + (["c-floor"] if args.c_floor else [])
    for r in range(args.rounds):
        order = loops[r % len(loops):] + loops[:r % len(loops)]
        print(f"round {r + 1}/{args.rounds} ({', '.join(order)})", file=sys.stderr, flush=True)
        for loop in order:
            if loop == "c-floor":  # echo rows only
                for size in args.sizes.split(","):
                    e = echo(args, loop, "protocol", SIZES[size])
                    add(f"echo protocol {size} (req/s)", loop, e["rps"])
                    add(f"echo protocol {size} (server us/req)", loop, e["cpu_us"])
                    add(f"echo protocol {size} (server user-space us/req)", loop, e["user_us"])
                continue
            if "micro" in rows:
                for name, v in micro(args, loop).items():
                    add(f"{name} (per s)", loop, v)
            if "echo" in rows:
                for mode in args.modes.split(","):
                    for size in args.sizes.split(","):
                        e = echo(args, loop, mode, SIZES[size])
                        add(f"echo {mode} {size} (req/s)", loop, e["rps"])
                        add(f"echo {mode} {size} (server us/req)", loop, e["cpu_us"])
                        add(f"echo {mode} {size} (server user-space us/req)", loop, e["user_us"])
            if "uvicorn" in rows:
                add("uvicorn hello (req/s)", loop, uvicorn(args, loop)["rps"])
            if "idle" in rows:
                add("memory per idle connection (bytes)", loop, idle_memory(args, loop)["bytes_per_conn"])
    server_python = subprocess.run([args.python, "-c", "import sys; print(sys.version)"], capture_output=True,
                                   text=True).stdout.strip()
    print(f"\nPython {server_python.split()[0]} ({args.python}), {args.rounds} rounds, medians; "
          f"ratio = asyncio_cpp vs uvloop (higher is better; for us/req and bytes, uvloop / ours)"
          + ("; c-floor: bench/echo/c_epoll_server, no Python" if args.c_floor else "") + "\n")
    floor_col = " c-floor |" if args.c_floor else ""
    print("| row | asyncio | uvloop | asyncio_cpp | ratio vs uvloop |" + floor_col)
    print("|---|---:|---:|---:|---:|" + ("---:|" if args.c_floor else ""))
    table = {}
    for row, per_loop in samples.items():
        med = {l: statistics.median(v) for l, v in per_loop.items()}
        lower_is_better = "us/req" in row or "bytes" in row
        ratio = (med["uvloop"] / med["asyncio_cpp"]) if lower_is_better else (med["asyncio_cpp"] / med["uvloop"])
        table[row] = {"median": med, "samples": per_loop, "ratio_vs_uvloop": ratio}
        fmt = (lambda v: f"{v:,.2f}") if lower_is_better and "us" in row else (lambda v: f"{v:,.0f}")
        floor = ""
        if args.c_floor:
            floor = " |"
            if "c-floor" in med:
                c = med["c-floor"]
                floor = f" {fmt(c)} ({(med['uvloop'] / c) if lower_is_better else (c / med['uvloop']):.2f}x) |"
        print(f"| {row} | {fmt(med['asyncio'])} | {fmt(med['uvloop'])} | {fmt(med['asyncio_cpp'])} | "
              f"{ratio:.2f}x |" + floor)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": server_python, "args": vars(args), "rows": table}, f, indent=1)


if __name__ == "__main__":
    main()
