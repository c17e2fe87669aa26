#!/usr/bin/env python3
"""Linux loses the first byte of a request sent in two pieces to a listener whose queue is full
(the SYN-cookie path), without asyncio-cpp: why AcceptBurst's clients send a one-byte request
(tests/net/test_server.cpp, docs/reliability.md).

A listener with backlog 5, 16 clients connecting at once, each sending "hi" as two 1-byte sends
(`split`, as under ASYNCIO_FAULTS's 1-byte transfers) or in one send (`whole`), a server that
accepts them and reads until it has 2 bytes or 6 s passed. Prints what the connections that
did not get their 2 bytes received. Run it in a private network namespace to set the sysctl:

  unshare -n sh -c 'ip link set lo up; python3 scripts/repro/syncookie_split_request.py split'
  unshare -n sh -c 'ip link set lo up; sysctl -qw net.ipv4.tcp_syncookies=0; python3 ... split'

Seen on this machine (Debian 12): split -> 6.00 s, 4 of 16 connections got only b'i' (as many
as SYN cookies were sent); whole -> 1.2 s, none; split with tcp_syncookies=0 -> 2.1 s, none.
"""
import select
import socket
import sys
import time

split = len(sys.argv) > 1 and sys.argv[1] == "split"
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(5)
ls.setblocking(False)
port = ls.getsockname()[1]
clients = []
for _ in range(16):
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    clients.append(c)
sent = {c: 0 for c in clients}
got = {}  # accepted socket -> bytes
t0 = time.time()
while time.time() - t0 < 6:
    for c in clients:  # each client sends once writable: "h" then "i" (split) or "hi"
        if sent[c] < 2 and select.select([], [c], [], 0)[1]:
            try:
                sent[c] += c.send(b"hi"[sent[c]:sent[c] + 1] if split else b"hi"[sent[c]:])
            except OSError:
                pass
    while True:
        try:
            s, _ = ls.accept()
        except BlockingIOError:
            break
        s.setblocking(False)
        got[s] = b""
    for s in got:
        try:
            got[s] += s.recv(10)
        except BlockingIOError:
            pass
    if len(got) == 16 and all(len(v) >= 2 for v in got.values()):
        break
    time.sleep(0.01)
print("split" if split else "whole", "%.2fs" % (time.time() - t0), "accepted", len(got),
      "incomplete:", sorted(v for v in got.values() if len(v) < 2))
