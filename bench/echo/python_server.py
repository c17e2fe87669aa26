#!/usr/bin/python3
"""Echo benchmark: Python asyncio echo server (stock loop, uvloop with --uvloop, or asyncio-cpp's
Python face with --loop asyncio_cpp: PYTHONPATH=<build>/python).

  --mode streams   asyncio.start_server; per connection a task looping
                   data = await reader.read(65536); writer.write(data); await writer.drain()
  --mode protocol  a Protocol whose data_received does transport.write(data)
  --mode sock      raw sockets: loop.sock_accept, then per connection a task looping
                   data = await loop.sock_recv(conn, 65536); await loop.sock_sendall(conn, data)

Listens on 127.0.0.1:P, prints nothing but errors. Run with /usr/bin/python3 (Debian's
interpreter, which has python3-uvloop); a python3 earlier on PATH usually lacks uvloop.

Usage: /usr/bin/python3 python_server.py --port P [--mode streams|protocol|sock]
       [--loop asyncio|uvloop|asyncio_cpp] [--uvloop]
"""

import argparse
import asyncio
import resource
import socket
import sys

BACKLOG = 4096


async def handle(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the client went away (reset while writing)
    finally:
        writer.close()


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def sock_client(loop, conn):
    try:
        while True:
            data = await loop.sock_recv(conn, 65536)
            if not data:
                break
            await loop.sock_sendall(conn, data)
    except ConnectionError:
        pass
    finally:
        conn.close()


async def sock_server(port):
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(BACKLOG)
    listener.setblocking(False)
    clients = set()
    while True:
        conn, _ = await loop.sock_accept(listener)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = loop.create_task(sock_client(loop, conn))
        clients.add(task)
        task.add_done_callback(clients.discard)


async def serve(port, mode):
    loop = asyncio.get_running_loop()
    if mode == "sock":
        await sock_server(port)
        return
    if mode == "streams":
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=BACKLOG)
    else:
        server = await loop.create_server(EchoProtocol, "127.0.0.1", port, backlog=BACKLOG)
    async with server:
        await server.serve_forever()


def main():
    ap = argparse.ArgumentParser(description="asyncio / uvloop echo server")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=("streams", "protocol", "sock"), default="streams")
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop (= --loop uvloop)")
    ap.add_argument("--loop", choices=("asyncio", "uvloop", "asyncio_cpp"), default="asyncio")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.uvloop or args.loop == "uvloop":
        import uvloop
        uvloop.install()
    elif args.loop == "asyncio_cpp":
        import asyncio_cpp
        asyncio_cpp.install()
    try:
        asyncio.run(serve(args.port, args.mode))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
