"""asyncio_cpp.Loop's connections and servers: Python's streams unchanged, Protocol and
BufferedProtocol over the C++ transports, flow control, servers, Unix sockets, errors."""
import asyncio
import errno
import os
import socket
import sys
import tempfile
import unittest

import asyncio_cpp


class ConnTestCase(unittest.TestCase):
    def setUp(self):
        self.loop = asyncio_cpp.new_event_loop()
        self.errors = []
        self.loop.set_exception_handler(lambda loop, context: self.errors.append(context))

    def tearDown(self):
        self.loop.close()

    def go(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, 20))


async def echo_handler(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()
    await writer.wait_closed()


class Recorder(asyncio.Protocol):
    def __init__(self):
        self.events = []
        self.data = bytearray()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        assert isinstance(data, bytes), type(data)
        self.data += data

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))


class TestStreams(ConnTestCase):
    def test_streams_echo_many_sizes_whole_and_in_order(self):
        async def main():
            server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for size in (1, 1024, 10 * 1024, 100 * 1024, 3 * 1024 * 1024):
                msg = os.urandom(size)
                writer.write(msg)
                await writer.drain()
                self.assertEqual(await reader.readexactly(size), msg)
            writer.write_eof()
            self.assertEqual(await reader.read(), b"")
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()

        self.go(main())
        self.assertEqual(self.errors, [])

    def test_extra_info_has_pythons_keys(self):
        async def main():
            async with await asyncio.start_server(echo_handler, "127.0.0.1", 0) as server:
                port = server.sockets[0].getsockname()[1]
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                peer = writer.get_extra_info("peername")
                name = writer.get_extra_info("sockname")
                sock = writer.get_extra_info("socket")
                self.assertEqual(peer, ("127.0.0.1", port))
                self.assertEqual(name[0], "127.0.0.1")
                self.assertEqual(sock.getpeername(), peer)
                self.assertEqual(sock.family, socket.AF_INET)
                self.assertIsNone(writer.get_extra_info("nothing"))
                self.assertEqual(writer.get_extra_info("nothing", 5), 5)
                writer.close()
                await writer.wait_closed()

        self.go(main())

    def test_many_clients_at_once(self):
        async def client(port, i):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            msg = b"client %d " % i * 100
            writer.write(msg)
            got = await reader.readexactly(len(msg))
            writer.close()
            await writer.wait_closed()
            return got == msg

        async def main():
            server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            results = await asyncio.gather(*[client(port, i) for i in range(200)])
            server.close()
            await server.wait_closed()
            return results

        self.assertEqual(self.go(main()), [True] * 200)

    def test_connection_refused_is_an_oserror(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with self.assertRaises(ConnectionRefusedError):
            self.go(asyncio.open_connection("127.0.0.1", port))


class TestProtocols(ConnTestCase):
    def test_protocol_callbacks_in_pythons_order(self):
        async def main():
            server_protocols = []

            def factory():
                p = Recorder()
                server_protocols.append(p)
                return p

            server = await self.loop.create_server(factory, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            transport, client = await self.loop.create_connection(Recorder, "127.0.0.1", port)
            self.assertIsInstance(transport, asyncio_cpp.Transport)
            self.assertIsInstance(transport, asyncio.Transport)  # code may check the interface
            self.assertIs(transport.get_protocol(), client)
            transport.write(b"abc")
            transport.writelines([b"d", bytearray(b"e"), memoryview(b"f")])
            while len(server_protocols) < 1 or len(server_protocols[0].data) < 6:
                await asyncio.sleep(0.001)
            transport.write_eof()
            while "eof" not in server_protocols[0].events:
                await asyncio.sleep(0.001)
            server_protocols[0].transport.close()
            while len(client.events) < 3:
                await asyncio.sleep(0.001)
            server.close()
            await server.wait_closed()
            return server_protocols[0], client

        srv, cli = self.go(main())
        self.assertEqual(bytes(srv.data), b"abcdef")
        self.assertEqual(srv.events[:2], ["made", "eof"])
        self.assertEqual(cli.events, ["made", "eof", ("lost", None)])

    def test_write_refuses_str(self):
        async def main():
            server = await self.loop.create_server(Recorder, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            transport, _ = await self.loop.create_connection(Recorder, "127.0.0.1", port)
            with self.assertRaisesRegex(TypeError, "data argument must be a bytes-like object, not 'str'"):
                transport.write("text")
            transport.close()
            server.close()
            await server.wait_closed()

        self.go(main())

    def test_buffered_protocol_receives_into_its_own_buffer(self):
        class Buffered(asyncio.BufferedProtocol):
            def __init__(self):
                self.buf = bytearray(1000)
                self.got = bytearray()
                self.done = asyncio.get_running_loop().create_future()

            def get_buffer(self, sizehint):
                return self.buf

            def buffer_updated(self, nbytes):
                self.got += self.buf[:nbytes]

            def eof_received(self):
                self.done.set_result(bytes(self.got))

        async def main():
            protos = []

            def factory():
                protos.append(Buffered())
                return protos[-1]

            server = await self.loop.create_server(factory, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            payload = os.urandom(50_000)
            writer.write(payload)
            writer.write_eof()
            while not protos:
                await asyncio.sleep(0.001)
            got = await protos[0].done
            writer.close()
            server.close()
            await server.wait_closed()
            return got, payload

        got, payload = self.go(main())
        self.assertEqual(got, payload)

    def test_flow_control_pauses_and_resumes_writing(self):
        class Writer(asyncio.Protocol):
            def __init__(self):
                self.paused = 0
                self.resumed = 0

            def connection_made(self, transport):
                self.transport = transport
                transport.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)

            def pause_writing(self):
                self.paused += 1

            def resume_writing(self):
                self.resumed += 1

        async def main():
            a, b = socket.socketpair()
            transport, proto = await self.loop.connect_accepted_socket(Writer, a)
            self.assertEqual(transport.get_write_buffer_limits(), (16 * 1024, 64 * 1024))
            transport.write(b"x" * (4 * 1024 * 1024))
            self.assertGreater(transport.get_write_buffer_size(), 64 * 1024)
            self.assertEqual(proto.paused, 1)
            b.setblocking(False)
            total = 0
            while total < 4 * 1024 * 1024:
                try:
                    total += len(b.recv(1 << 20))
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            while proto.resumed == 0:
                await asyncio.sleep(0.001)
            transport.close()
            b.close()
            return proto.paused, proto.resumed

        self.assertEqual(self.go(main()), (1, 1))

    def test_an_exception_in_data_received_is_reported_and_closes_the_connection(self):
        class Bad(asyncio.Protocol):
            def data_received(self, data):
                raise ZeroDivisionError("in data_received")

        async def main():
            server = await self.loop.create_server(Bad, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"boom")
            self.assertEqual(await reader.read(), b"")  # the server closed it
            writer.close()
            server.close()
            await server.wait_closed()

        self.go(main())
        self.assertEqual(len(self.errors), 1)
        self.assertIsInstance(self.errors[0]["exception"], ZeroDivisionError)
        self.assertIn("data_received", self.errors[0]["message"])


class TestWriteCoalescing(ConnTestCase):
    # Like uvloop, the writes of one loop iteration go out together once its callbacks have
    # run: nothing is lost or reordered by close() or write_eof() right after them.
    def check_peer_receives(self, finish):
        async def main():
            a, b = socket.socketpair()
            b.setblocking(False)
            transport, _ = await self.loop.connect_accepted_socket(asyncio.Protocol, a)
            for piece in (b"head", b"-", b"body" * 50_000, b"-", b"tail"):
                transport.write(piece)
            finish(transport)
            got = b""
            while True:
                chunk = await self.loop.sock_recv(b, 1 << 20)
                if not chunk:
                    break
                got += chunk
            b.close()
            if not transport.is_closing():
                transport.close()
            return got

        self.assertEqual(self.go(main()), b"head-" + b"body" * 50_000 + b"-tail")

    def test_writes_then_close(self):
        self.check_peer_receives(lambda t: t.close())

    def test_writes_then_write_eof(self):
        self.check_peer_receives(lambda t: t.write_eof())

    def test_many_small_writes_in_one_callback_arrive_in_order(self):
        async def main():
            a, b = socket.socketpair()
            b.setblocking(False)
            transport, _ = await self.loop.connect_accepted_socket(asyncio.Protocol, a)
            for i in range(10_000):
                transport.write(b"%d," % i)
            transport.close()
            got = b""
            while chunk := await self.loop.sock_recv(b, 1 << 20):
                got += chunk
            b.close()
            return got

        self.assertEqual(self.go(main()), b"".join(b"%d," % i for i in range(10_000)))


class TestSendfile(ConnTestCase):
    def test_loop_sendfile_sends_the_range_over_a_transport(self):
        content = os.urandom(500_000)

        async def main():
            got = bytearray()
            done = self.loop.create_future()

            class Sink(asyncio.Protocol):
                def data_received(self, data):
                    got.extend(data)
                    if len(got) >= 400_000 and not done.done():
                        done.set_result(None)

            server = await self.loop.create_server(Sink, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            transport, _ = await self.loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            with tempfile.TemporaryFile() as f:
                f.write(content)
                f.flush()
                sent = await self.loop.sendfile(transport, f, 1000, 400_000)
                pos = f.tell()
            await done
            transport.close()
            server.close()
            await server.wait_closed()
            return sent, bytes(got), pos

        sent, got, pos = self.go(main())
        self.assertEqual(sent, 400_000)
        self.assertEqual(got, content[1000:401_000])
        self.assertEqual(pos, 401_000)


class TestServers(ConnTestCase):
    def test_serve_forever_ends_when_cancelled_and_closes_the_server(self):
        async def main():
            server = await asyncio.start_server(echo_handler, "127.0.0.1", 0, start_serving=False)
            self.assertFalse(server.is_serving())
            task = asyncio.create_task(server.serve_forever())
            await asyncio.sleep(0.01)
            self.assertTrue(server.is_serving())
            task.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await task
            self.assertFalse(server.is_serving())
            self.assertEqual(server.sockets, ())

        self.go(main())

    def test_close_clients_and_abort_clients(self):
        async def main():
            server = await asyncio.start_server(echo_handler, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            await asyncio.sleep(0.01)
            server.close()
            server.abort_clients()
            for reader, writer in conns:
                self.assertEqual(await reader.read(), b"")
                writer.close()
            await server.wait_closed()

        self.go(main())

    def test_unix_sockets(self):
        async def main():
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "sock")
                server = await asyncio.start_unix_server(echo_handler, path)
                reader, writer = await asyncio.open_unix_connection(path)
                writer.write(b"over unix")
                self.assertEqual(await reader.readexactly(9), b"over unix")
                self.assertEqual(writer.get_extra_info("peername"), path)
                writer.close()
                await writer.wait_closed()
                server.close()
                await server.wait_closed()

        self.go(main())

    def test_unix_server_socket_file_is_removed_on_close_as_the_interpreters_own_loop_does(self):
        # Python 3.13's create_unix_server(cleanup_socket=True) removes the file, for a path and
        # for a bound sock=; earlier versions leave it. cleanup_socket=False always leaves it.
        removes = sys.version_info >= (3, 13)

        async def serve_and_close(path, **kw):
            if kw.pop("bound_sock", False):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.bind(path)
                server = await self.loop.create_unix_server(asyncio.Protocol, sock=sock, **kw)
            else:
                server = await self.loop.create_unix_server(asyncio.Protocol, path, **kw)
            self.assertTrue(os.path.exists(path))
            server.close()
            await server.wait_closed()
            return os.path.exists(path)

        async def main():
            with tempfile.TemporaryDirectory() as d:
                self.assertEqual(await serve_and_close(os.path.join(d, "a")), not removes)
                self.assertEqual(await serve_and_close(os.path.join(d, "b"), bound_sock=True), not removes)
                self.assertTrue(await serve_and_close(os.path.join(d, "c"), cleanup_socket=False))
                self.assertTrue(await serve_and_close(os.path.join(d, "d"), bound_sock=True, cleanup_socket=False))

        self.go(main())

    def test_unix_server_on_a_file_that_is_not_a_socket_names_the_address(self):
        async def main():
            with tempfile.NamedTemporaryFile() as f:
                with self.assertRaises(OSError) as caught:
                    await self.loop.create_unix_server(asyncio.Protocol, f.name)
                self.assertEqual(caught.exception.errno, errno.EADDRINUSE)
                self.assertEqual(caught.exception.strerror, f"Address {f.name!r} is already in use")
                self.assertTrue(os.path.isfile(f.name))  # not removed: only a socket file is replaced

        self.go(main())

    def test_create_server_on_a_socket_and_create_connection_with_sock(self):
        async def main():
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            port = listener.getsockname()[1]
            server = await asyncio.start_server(echo_handler, sock=listener)
            s = socket.create_connection(("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=s)
            writer.write(b"via sock")
            self.assertEqual(await reader.readexactly(8), b"via sock")
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()

        self.go(main())

    def test_argument_errors_are_pythons(self):
        async def main():
            with self.assertRaisesRegex(ValueError, "host and port was not specified and no sock specified"):
                await self.loop.create_connection(Recorder)
            s = socket.socket()
            with self.assertRaisesRegex(ValueError, "host/port and sock can not be specified at the same time"):
                await self.loop.create_connection(Recorder, "127.0.0.1", 1, sock=s)
            s.close()
            with self.assertRaisesRegex(ValueError, "Neither host/port nor sock were specified"):
                await self.loop.create_server(Recorder)
            with self.assertRaisesRegex(TypeError, "ssl argument must be an SSLContext or None"):
                await self.loop.create_server(Recorder, "127.0.0.1", 0, ssl=True)
            with self.assertRaisesRegex(ValueError, "server_hostname is only meaningful with ssl"):
                await self.loop.create_connection(Recorder, "127.0.0.1", 1, server_hostname="x")

        self.go(main())


if __name__ == "__main__":
    unittest.main()
