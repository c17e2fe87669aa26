#!/usr/bin/env python3
"""Run the echo server benchmark matrix and print Markdown tables (see README.md here).

Servers × modes {pingpong, streaming} × message sizes {1 KiB, 10 KiB, 100 KiB}, every run
against a freshly started server, loaded by <build-dir>/bench/echo/loadgen. The server is
pinned to one CPU (taskset -c 0) and the load generator to another (taskset -c 1). Each
(round, mode, size) runs every server once, in the order given (A B C, A B C, ...); every
table cell is the median over the rounds. Ratios are to the C epoll server (c-epoll).

Writes <out>/results.json (every raw result) and <out>/results.png (requests/s normalised to
c-epoll, grouped bars per mode and size); <out> defaults to this directory.

With --idle it measures memory instead: for each server, VmRSS once idle, then again with
10,000 idle connections open (each has echoed one 16-byte message), and reports
(after - before) / connections; raw results go to <out>/idle.json.

The program builds nothing: build the binaries first (README.md), then e.g.
  bench/echo/run_echo.py --build-dir build-bench                         # everything
  bench/echo/run_echo.py --build-dir build-bench --servers c-epoll,asio --modes pingpong --sizes 1K
  bench/echo/run_echo.py --build-dir build-bench --idle

Exits non-zero if a selected server's program is missing (before running anything), or if
any run fails (server did not start or died, load generator error or timeout, or a server
wrote anything to stdout/stderr).
"""

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> command; {build} is <build-dir>/bench/echo, {python} the interpreter of the Python
# servers, {here} this directory, {port} the port. Order = default order of the runs and
# columns.
SERVERS = {
    "c-epoll": ["{build}/c_epoll_server", "--port", "{port}"],
    "asio": ["{build}/asio_server", "--port", "{port}"],
    "asyncio-streams": ["{python}", "{here}/python_server.py", "--port", "{port}", "--mode", "streams"],
    "asyncio-protocol": ["{python}", "{here}/python_server.py", "--port", "{port}", "--mode", "protocol"],
    "uvloop-streams": ["{python}", "{here}/python_server.py", "--port", "{port}", "--mode", "streams",
                       "--uvloop"],
    "uvloop-protocol": ["{python}", "{here}/python_server.py", "--port", "{port}", "--mode", "protocol",
                        "--uvloop"],
    "ours-streams": ["{build}/echo_server_streams", "--port", "{port}"],
    "ours-protocol": ["{build}/echo_server_protocol", "--port", "{port}"],
    # The same two on the io_uring backend (not in the default set: pick them with --servers).
    "ours-streams-uring": ["{build}/echo_server_streams", "--port", "{port}", "--backend", "io_uring"],
    "ours-protocol-uring": ["{build}/echo_server_protocol", "--port", "{port}", "--backend", "io_uring"],
    # Our Python face (PYTHONPATH must reach asyncio_cpp; bench/python compares it in full).
    "asyncio_cpp-streams": ["{python}", "{here}/python_server.py", "--port", "{port}", "--mode", "streams",
                            "--loop", "asyncio_cpp"],
    "asyncio_cpp-protocol": ["{python}", "{here}/python_server.py", "--port", "{port}", "--mode", "protocol",
                             "--loop", "asyncio_cpp"],
}
OPTIONAL_SERVERS = {"ours-streams-uring", "ours-protocol-uring", "asyncio_cpp-streams", "asyncio_cpp-protocol"}
# CMake target that builds each server's binary (None: a script).
TARGETS = {"c-epoll": "c_epoll_server", "asio": "asio_server", "ours-streams": "echo_server_streams",
           "ours-protocol": "echo_server_protocol", "ours-streams-uring": "echo_server_streams",
           "ours-protocol-uring": "echo_server_protocol"}
BASELINE = "c-epoll"
MODES = ("pingpong", "streaming")
DEFAULT_SIZES = (1024, 10 * 1024, 100 * 1024)
BUILD_HINT = ("cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DASYNCIO_BUILD_BENCH=ON "
              "-DASYNCIO_BUILD_TESTS=OFF && ninja -C build-bench {targets}")


def parse_size(text):
    t = text.strip().lower().replace("kib", "k").replace("mib", "m")
    mult = 1
    if t.endswith("k"):
        mult, t = 1024, t[:-1]
    elif t.endswith("m"):
        mult, t = 1024 * 1024, t[:-1]
    return int(float(t) * mult)


def size_label(n):
    if n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def fmt_rate(v):
    if v is None:
        return "—"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(name, args, port):
    subst = {"build": os.path.join(os.path.abspath(args.build_dir), "bench", "echo"),
             "python": args.python, "here": HERE, "port": str(port)}
    return [part.format(**subst) for part in SERVERS[name]]


def check_programs(args, servers):
    """Every selected program must exist; returns a list of error messages."""
    errors = []
    loadgen = os.path.join(os.path.abspath(args.build_dir), "bench", "echo", "loadgen")
    if not os.access(loadgen, os.X_OK):
        errors.append(f"load generator not found: {loadgen} (build target loadgen)")
    py_checked = {}
    for name in servers:
        prog = server_command(name, args, 0)[0]
        if not (os.path.isfile(prog) and os.access(prog, os.X_OK)):
            target = TARGETS.get(name)
            why = f" (build target {target}, or leave {name} out of --servers)" if target else ""
            src = os.path.join(HERE, f"{target}.cpp") if name.startswith("ours-") else None
            if src and not os.path.exists(src):
                why = (f" (its source {os.path.relpath(src)} does not exist yet; leave {name} out of "
                       "--servers)")
            errors.append(f"server {name}: program not found: {prog}{why}")
            continue
        if prog == args.python:
            need = ("uvloop" if "--uvloop" in SERVERS[name] else
                    "asyncio_cpp" if "asyncio_cpp" in SERVERS[name] else "asyncio")
            if need not in py_checked:
                p = subprocess.run([args.python, "-c", f"import {need}"], capture_output=True, text=True)
                py_checked[need] = p.returncode == 0
            if not py_checked[need]:
                errors.append(f"server {name}: {args.python} cannot import {need} (use --python, or "
                              f"apt-get install python3-uvloop, or leave {name} out of --servers)")
    return errors, loadgen


def machine_busy():
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def wait_until_quiet(args):
    """Waits (up to --quiet-wait s) until the machine is idle, i.e. less than --quiet-cores
    CPUs busy over a 0.3 s sample, so that other jobs on a shared machine do not land inside
    a run. Returns the seconds waited (or -1 if it gave up and went ahead)."""
    if args.quiet_wait <= 0:
        return 0.0
    t0 = time.monotonic()
    ncpu = os.cpu_count() or 1
    while True:
        b0, t0_ticks = machine_busy()
        time.sleep(0.3)
        b1, t1_ticks = machine_busy()
        busy_cores = (b1 - b0) / max(1, t1_ticks - t0_ticks) * ncpu
        if busy_cores < args.quiet_cores:
            return time.monotonic() - t0
        if time.monotonic() - t0 > args.quiet_wait:
            return -1.0
        time.sleep(0.7)


def wait_for_port(port, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with code {proc.returncode} before accepting connections"
        try:
            # This probe connection is closed at once. Besides telling that the server is up, it
            # makes every server see one disconnect before the load starts: a fresh CPython
            # asyncio server is ~3x slower until its first EOF (see README.md, "glibc").
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                pass
            time.sleep(0.1)
            return None
        except OSError:
            time.sleep(0.02)
    return f"did not accept connections on port {port} within {timeout:.0f} s"


class Server:
    """A server process pinned with taskset; its stdout+stderr go to a temporary file."""

    def __init__(self, name, args):
        self.name = name
        self.port = free_port()
        self.cmd = ["taskset", "-c", args.server_cpu] + server_command(name, args, self.port)
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.error = wait_for_port(self.port, self.proc, args.start_timeout)

    def rss_kib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def stop(self):
        """Stops the server; returns an error string or None."""
        err = None
        if self.proc.poll() is not None and not self.error:
            err = f"server {self.name} died during the run (exit code {self.proc.returncode})"
        elif self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.seek(0)
        out = self.log.read().strip()
        self.log.close()
        if out:
            lines = out.splitlines()
            msg = f"server {self.name} wrote output: " + " | ".join(lines[:5])
            if len(lines) > 5:
                msg += f" | ... ({len(lines)} lines)"
            err = f"{err}; {msg}" if err else msg
        return err


def parse_kv(line):
    out = {}
    for part in line.split():
        if "=" in part:
            k, v = part.split("=", 1)
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def run_one(args, loadgen, name, mode, size):
    """One server start + one load generator run; returns (result dict or None, error or None)."""
    waited = wait_until_quiet(args)
    srv = Server(name, args)
    if srv.error:
        err = srv.stop()
        return None, f"server {name}: {srv.error}" + (f"; {err}" if err else "")
    conns = args.pingpong_conns if mode == "pingpong" else args.streaming_conns
    cmd = ["taskset", "-c", args.client_cpu, loadgen, "--port", str(srv.port), "--mode", mode,
           "--size", str(size), "--conns", str(conns), "--duration", str(args.duration),
           "--warmup", str(args.warmup), "--server-pid", str(srv.proc.pid)]
    if args.verify:
        cmd.append("--verify")
    result, error = None, None
    try:
        p = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=args.duration + args.warmup + 60)
        lines = [ln for ln in p.stdout.splitlines() if "requests_per_s=" in ln]
        if p.returncode != 0 or not lines:
            error = (f"loadgen against {name} ({mode}, {size_label(size)}): exit code {p.returncode}: "
                     + " | ".join((p.stderr or p.stdout).strip().splitlines()[-3:]))
        else:
            result = parse_kv(lines[-1])
            result["quiet_wait_s"] = waited
    except subprocess.TimeoutExpired:
        error = f"loadgen against {name} ({mode}, {size_label(size)}) timed out"
    serr = srv.stop()
    if serr:
        error = f"{error}; {serr}" if error else serr
    return result, error


def other_cpu(res):
    """CPUs used by everything but the server and the load generator during the window."""
    if res.get("machine_cpu", -1) < 0 or res.get("server_cpu", -1) < 0:
        return 0.0
    return max(0.0, res["machine_cpu"] - res["server_cpu"] - res["client_cpu"])


def median_of(results, key):
    vals = [r[key] for r in results if r and isinstance(r.get(key), float) and r[key] >= 0]
    return statistics.median(vals) if vals else None


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
        return subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError as e:
        return f"cannot run: {e}"


# ---- the matrix -------------------------------------------------------------------------------

def cell_name(mode, size):
    return f"{mode} {size_label(size)}"


def matrix_tables(data):
    """Markdown tables from the JSON-able result structure."""
    servers, cells = data["servers"], [(c["mode"], c["size"]) for c in data["cells"]]
    raw = data["results"]  # raw[cell][server] -> list of per-round dicts (None = failed)

    def med(mode, size, server, key):
        return median_of(raw.get(cell_name(mode, size), {}).get(server, []), key)

    head = ["server"] + [cell_name(m, s) for m, s in cells]
    sep = "|" + "|".join(["---"] + ["---:"] * len(cells)) + "|"
    out = []

    def table(title, fn):
        out.append(title)
        out.append("")
        out.append("| " + " | ".join(head) + " |")
        out.append(sep)
        for srv in servers:
            out.append("| " + " | ".join([srv] + [fn(m, s, srv) for m, s in cells]) + " |")
        out.append("")

    has_base = BASELINE in servers

    if has_base:
        def ratio(m, s, srv):
            v, b = med(m, s, srv, "requests_per_s"), med(m, s, BASELINE, "requests_per_s")
            return f"{v / b:.2f}×" if v and b else "—"
        table(f"Requests/s relative to {BASELINE} (median of each; >1 = faster than {BASELINE}):", ratio)
    table("Requests/s (pingpong: round trips/s; streaming: messages echoed/s), median:",
          lambda m, s, srv: fmt_rate(med(m, s, srv, "requests_per_s")))
    table("MiB/s echoed (one direction), median:",
          lambda m, s, srv: (f"{v:.0f}" if (v := med(m, s, srv, "mib_per_s")) is not None else "—"))

    def cpu(m, s, srv):
        sc, cc = med(m, s, srv, "server_cpu"), med(m, s, srv, "client_cpu")
        mc = med(m, s, srv, "machine_cpu")
        if sc is None or cc is None:
            return "—"
        other = f" +{max(0.0, mc - sc - cc):.2f}" if mc is not None else ""
        return f"{sc:.2f} / {cc:.2f}{other}"
    table("CPU used during the measured window, median, in cores: server / load generator "
          "+ everything else on the machine:", cpu)
    return "\n".join(out)


def run_matrix(args, servers, loadgen):
    cells = [(m, s) for m in args.modes for s in args.sizes]
    raw = {cell_name(m, s): {srv: [] for srv in servers} for m, s in cells}
    failures = []
    t_start = time.monotonic()
    total = args.rounds * len(cells) * len(servers)
    done = 0
    for r in range(args.rounds):
        for mode, size in cells:
            for srv in servers:
                t0 = time.monotonic()
                res, err = run_one(args, loadgen, srv, mode, size)
                redone = 0
                while res and not err and other_cpu(res) > args.quiet_cores and redone < args.busy_retries:
                    redone += 1
                    print(f"  ... {srv} {mode} {size_label(size)}: {other_cpu(res):.2f} CPUs busy with other "
                          f"jobs during the run; again ({redone}/{args.busy_retries})", file=sys.stderr, flush=True)
                    res, err = run_one(args, loadgen, srv, mode, size)
                if res:
                    res["busy_retries"] = redone
                done += 1
                raw[cell_name(mode, size)][srv].append(res)
                info = (f"{fmt_rate(res['requests_per_s']):>7} req/s {res['mib_per_s']:8.1f} MiB/s "
                        f"cpu srv {res['server_cpu']:.2f} gen {res['client_cpu']:.2f} "
                        f"other {other_cpu(res):.2f}"
                        ) if res else ""
                if res and res["quiet_wait_s"] < 0:
                    info += "  (machine still busy after --quiet-wait; ran anyway)"
                elif res and res["quiet_wait_s"] > 1:
                    info += f"  (waited {res['quiet_wait_s']:.0f} s for other jobs)"
                print(f"[{done}/{total} round {r + 1}/{args.rounds}] {mode:<9} {size_label(size):>7} "
                      f"{srv:<16} {time.monotonic() - t0:4.1f} s  {info}"
                      + (f"  FAILED: {err}" if err else ""), file=sys.stderr, flush=True)
                if err:
                    failures.append(err)
    elapsed = time.monotonic() - t_start
    return {
        "kind": "echo-matrix",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_info(),
        "build_type": build_type(args.build_dir),
        "python": f"{args.python}: {peer_versions(args.python)}",
        "rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
        "pingpong_conns": args.pingpong_conns, "streaming_conns": args.streaming_conns,
        "server_cpu": args.server_cpu, "client_cpu": args.client_cpu,
        "servers": servers,
        "commands": {s: SERVERS[s] for s in servers},
        "cells": [{"mode": m, "size": s} for m, s in cells],
        "results": raw,
        "failures": failures,
        "elapsed_s": elapsed,
        "argv": sys.argv[1:],
    }


# ---- the chart ------------------------------------------------------------------------------

def draw_chart(data, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = data["servers"]
    cells = [(c["mode"], c["size"]) for c in data["cells"]]
    raw = data["results"]

    def med(cell, srv):
        return median_of(raw.get(cell, {}).get(srv, []), "requests_per_s")

    fig, ax = plt.subplots(figsize=(max(8.0, 1.1 * len(cells) * (0.5 + 0.18 * len(servers))), 5.5))
    width = 0.8 / max(1, len(servers))
    colors = plt.get_cmap("tab10")
    for i, srv in enumerate(servers):
        xs, ys = [], []
        for j, (m, s) in enumerate(cells):
            cell = cell_name(m, s)
            v, b = med(cell, srv), med(cell, BASELINE)
            if v and b:
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(v / b)
        bars = ax.bar(xs, ys, width, label=srv, color=colors(i % 10))
        for bar, y in zip(bars, ys):
            ax.text(bar.get_x() + bar.get_width() / 2, y, f"{y:.2f}", ha="center", va="bottom",
                    fontsize=6, rotation=90)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(cells)))
    ax.set_xticklabels([f"{m}\n{size_label(s)}" for m, s in cells])
    ax.set_ylabel(f"requests/s relative to {BASELINE}")
    top = max([1.0] + [p.get_height() for p in ax.patches])
    ax.set_ylim(0, top * 1.18)
    conns = f"{data['pingpong_conns']} conns pingpong, {data['streaming_conns']} streaming"
    ax.set_title(f"Echo servers, one thread each, loopback — median of {data['rounds']} round(s) × "
                 f"{data['duration_s']:g} s, {conns}", fontsize=10)
    ax.legend(fontsize=8, ncol=min(8, len(servers)), loc="upper center", bbox_to_anchor=(0.5, -0.13),
              frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def chart(args, json_path, png):
    """Draws the chart here if matplotlib imports, else with --python (apt-installing
    python3-matplotlib if needed). Returns an error string or None."""
    with open(json_path) as f:
        servers = json.load(f)["servers"]
    if BASELINE not in servers:
        return f"no chart: it is normalised to {BASELINE}, which was not run"
    try:
        import matplotlib  # noqa: F401
        with open(json_path) as f:
            draw_chart(json.load(f), png)
        return None
    except ImportError:
        pass
    cmd = [args.python, os.path.abspath(__file__), "--plot-only", json_path, "--out", os.path.dirname(png)]
    probe = [args.python, "-c", "import matplotlib"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        print("run_echo.py: matplotlib missing; apt-get install -y python3-matplotlib", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "python3-matplotlib"], stdout=subprocess.DEVNULL)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return f"chart failed: {p.stderr.strip()[-500:]}"
    return None


# ---- idle memory ----------------------------------------------------------------------------

def run_idle(args, servers, loadgen):
    results, failures = {}, []
    t_start = time.monotonic()
    for srv_name in servers:
        t0 = time.monotonic()
        srv = Server(srv_name, args)  # memory does not depend on other jobs: no quiet wait
        res, err = None, srv.error and f"server {srv_name}: {srv.error}"
        if not err:
            time.sleep(args.settle)
            before = srv.rss_kib()
            cmd = ["taskset", "-c", args.client_cpu, loadgen, "--port", str(srv.port), "--mode", "idle",
                   "--conns", str(args.idle_conns)]
            gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            line = gen.stdout.readline()  # "ready conns=... seconds=..." (or EOF on failure)
            if line.startswith("ready"):
                time.sleep(args.settle)
                after = srv.rss_kib()
                ready = parse_kv(line)
                res = {"rss_before_kib": before, "rss_after_kib": after, "conns": args.idle_conns,
                       "connect_s": ready.get("seconds"),
                       "bytes_per_conn": (after - before) * 1024.0 / args.idle_conns
                       if before is not None and after is not None else None}
            gen.stdin.close()
            try:
                gen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                gen.kill()
                gen.wait()
            if res is None:
                err = (f"loadgen --mode idle against {srv_name}: exit code {gen.returncode}: "
                       + " | ".join(gen.stderr.read().strip().splitlines()[-3:]))
            gen.stdout.close()
            gen.stderr.close()
        serr = srv.stop()
        if serr:
            err = f"{err}; {serr}" if err else serr
        results[srv_name] = res
        info = (f"RSS {res['rss_before_kib'] / 1024:.1f} -> {res['rss_after_kib'] / 1024:.1f} MiB, "
                f"{res['bytes_per_conn']:.0f} B/conn") if res else ""
        print(f"[idle] {srv_name:<16} {time.monotonic() - t0:4.1f} s  {info}"
              + (f"  FAILED: {err}" if err else ""), file=sys.stderr, flush=True)
        if err:
            failures.append(err)
    return {"kind": "echo-idle", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info(),
            "build_type": build_type(args.build_dir),
            "python": f"{args.python}: {peer_versions(args.python)}",
            "idle_conns": args.idle_conns, "servers": servers, "results": results, "failures": failures,
            "elapsed_s": time.monotonic() - t_start, "argv": sys.argv[1:]}


def idle_table(data):
    out = [f"Memory per idle connection ({data['idle_conns']:,} connections, each has echoed 16 bytes; "
           "server VmRSS after − before):", "",
           "| server | RSS idle (MiB) | RSS with connections (MiB) | bytes / connection |",
           "|---|---:|---:|---:|"]
    for srv in data["servers"]:
        r = data["results"].get(srv)
        if not r:
            out.append(f"| {srv} | — | — | — |")
            continue
        out.append(f"| {srv} | {r['rss_before_kib'] / 1024:.1f} | {r['rss_after_kib'] / 1024:.1f} | "
                   f"{r['bytes_per_conn']:,.0f} |")
    return "\n".join(out)


# ---- main -----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", help="CMake build dir holding bench/echo/{loadgen,c_epoll_server,...}")
    ap.add_argument("--servers", default=",".join(s for s in SERVERS if s not in OPTIONAL_SERVERS),
                    help="comma-separated, in run order (default: all but " + ", ".join(sorted(OPTIONAL_SERVERS)) +
                    "): " + ", ".join(SERVERS))
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of: " + ", ".join(MODES))
    ap.add_argument("--sizes", default="1K,10K,100K", help="message sizes, bytes or with K/M suffix "
                    "(KiB/MiB); default 1K,10K,100K")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each cell is the median (default 3)")
    ap.add_argument("--duration", type=float, default=3.0, help="measured seconds per run (default 3)")
    ap.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before that (default 0.5)")
    ap.add_argument("--pingpong-conns", type=int, default=100, help="connections for pingpong (default 100)")
    ap.add_argument("--streaming-conns", type=int, default=10, help="connections for streaming (default 10)")
    ap.add_argument("--verify", action="store_true", help="the load generator checks every echoed byte")
    ap.add_argument("--idle", action="store_true",
                    help="measure memory per idle connection instead of running the matrix")
    ap.add_argument("--idle-conns", type=int, default=10000, help="connections for --idle (default 10000)")
    ap.add_argument("--settle", type=float, default=0.5, help="--idle: seconds to wait before each RSS read")
    ap.add_argument("--quiet-wait", type=float, default=120.0,
                    help="before each run wait up to this many seconds for the machine to be idle "
                         "(other jobs on a shared machine); 0 = do not check (default 120)")
    ap.add_argument("--quiet-cores", type=float, default=0.3,
                    help="idle means fewer than this many CPUs busy (default 0.3)")
    ap.add_argument("--busy-retries", type=int, default=2,
                    help="repeat a run (up to this many times) when other jobs used more than "
                         "--quiet-cores CPUs during its measured window (default 2)")
    ap.add_argument("--server-cpu", default="0", help="taskset CPU list for the servers (default 0)")
    ap.add_argument("--client-cpu", default="1", help="taskset CPU list for the load generator (default 1)")
    ap.add_argument("--python", default="/usr/bin/python3",
                    help="interpreter for the Python servers (needs uvloop; default /usr/bin/python3)")
    ap.add_argument("--start-timeout", type=float, default=15.0, help="seconds for a server to start accepting")
    ap.add_argument("--out", default=HERE, help="directory for results.json/.png and idle.json (default: here)")
    ap.add_argument("--no-chart", action="store_true", help="do not draw results.png")
    ap.add_argument("--plot-only", metavar="JSON", help="only draw <out>/results.png from an existing results JSON")
    args = ap.parse_args()

    if args.plot_only:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(f"run_echo.py: --plot-only needs matplotlib, which {sys.executable} lacks; run it with "
                  f"{args.python} (apt-get install -y python3-matplotlib)", file=sys.stderr)
            return 2
        os.makedirs(args.out, exist_ok=True)
        with open(args.plot_only) as f:
            draw_chart(json.load(f), os.path.join(args.out, "results.png"))
        return 0
    if not args.build_dir:
        ap.error("--build-dir is required")
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in servers:
        if s not in SERVERS:
            ap.error(f"unknown server {s!r}; known: {', '.join(SERVERS)}")
    if len(set(servers)) != len(servers):
        ap.error("--servers lists a server twice")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in args.modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}")
    try:
        args.sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        ap.error(f"bad --sizes {args.sizes!r}")
    if not servers or not args.modes or not args.sizes or min(args.sizes) <= 0 or args.rounds <= 0:
        ap.error("nothing to run")

    errors, loadgen = check_programs(args, servers)
    if errors:
        missing = sorted({TARGETS[s] for s in servers if s in TARGETS} | {"loadgen"})
        print("run_echo.py: cannot run:\n" + "\n".join(f"  - {e}" for e in errors)
              + "\n  build with: " + BUILD_HINT.format(targets=" ".join(missing)), file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)

    if args.idle:
        data = run_idle(args, servers, loadgen)
        path = os.path.join(args.out, "idle.json")
        with open(path, "w") as f:
            json.dump(data, f, indent=1)
        print()
        print(f"Echo servers, idle memory — {data['elapsed_s']:.0f} s total")
        print(f"Machine: {data['machine']}; C/C++ build type: {data['build_type']}; {data['python']}")
        print()
        print(idle_table(data))
        print()
        print(f"raw results: {path}")
    else:
        data = run_matrix(args, servers, loadgen)
        path = os.path.join(args.out, "results.json")
        with open(path, "w") as f:
            json.dump(data, f, indent=1)
        print()
        print(f"Echo servers — {len(servers)} server(s), median of {args.rounds} interleaved round(s), "
              f"{args.duration:g} s measured (+{args.warmup:g} s warm-up) per run, "
              f"{args.pingpong_conns} conns pingpong / {args.streaming_conns} streaming; "
              f"{data['elapsed_s']:.0f} s total")
        print(f"Machine: {data['machine']}; C/C++ build type: {data['build_type']}; {data['python']}")
        print(f"Server on CPU {args.server_cpu}, load generator on CPU {args.client_cpu} (taskset)")
        print()
        print(matrix_tables(data))
        print(f"raw results: {path}")
        if not args.no_chart:
            png = os.path.join(args.out, "results.png")
            err = chart(args, path, png)
            print(f"chart: {err}" if err else f"chart: {png}")
    if data["failures"]:
        print()
        print(f"FAILURES ({len(data['failures'])}):")
        for f in data["failures"]:
            print(f"  - {f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
