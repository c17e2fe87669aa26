#!/usr/bin/python3
"""Echo benchmark: Python asyncio echo server (stock loop, or uvloop with --uvloop).

  --mode streams   asyncio.start_server; per connection a task looping
                   data = await reader.read(65536); writer.write(data); await writer.drain()
  --mode protocol  a Protocol whose data_received does transport.write(data)

Listens on 127.0.0.1:P, prints nothing but errors. Run with /usr/bin/python3 (Debian's
interpreter, which has python3-uvloop); a python3 earlier on PATH usually lacks uvloop.

Usage: /usr/bin/python3 python_server.py --port P [--mode streams|protocol] [--uvloop]
"""

import argparse
import asyncio
import resource
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


async def serve(port, mode):
    loop = asyncio.get_running_loop()
    if mode == "streams":
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=BACKLOG)
    else:
        server = await loop.create_server(EchoProtocol, "127.0.0.1", port, backlog=BACKLOG)
    async with server:
        await server.serve_forever()


def main():
    ap = argparse.ArgumentParser(description="asyncio / uvloop echo server")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=("streams", "protocol"), default="streams")
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.uvloop:
        import uvloop
        uvloop.install()
    try:
        asyncio.run(serve(args.port, args.mode))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
