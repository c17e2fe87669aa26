"""asyncio_cpp.Loop's sock_* methods: the bytes arrive whole and in order, cancellation loses
nothing, errors are Python's OSErrors, bad input Python's TypeError/ValueError."""
import asyncio
import errno
import os
import socket
import tempfile
import unittest

import asyncio_cpp


class SockTestCase(unittest.TestCase):
    def setUp(self):
        self.loop = asyncio_cpp.new_event_loop()
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        self.loop.close()

    def pair(self):
        a, b = socket.socketpair()
        for s in (a, b):
            s.setblocking(False)
            self.socks.append(s)
        return a, b

    def listener(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        srv.setblocking(False)
        self.socks.append(srv)
        return srv

    def go(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, 10))


class TestSockStream(SockTestCase):
    def test_recv_returns_what_is_there_and_waits_when_nothing_is(self):
        a, b = self.pair()

        async def main():
            b.send(b"ready")
            first = await self.loop.sock_recv(a, 100)
            self.loop.call_later(0.02, b.send, b"later")
            second = await self.loop.sock_recv(a, 100)
            b.shutdown(socket.SHUT_WR)
            eof = await self.loop.sock_recv(a, 100)
            return first, second, eof

        self.assertEqual(self.go(main()), (b"ready", b"later", b""))

    def test_sendall_of_more_than_the_socket_buffer_arrives_whole_and_in_order(self):
        a, b = self.pair()
        data = bytes(range(256)) * 40000  # 10 MB

        async def reader():
            got = bytearray()
            buf = bytearray(65536)
            while len(got) < len(data):
                n = await self.loop.sock_recv_into(b, buf)
                self.assertGreater(n, 0)
                got += buf[:n]
            return bytes(got)

        async def main():
            r = asyncio.ensure_future(reader())
            await self.loop.sock_sendall(a, memoryview(data))
            return await r

        self.assertEqual(self.go(main()), data)

    def test_a_cancelled_recv_loses_no_bytes(self):
        # A receive cancelled while it waits (wait_for's timeout) must not consume what
        # arrives afterwards: the next receive gets every byte, in order. (A receive whose
        # bytes arrived in the very iteration its task is cancelled loses them on every loop,
        # the stock one too: the task ends cancelled with the data read - so the test sends
        # only after each timeout.)
        a, b = self.pair()

        async def main():
            got = b""
            for i in range(50):
                with self.assertRaises(TimeoutError):
                    await asyncio.wait_for(self.loop.sock_recv(a, 1000), 0.001 * (i % 3))
                b.send(b"%d;" % i)
                while not got.endswith(b"%d;" % i):
                    got += await self.loop.sock_recv(a, 1000)
            return got

        self.assertEqual(self.go(main()), b"".join(b"%d;" % i for i in range(50)))

    def test_connect_accept_and_echo(self):
        srv = self.listener()

        async def server():
            conn, addr = await self.loop.sock_accept(srv)
            self.socks.append(conn)
            self.assertFalse(conn.getblocking())
            self.assertEqual(addr[0], "127.0.0.1")
            while data := await self.loop.sock_recv(conn, 4096):
                await self.loop.sock_sendall(conn, data)
            conn.close()

        async def main():
            task = asyncio.create_task(server())
            c = socket.socket()
            c.setblocking(False)
            self.socks.append(c)
            await self.loop.sock_connect(c, srv.getsockname())
            replies = []
            for msg in (b"one", b"two" * 1000, b"three"):
                await self.loop.sock_sendall(c, msg)
                got = b""
                while len(got) < len(msg):
                    got += await self.loop.sock_recv(c, 65536)
                replies.append(got)
            c.shutdown(socket.SHUT_WR)
            await task
            return replies

        self.assertEqual(self.go(main()), [b"one", b"two" * 1000, b"three"])

    def test_sock_recv_can_be_a_task(self):
        a, b = self.pair()

        async def main():
            task = asyncio.create_task(self.loop.sock_recv(a, 10))
            await asyncio.sleep(0.01)
            b.send(b"x")
            return await task

        self.assertEqual(self.go(main()), b"x")

    def test_connect_to_a_closed_port_raises_connection_refused(self):
        srv = self.listener()
        address = srv.getsockname()
        srv.close()

        async def main():
            c = socket.socket()
            c.setblocking(False)
            self.socks.append(c)
            await self.loop.sock_connect(c, address)

        with self.assertRaises(ConnectionRefusedError):
            self.go(main())

    def test_errors_of_the_system_call_are_oserrors_with_errno(self):
        a, b = self.pair()
        b.close()

        async def main():
            # The peer is gone: the write end reports EPIPE (never a SIGPIPE).
            for _ in range(100):
                await self.loop.sock_sendall(a, b"x" * 65536)

        with self.assertRaises(OSError) as cm:
            self.go(main())
        self.assertIn(cm.exception.errno, (errno.EPIPE, errno.ECONNRESET))

    def test_bad_arguments_raise_python_errors(self):
        a, b = self.pair()

        async def main():
            with self.assertRaisesRegex(ValueError, "negative buffersize"):
                await self.loop.sock_recv(a, -1)
            with self.assertRaises(TypeError):
                await self.loop.sock_sendall(a, "text")
            with self.assertRaises(TypeError):
                await self.loop.sock_recv_into(a, b"read-only")
            # Not a socket: an error, as with the stock loop (AttributeError there, from
            # sock.recv; TypeError here, from its fileno()).
            with self.assertRaises((TypeError, AttributeError)):
                await self.loop.sock_recv(object(), 1)

        self.go(main())

    def test_blocking_sockets_are_refused_in_debug_mode(self):
        self.loop.set_debug(True)
        s = socket.socket()
        self.socks.append(s)

        async def main():
            with self.assertRaisesRegex(ValueError, "the socket must be non-blocking"):
                await self.loop.sock_recv(s, 1)

        self.go(main())


class TestSockClose(unittest.TestCase):
    def test_closing_the_loop_lets_go_of_a_waiting_receive(self):
        import gc
        import weakref
        loop = asyncio_cpp.new_event_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        fut = loop._sock_recv(a, 10)  # nothing to read: a pending wait on the backend
        self.assertFalse(fut.done())
        ref = weakref.ref(a)
        loop.close()
        self.assertFalse(fut.done())  # as the stock loop: never completed
        a.close()
        del a, fut
        gc.collect()
        self.assertIsNone(ref())
        b.close()


class TestSockDatagram(SockTestCase):
    def test_sendto_and_recvfrom(self):
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            self.socks.append(s)

        async def main():
            recv = asyncio.ensure_future(self.loop.sock_recvfrom(b, 100))
            await asyncio.sleep(0.01)
            n = await self.loop.sock_sendto(a, b"datagram", b.getsockname())
            data, addr = await recv
            buf = bytearray(100)
            await self.loop.sock_sendto(a, b"again", b.getsockname())
            nbytes, addr2 = await self.loop.sock_recvfrom_into(b, buf)
            return n, data, addr, bytes(buf[:nbytes]), addr2

        n, data, addr, again, addr2 = self.go(main())
        self.assertEqual((n, data, again), (8, b"datagram", b"again"))
        self.assertEqual(addr, a.getsockname())
        self.assertEqual(addr2, a.getsockname())


class TestSockSendfile(SockTestCase):
    def test_sendfile_sends_the_range_and_moves_the_file_position(self):
        a, b = self.pair()
        content = os.urandom(300_000)
        with tempfile.TemporaryFile() as f:
            f.write(content)
            f.seek(0)

            async def reader(n):
                got = b""
                while len(got) < n:
                    got += await self.loop.sock_recv(b, 65536)
                return got

            async def main():
                r = asyncio.ensure_future(reader(200_000))
                sent = await self.loop.sock_sendfile(a, f, 1000, 200_000)
                return sent, await r, f.tell()

            sent, got, pos = self.go(main())
        self.assertEqual(sent, 200_000)
        self.assertEqual(got, content[1000:201_000])
        self.assertEqual(pos, 201_000)

    def test_sendfile_checks_its_parameters(self):
        a, b = self.pair()

        async def main():
            with tempfile.TemporaryFile() as f:
                with self.assertRaisesRegex(ValueError, "count must be a positive integer"):
                    await self.loop.sock_sendfile(a, f, 0, 0)
                with self.assertRaisesRegex(ValueError, "offset must be a non-negative integer"):
                    await self.loop.sock_sendfile(a, f, -1)
            with tempfile.TemporaryFile("w") as f:
                with self.assertRaisesRegex(ValueError, "binary mode"):
                    await self.loop.sock_sendfile(a, f)

        self.go(main())


if __name__ == "__main__":
    unittest.main()
