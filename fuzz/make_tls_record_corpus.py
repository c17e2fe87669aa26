#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/tls_record_fuzzer.cpp into fuzz/corpus/tls_record/.

Each seed is in the fuzzer's input format (see the comment at the top of
tls_record_fuzzer.cpp): a flags byte, then (raw mode) a chunk size and the bytes to send, or
(client mode) operations. The raw-mode ClientHellos are real ones, captured from Python's ssl
module (OpenSSL) through a memory BIO: a TLS 1.3 one and a TLS 1.2-only one. Run from
anywhere; it replaces the seeds it writes (named seed-*), leaving any other file alone.
"""
import pathlib
import ssl

OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "tls_record"


def client_hello(max_version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = max_version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


# flags
CLIENT, ECHO, TLS12, PAUSE = 1, 2, 4, 8


def raw(chunk, data, flags=0):
    return bytes([flags, chunk]) + data


def data(b):
    assert len(b) <= 255
    return bytes([0, len(b)]) + b


def rawbytes(b):
    assert len(b) <= 255
    return bytes([1, len(b)]) + b


def flip(b, k):
    return bytes([2, len(b)]) + b + bytes([k])


def trunc(b, k):
    return bytes([3, len(b)]) + b + bytes([k])


CLOSE, KEYUPDATE, RENEG, READ = bytes([4]), bytes([5]), bytes([6]), bytes([7])


def spin(n):
    return bytes([8, n])


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("seed-*"):
        old.unlink()
    hello13 = client_hello(ssl.TLSVersion.TLSv1_3)
    hello12 = client_hello(ssl.TLSVersion.TLSv1_2)
    seeds = {
        "empty": b"",
        "raw-garbage": raw(0, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        "raw-garbage-bytewise": raw(1, bytes(range(64))),
        "raw-clienthello13": raw(0, hello13),
        "raw-clienthello13-in-7-byte-chunks": raw(7, hello13),
        "raw-clienthello12": raw(0, hello12),
        "raw-clienthello13-then-garbage": raw(0, hello13 + b"\x17\x03\x03\x00\x10" + bytes(16)),
        "raw-clienthello-truncated": raw(0, hello13[: len(hello13) // 2]),
        "raw-alert": raw(0, b"\x15\x03\x03\x00\x02\x02\x28"),
        "client-data-close": bytes([CLIENT]) + data(b"hello") + READ + CLOSE,
        "client-echo": bytes([CLIENT | ECHO]) + data(b"hello") + READ + data(b"world") + READ,
        "client-keyupdate": bytes([CLIENT | ECHO]) + data(b"a") + KEYUPDATE + READ + data(b"b") + READ,
        "client12-reneg": bytes([CLIENT | TLS12]) + data(b"hello") + RENEG + READ + spin(4) + READ + data(b"x"),
        "client-flip": bytes([CLIENT]) + data(b"ok") + flip(b"corrupt", 9) + data(b"lost"),
        "client-trunc": bytes([CLIENT]) + data(b"ok") + trunc(b"truncated", 7),
        "client-raw-injection": bytes([CLIENT | ECHO]) + data(b"ok") + rawbytes(b"\x17\x03\x03\x00\x05abcde"),
        "client-pause": bytes([CLIENT | ECHO | PAUSE]) + data(b"paused") + spin(3) + data(b"resumed") + READ + CLOSE,
        "client12-close": bytes([CLIENT | TLS12 | ECHO]) + data(b"twelve") + READ + CLOSE + data(b"after"),
    }
    for name, body in seeds.items():
        (OUT / ("seed-" + name)).write_bytes(body)
    print(f"{len(seeds)} seeds in {OUT}")


if __name__ == "__main__":
    main()
