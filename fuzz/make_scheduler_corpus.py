#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/scheduler_fuzzer.cpp into fuzz/corpus/scheduler/.

Each seed is a small program in the fuzzer's input format (see the comment at the top of
scheduler_fuzzer.cpp): a header byte (workers, eager), a byte of queue maxsizes and semaphore
values, then each worker's script, a block of steps ended by END. Run from anywhere; it
replaces the seeds it writes (named seed-*), leaving any other file of the folder alone.
"""
import pathlib

OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "scheduler"

END = bytes([0])


def header(workers, eager=False, qmax=(1, 1), sems=(1, 1)):
    b0 = (workers - 1) | (4 if eager else 0)
    b1 = (qmax[0] - 1) | (qmax[1] - 1) << 2 | (sems[0] - 1) << 4 | (sems[1] - 1) << 5
    return bytes([b0, b1])


def block(*steps):
    return b"".join(steps) + END


def sleep(half_seconds):
    return bytes([1, half_seconds])


def cancel(t, msg=False):
    return bytes([2, t | (4 if msg else 0)])


def timeout(half_seconds, *steps):  # half_seconds 7: no deadline
    return bytes([3, half_seconds]) + block(*steps)


def wait_for(half_seconds, *steps):
    return bytes([4, half_seconds]) + block(*steps)


def group(children, body=()):
    assert 1 <= len(children) <= 3
    return bytes([5, len(children) - 1]) + b"".join(block(*c) for c in children) + block(*body)


def shield(*steps):
    return bytes([6]) + block(*steps)


def lock(i, *steps):
    return bytes([7, i]) + block(*steps)


def sem(i, *steps):
    return bytes([8, i]) + block(*steps)


def set_(i):
    return bytes([9, i])


def clear(i):
    return bytes([9, i | 2])


def wait(i):
    return bytes([10, i])


def put(i):
    return bytes([11, i])


def get(i):
    return bytes([12, i])


def gather(children, return_exceptions=False):
    assert 1 <= len(children) <= 3
    return bytes([13, (len(children) - 1) | (4 if return_exceptions else 0)]) + b"".join(block(*c) for c in children)


RAISE = bytes([14])


def try_(*steps):
    return bytes([15]) + block(*steps)


def prog(h, *scripts):
    return h + b"".join(block(*s) for s in scripts)


SEEDS = {
    "sleep": prog(header(1), [sleep(1), sleep(0), sleep(2)]),
    "two-sleepers": prog(header(2), [sleep(2), sleep(1)], [sleep(1), sleep(3)]),
    "cancel-sleeper": prog(header(2), [sleep(4)], [sleep(1), cancel(0)]),
    "cancel-with-message": prog(header(2), [sleep(4)], [cancel(0, True)]),
    "cancel-self": prog(header(1), [cancel(0), sleep(1)]),
    "cancel-self-last": prog(header(1), [sleep(1), cancel(0)]),
    "cancel-twice": prog(header(3), [sleep(5)], [cancel(0)], [cancel(0, True)]),
    "cancel-eager": prog(header(2, eager=True), [cancel(1), sleep(1)], [sleep(2)]),
    "timeout-expires": prog(header(1), [try_(timeout(1, sleep(4))), sleep(1)]),
    "timeout-in-time": prog(header(1), [timeout(4, sleep(1)), sleep(1)]),
    "timeout-zero": prog(header(1), [try_(timeout(0, sleep(0)))]),
    "timeout-none": prog(header(1), [timeout(7, sleep(2))]),
    "timeout-nested": prog(header(1), [try_(timeout(4, try_(timeout(1, sleep(3))), sleep(5)))]),
    "timeout-and-cancel": prog(header(2), [timeout(2, sleep(4))], [sleep(2), cancel(0)]),
    "wait-for-expires": prog(header(1), [try_(wait_for(1, sleep(3)))]),
    "wait-for-zero": prog(header(1), [try_(wait_for(0, sleep(1)))]),
    "wait-for-in-time": prog(header(1), [wait_for(5, sleep(1), sleep(1))]),
    "group": prog(header(1), [group([[sleep(1)], [sleep(2)]], [sleep(0)])]),
    "group-child-raises": prog(header(1), [try_(group([[sleep(1), RAISE], [sleep(4)]], [sleep(5)]))]),
    "group-body-raises": prog(header(1), [try_(group([[sleep(3)]], [sleep(1), RAISE]))]),
    "group-cancelled": prog(header(2), [group([[sleep(3)], [sleep(4)]], [sleep(2)])], [sleep(1), cancel(0)]),
    "group-fails-while-cancelled": prog(header(2), [try_(group([[sleep(1), RAISE]], [sleep(3)]))], [sleep(1), cancel(0)]),
    # a group failing at the deadline of the timeout around it: inside the timeout, the
    # worker's cancelling() counts the timeout's cancel until the timeout's exit
    "group-fails-at-timeout": prog(header(1), [try_(timeout(1, sleep(0), try_(group([[sleep(1), RAISE]], [sleep(3)]))))]),
    # an eager worker: its first steps run inside create_task(); an outer group's cancel of it
    # is still pending when the inner group exits
    "eager-group-in-group": prog(header(2, eager=True), [group([[wait_for(0)]], [shield(), group([[], [], []])])], []),
    "group-in-timeout": prog(header(1), [try_(timeout(2, group([[sleep(5)], [sleep(1)]], [sleep(4)])))]),
    "shield": prog(header(2), [shield(sleep(3))], [sleep(1), cancel(0)]),
    "shield-raises": prog(header(1), [try_(shield(sleep(1), RAISE))]),
    "lock": prog(header(2), [lock(0, sleep(2))], [lock(0, sleep(1))]),
    "lock-cancel-waiter": prog(header(3), [lock(0, sleep(3))], [lock(0, sleep(1))], [sleep(1), cancel(1)]),
    "lock-cancel-holder": prog(header(2), [lock(0, sleep(3))], [sleep(1), cancel(0)]),
    "lock-nested": prog(header(2), [lock(0, lock(1, sleep(1)))], [lock(1, sleep(1)), lock(0, sleep(1))]),
    "lock-timeout": prog(header(2), [lock(0, sleep(4))], [try_(timeout(1, lock(0, sleep(1))))]),
    "sem": prog(header(3, sems=(2, 1)), [sem(0, sleep(2))], [sem(0, sleep(2))], [sem(0, sleep(1))]),
    "sem-cancel": prog(header(3), [sem(1, sleep(3))], [sem(1, sleep(1))], [sleep(1), cancel(1), sleep(1), cancel(0)]),
    "event": prog(header(2), [wait(0), sleep(1)], [sleep(2), set_(0)]),
    "event-clear": prog(header(3), [wait(1)], [set_(1), clear(1)], [sleep(1), wait(1)]),
    "event-cancel-waiter": prog(header(2), [wait(0)], [sleep(1), cancel(0), set_(0)]),
    "event-never-set": prog(header(1), [wait(0)]),
    "queue": prog(header(2), [put(0), put(0), put(0)], [get(0), get(0), sleep(1), get(0)]),
    "queue-full": prog(header(2, qmax=(1, 2)), [put(1), put(1), put(1)], [sleep(2), get(1)]),
    "queue-cancel-getter": prog(header(2), [get(0)], [sleep(1), cancel(0), put(0)]),
    "queue-cancel-putter": prog(header(2), [put(0), put(0)], [sleep(1), cancel(0)]),
    "queue-timeout": prog(header(1), [try_(timeout(1, get(1))), put(1)]),
    "gather": prog(header(1), [gather([[sleep(1)], [sleep(2)], [sleep(0)]])]),
    "gather-raises": prog(header(1), [try_(gather([[sleep(1), RAISE], [sleep(3)]]))]),
    "gather-return-exceptions": prog(header(1), [gather([[RAISE], [sleep(1)], [timeout(0, sleep(1))]], True)]),
    "gather-cancelled": prog(header(2), [gather([[sleep(3)], [sleep(4)]])], [sleep(1), cancel(0, True)]),
    "raise": prog(header(1), [sleep(1), RAISE]),
    "try-raise": prog(header(1), [try_(RAISE), sleep(1)]),
    "mix": prog(
        header(4, qmax=(2, 1), sems=(2, 2)),
        [lock(0, put(0), sleep(1)), timeout(3, sem(0, wait(0)))],
        [gather([[get(0)], [sleep(1), set_(0)]]), cancel(3)],
        [group([[lock(1, sleep(1))], [sem(1, put(1))]], [get(1)])],
        [shield(sleep(2), RAISE), sleep(1)],
    ),
    "mix-eager": prog(
        header(3, eager=True),
        [cancel(2), try_(wait_for(2, lock(0, sleep(3))))],
        [lock(0, sleep(1), cancel(0, True))],
        [sem(0, wait(1)), set_(1)],
    ),
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("seed-*"):
        old.unlink()
    for name, data in SEEDS.items():
        (OUT / f"seed-{name}").write_bytes(data)
    print(f"{len(SEEDS)} seeds in {OUT}")


if __name__ == "__main__":
    main()
