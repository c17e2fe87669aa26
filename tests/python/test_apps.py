"""Real applications, unmodified, on asyncio_cpp's loop: aiohttp (server and client) and
uvicorn serving an ASGI app (Debian's python3-aiohttp and python3-uvicorn; skipped where the
interpreter has not got them), driven by Python clients and by curl and wrk (where installed)."""
import asyncio
import re
import shutil
import socket
import subprocess
import threading
import time
import unittest
import urllib.request

import asyncio_cpp

try:
    from aiohttp import ClientSession, web
except ImportError:
    web = None
try:
    import uvicorn
except ImportError:
    uvicorn = None


@unittest.skipIf(web is None, "aiohttp is not installed for this interpreter")
class TestAiohttp(unittest.TestCase):
    def test_server_and_client(self):
        async def hello(request):
            return web.Response(text="Hello, " + request.match_info.get("name", "world"))

        async def echo(request):
            return web.Response(body=await request.read())

        async def main():
            self.assertIsInstance(asyncio.get_running_loop(), asyncio_cpp.Loop)
            app = web.Application()
            app.add_routes([web.get("/", hello), web.get("/{name}", hello), web.post("/echo", echo)])
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
            try:
                async with ClientSession() as s:
                    async with s.get(f"http://127.0.0.1:{port}/") as r:
                        self.assertEqual((r.status, await r.text()), (200, "Hello, world"))
                    body = bytes(range(256)) * 4000
                    async with s.post(f"http://127.0.0.1:{port}/echo", data=body) as r:
                        self.assertEqual(await r.read(), body)
                    responses = await asyncio.gather(*[s.get(f"http://127.0.0.1:{port}/{i}") for i in range(50)])
                    self.assertEqual([await r.text() for r in responses], [f"Hello, {i}" for i in range(50)])
                if shutil.which("curl"):
                    # curl in a thread (subprocesses are part 2 of the Python face).
                    loop = asyncio.get_running_loop()
                    out = await loop.run_in_executor(None, lambda: subprocess.run(
                        ["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{port}/curl", "--next",
                         "-sS", "--max-time", "10", "--data-binary", "@-", f"http://127.0.0.1:{port}/echo"],
                        input=b"x" * 100_000, capture_output=True, timeout=20))
                    self.assertEqual(out.returncode, 0, out.stderr)
                    self.assertEqual(out.stdout, b"Hello, curl" + b"x" * 100_000)
            finally:
                await runner.cleanup()

        asyncio_cpp.run(main())


async def hello_app(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


@unittest.skipIf(uvicorn is None, "uvicorn is not installed for this interpreter")
class TestUvicorn(unittest.TestCase):
    def test_uvicorn_serves_an_asgi_app(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        config = uvicorn.Config(hello_app, host="127.0.0.1", port=port, loop="asyncio", log_level="warning",
                                lifespan="off")
        server = uvicorn.Server(config)
        loops = []

        async def serve():
            loops.append(asyncio.get_running_loop())
            await server.serve()

        thread = threading.Thread(target=asyncio_cpp.run, args=(serve(),))
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertTrue(server.started)
            for _ in range(20):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    self.assertEqual((r.status, r.read()), (200, b"Hello, world!"))
            if shutil.which("wrk"):
                out = subprocess.run(["wrk", "-t1", "-c8", "-d1s", f"http://127.0.0.1:{port}/"],
                                     capture_output=True, text=True, timeout=30).stdout
                self.assertNotIn("Non-2xx", out)
                self.assertNotIn("Socket errors", out)
                requests = re.search(r"(\d+) requests in", out)
                self.assertIsNotNone(requests, out)
                self.assertGreater(int(requests.group(1)), 100, out)
        finally:
            server.should_exit = True
            thread.join(10)
        self.assertFalse(thread.is_alive())
        self.assertIsInstance(loops[0], asyncio_cpp.Loop)


if __name__ == "__main__":
    unittest.main()
