"""CPython's own test suite for asyncio (test.test_asyncio), run against the stock loop and
against asyncio_cpp's loop in the same run, module by module.

Our loop is given to every test that makes a loop the standard way: asyncio.new_event_loop(),
the default event loop policy, asyncio.run() and asyncio.Runner without a loop_factory. (Tests
that construct asyncio.SelectorEventLoop or a test loop themselves keep the stock one.)

    PYTHONPATH=<build>/python python3 tests/python/cpython_asyncio.py [--json out.json] [module ...]

Each module runs in its own process (a module that hangs is stopped after --timeout seconds
and counted as such). Prints, per module, passed/failed/skipped on each loop, then every test
that passes on the stock loop and not on ours. Exit status 0 when the run completed (the table
is the result; docs/python.md explains each difference).
"""
import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import asyncio, json, os, sys, unittest
loop_name, module = sys.argv[1], sys.argv[2]
if loop_name == "asyncio_cpp":
    import asyncio_cpp
    from asyncio import unix_events
    # The default policy's loops are ours from now on (asyncio.new_event_loop, asyncio.run,
    # Runner, get_event_loop, and policies reset with set_event_loop_policy(None)).
    unix_events._UnixDefaultEventLoopPolicy._loop_factory = asyncio_cpp.Loop
    asyncio.set_event_loop_policy(None)
    assert type(asyncio.new_event_loop()) is asyncio_cpp.Loop
    if os.environ.get("CPYTHON_ASYNCIO_SELECTOR_TOO") == "1":
        # --selector-too: also the loops the tests make as asyncio.SelectorEventLoop() (the
        # generic event-loop tests of test_events, test_sock_lowlevel, test_sendfile...).
        class SelectorEventLoop(asyncio_cpp.Loop):
            def __init__(self, selector=None):  # the tests pass a selector: ours has none
                super().__init__()
        asyncio.SelectorEventLoop = unix_events.SelectorEventLoop = SelectorEventLoop

class Result(unittest.TextTestResult):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.passed = []
    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed.append(test.id())

suite = unittest.defaultTestLoader.loadTestsFromName(module)
with open(os.devnull, "w") as devnull:
    runner = unittest.TextTestRunner(stream=devnull, verbosity=0, resultclass=Result)
    result = runner.run(suite)
failed = [t.id() for t, _ in result.failures + result.errors + result.unexpectedSuccesses]
skipped = [t.id() for t, _ in result.skipped] + [t.id() for t, _ in result.expectedFailures]
sys.stdout.write("\n@@RESULT@@" + json.dumps({"passed": result.passed, "failed": failed, "skipped": skipped}) + "\n")
"""


def modules(python):
    code = ("import os, test.test_asyncio as t; d = os.path.dirname(t.__file__); "
            "print('\\n'.join(sorted(f[:-3] for f in os.listdir(d) if f.startswith('test_') and f.endswith('.py'))))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout
    return ["test.test_asyncio." + m for m in out.split()]


def run_module(python, loop_name, module, timeout):
    start = time.monotonic()
    try:
        proc = subprocess.run([python, "-c", CHILD, loop_name, module], capture_output=True, text=True,
                              timeout=timeout, env=os.environ)
    except subprocess.TimeoutExpired:
        return {"passed": [], "failed": [], "skipped": [], "timeout": True, "seconds": timeout}
    marker = proc.stdout.rfind("@@RESULT@@")
    if marker < 0:
        return {"passed": [], "failed": [module + " (crashed: exit %d)" % proc.returncode], "skipped": [],
                "crashed": True, "stderr": proc.stderr[-2000:], "seconds": time.monotonic() - start}
    result = json.loads(proc.stdout[marker + len("@@RESULT@@"):])
    result["seconds"] = round(time.monotonic() - start, 1)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("modules", nargs="*", help="test.test_asyncio.<name> (default: all)")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--json", help="write the full results here")
    ap.add_argument("--loops", default="stock,asyncio_cpp")
    ap.add_argument("--selector-too", action="store_true",
                    help="also replace asyncio.SelectorEventLoop (tests that make one explicitly)")
    args = ap.parse_args()
    python = sys.executable
    if args.selector_too:
        os.environ["CPYTHON_ASYNCIO_SELECTOR_TOO"] = "1"
    mods = args.modules or modules(python)
    mods = [m if m.startswith("test.") else "test.test_asyncio." + m for m in mods]
    loops = args.loops.split(",")
    results = {}
    print(f"CPython {sys.version.split()[0]} test.test_asyncio: stock loop vs asyncio_cpp "
          f"(backend {os.environ.get('ASYNCIO_BACKEND', 'default')}"
          f"{', SelectorEventLoop replaced too' if args.selector_too else ''})")
    print(f"| module | {' | '.join(l + ' pass/fail/skip' for l in loops)} |")
    print("|---|" + "---|" * len(loops))
    totals = {l: [0, 0, 0] for l in loops}
    for m in mods:
        row = []
        for loop_name in loops:
            r = run_module(python, loop_name, m, args.timeout)
            results.setdefault(m, {})[loop_name] = r
            counts = [len(r["passed"]), len(r["failed"]), len(r["skipped"])]
            for i in range(3):
                totals[loop_name][i] += counts[i]
            extra = " TIMEOUT" if r.get("timeout") else " CRASH" if r.get("crashed") else ""
            row.append("%d/%d/%d%s" % (*counts, extra))
        print(f"| {m.rsplit('.', 1)[1]} | {' | '.join(row)} |", flush=True)
    print(f"| **total** | {' | '.join('%d/%d/%d' % tuple(totals[l]) for l in loops)} |")
    if "stock" in loops and "asyncio_cpp" in loops:
        print("\nPassing on the stock loop, not on asyncio_cpp:")
        for m, r in results.items():
            stock_passed = set(r["stock"]["passed"])
            ours = r["asyncio_cpp"]
            lost = sorted(stock_passed - set(ours["passed"]))
            if ours.get("timeout") or ours.get("crashed"):
                print(f"  {m}: whole module {'timed out' if ours.get('timeout') else 'crashed'}"
                      f" ({len(stock_passed)} tests)")
                continue
            for t in lost:
                print("  " + t)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
