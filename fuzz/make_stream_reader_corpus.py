#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/stream_reader_fuzzer.cpp into fuzz/corpus/stream_reader/.

Each seed is a small program in the fuzzer's input format (see the comment at the top of
stream_reader_fuzzer.cpp): a limit byte, then commands. Run from anywhere; it replaces the
seeds it writes (named seed-*), leaving any other file of the folder alone.
"""
import pathlib

OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "stream_reader"


def chunk(b):
    assert len(b) <= 255
    return bytes([0, len(b)]) + b


EOF_ = bytes([1])
EXC = bytes([2])


def feed(n):
    return bytes([3, n])


def batch(k):
    return bytes([4, k - 1])


READLINE = bytes([5])


def readuntil(sep):
    return bytes([6, len(sep)]) + sep


def readuntil_n(*seps):
    out = bytes([7, len(seps)])
    for s in seps:
        out += bytes([len(s)]) + s
    return out


def readexactly(n):
    return bytes([8, n])


def read(n):
    return bytes([9, n])


READ_ALL = bytes([10])


def limit(n):
    return bytes([n - 1])


SEEDS = {
    # readline
    "readline-one-chunk": limit(64) + chunk(b"line1\nline2\n") + EOF_ + READLINE + READLINE + READLINE,
    "readline-split-chunks": limit(64) + chunk(b"li") + chunk(b"ne1") + chunk(b"\nli") + chunk(b"ne2\n") + READLINE + READLINE,
    "readline-partial-at-eof": limit(64) + chunk(b"no newline") + EOF_ + READLINE + READLINE,
    "readline-too-long-found": limit(4) + chunk(b"abcdefgh\nxy\n") + READLINE + READLINE,
    "readline-too-long-not-found": limit(4) + chunk(b"abcdefghij") + chunk(b"k\nok\n") + READLINE + READLINE + READLINE,
    "readline-too-long-grows": limit(8) + chunk(b"abc") + chunk(b"defg") + chunk(b"hijkl") + chunk(b"\n") + READLINE + READLINE,
    "readline-exactly-limit": limit(5) + chunk(b"abcde\nabcdef\n") + READLINE + READLINE + READLINE,
    "readline-empty-chunks": limit(16) + chunk(b"") + chunk(b"") + chunk(b"a\n") + READLINE,
    "readline-exception": limit(16) + chunk(b"abc") + EXC + READLINE + READLINE,
    "readline-batch": limit(16) + chunk(b"ab") + chunk(b"c\nd") + chunk(b"e\n") + batch(3) + READLINE + READLINE,
    # readuntil, one separator
    "readuntil-crlf": limit(32) + chunk(b"HEAD\r") + chunk(b"\nbody\r\n") + readuntil(b"\r\n") + readuntil(b"\r\n"),
    "readuntil-long-sep": limit(32) + chunk(b"xx--bou") + chunk(b"ndxx--boundary") + readuntil(b"--bo") + readuntil(b"xx"),
    "readuntil-incomplete": limit(32) + chunk(b"abc\r") + EOF_ + readuntil(b"\r\n") + readuntil(b"\r\n"),
    "readuntil-overrun-not-found": limit(3) + chunk(b"abcdefg") + readuntil(b"XY") + read(100),
    "readuntil-overrun-found": limit(3) + chunk(b"abcdXY") + readuntil(b"XY") + read(2) + readuntil(b"XY"),
    "readuntil-empty-sep": limit(8) + chunk(b"abc") + readuntil(b"") + read(3),
    "readuntil-sep-at-limit": limit(4) + chunk(b"abcd!") + chunk(b"abcde!") + readuntil(b"!") + readuntil(b"!") + read(10),
    "readuntil-byte-by-byte": limit(16) + b"".join(chunk(bytes([c])) for c in b"ab::cd::") + readuntil(b"::") + readuntil(b"::"),
    "readuntil-exception-waiting": limit(16) + chunk(b"ab") + EXC + readuntil(b"::") + readuntil(b"::"),
    "readuntil-data-then-exception": limit(16) + chunk(b"ab:") + chunk(b":") + EXC + batch(2) + readuntil(b"::") + read(1),
    # readuntil, several separators (the shortest match wins)
    "readuntil-n-shortest": limit(32) + chunk(b"a\r\nb\n") + readuntil_n(b"\r\n", b"\n") + readuntil_n(b"\n", b"\r\n"),
    "readuntil-n-overlap": limit(32) + chunk(b"xabcd") + readuntil_n(b"abcd", b"bc", b"d") + read(10),
    "readuntil-n-limit-shortest-sep": limit(1) + chunk(b"xab") + readuntil_n(b"ab", b"b") + read(10),
    "readuntil-n-split": limit(32) + chunk(b"12") + chunk(b"3END") + chunk(b"45;") + readuntil_n(b"END", b";") + readuntil_n(b"END", b";"),
    "readuntil-n-none": limit(8) + chunk(b"abc") + readuntil_n() + read(3),
    "readuntil-n-one-empty": limit(8) + chunk(b"abc") + readuntil_n(b"b", b"") + read(3),
    "readuntil-n-incomplete": limit(32) + chunk(b"abc") + EOF_ + readuntil_n(b"x", b"yz"),
    "readuntil-n-overrun": limit(2) + chunk(b"abcdefgh") + readuntil_n(b"xyz", b"q") + read(20),
    # readexactly
    "readexactly-simple": limit(8) + chunk(b"0123456789") + readexactly(4) + readexactly(6),
    "readexactly-waits": limit(8) + chunk(b"01") + chunk(b"234") + chunk(b"56789") + readexactly(10),
    "readexactly-incomplete": limit(8) + chunk(b"0123") + EOF_ + readexactly(10) + readexactly(1),
    "readexactly-zero": limit(8) + readexactly(0) + EXC + feed(1) + readexactly(0),
    "readexactly-exception": limit(8) + chunk(b"01") + EXC + readexactly(5),
    "readexactly-big": limit(4) + chunk(bytes(range(200))) + chunk(bytes(range(100))) + readexactly(255) + readexactly(45),
    # read(n) and read(-1)
    "read-n": limit(8) + chunk(b"hello world") + read(5) + read(1) + read(100) ,
    "read-zero": limit(8) + read(0) + chunk(b"x") + read(0) + read(1),
    "read-waits": limit(8) + chunk(b"") + chunk(b"abc") + read(2) + read(2) + read(2),
    "read-eof-empty": limit(8) + EOF_ + read(5) + read(5),
    "read-all": limit(4) + chunk(b"aaaaaaaaaa") + chunk(b"bbbb") + chunk(b"") + chunk(b"c") + EOF_ + READ_ALL + READ_ALL,
    "read-all-exception": limit(4) + chunk(b"aaaa") + EXC + READ_ALL,
    "read-all-batch": limit(4) + chunk(b"ab") + chunk(b"cd") + EOF_ + batch(4) + READ_ALL,
    "read-after-eof-feed": limit(8) + chunk(b"x") + EOF_ + chunk(b"late") + feed(3) + read(10) + read(10),
    # mixes
    "mix-feed-now": limit(16) + chunk(b"a\nbb\r\nccc") + chunk(b"dd") + EOF_ + feed(1) + READLINE + readuntil(b"\r\n") + readexactly(3) + READ_ALL,
    "mix-http": limit(64) + chunk(b"GET / HTTP/1.1\r\nHost: x\r") + chunk(b"\n\r\nBODYBODY") + EOF_ + batch(2)
    + readuntil(b"\r\n") + readuntil_n(b"\r\n\r\n", b"\r\n") + readuntil(b"\r\n") + readexactly(4) + READ_ALL,
    "mix-limit-1": limit(1) + chunk(b"a\nbc\nd") + READLINE + READLINE + READLINE + read(5),
    "mix-exception-then-data": limit(8) + EXC + chunk(b"abc\n") + feed(2) + READLINE + read(3) + readexactly(1) + READ_ALL,
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
