"""asyncio_cpp.Loop.create_datagram_endpoint: datagrams whole, addresses as Python gives them,
errors through error_received, the sock= form and its argument checks."""
import asyncio
import os
import socket
import sys
import tempfile
import unittest

import asyncio_cpp


class Collector(asyncio.DatagramProtocol):
    def __init__(self):
        self.datagrams = []
        self.errors = []
        self.lost = []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.datagrams.append((data, addr))

    def error_received(self, exc):
        self.errors.append(exc)

    def connection_lost(self, exc):
        self.lost.append(exc)


class TestDatagram(unittest.TestCase):
    def setUp(self):
        self.loop = asyncio_cpp.new_event_loop()

    def tearDown(self):
        self.loop.close()

    def go(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, 10))

    async def until(self, predicate):
        while not predicate():
            await asyncio.sleep(0.001)

    def test_a_burst_of_datagrams_arrives_whole_with_the_senders_address(self):
        async def main():
            server_t, server = await self.loop.create_datagram_endpoint(Collector, local_addr=("127.0.0.1", 0))
            addr = server_t.get_extra_info("sockname")
            client_t, client = await self.loop.create_datagram_endpoint(Collector, remote_addr=addr)
            self.assertIsInstance(client_t, asyncio.DatagramTransport)
            self.assertEqual(client_t.get_extra_info("peername"), addr)
            sent = [os.urandom(n) for n in (1, 100, 1400, 8000) * 10]
            for d in sent:
                client_t.sendto(d)
            await self.until(lambda: len(server.datagrams) == len(sent))
            self.assertEqual([d for d, _ in server.datagrams], sent)
            self.assertEqual({a for _, a in server.datagrams}, {client_t.get_extra_info("sockname")})
            # The server answers each sender at its address.
            server_t.sendto(b"reply", server.datagrams[0][1])
            await self.until(lambda: client.datagrams)
            self.assertEqual(client.datagrams, [(b"reply", addr)])
            client_t.close()
            server_t.close()
            await self.until(lambda: client.lost and server.lost)
            self.assertEqual((client.lost, server.lost), ([None], [None]))

        self.go(main())

    def test_a_refused_datagram_goes_to_error_received(self):
        async def main():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            addr = s.getsockname()
            s.close()
            t, p = await self.loop.create_datagram_endpoint(Collector, remote_addr=addr)
            t.sendto(b"nobody there")
            await self.until(lambda: p.errors)
            self.assertIsInstance(p.errors[0], ConnectionRefusedError)
            self.assertFalse(t.is_closing())
            t.close()

        self.go(main())

    def test_unix_datagrams(self):
        async def main():
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "dgram")
                st, server = await self.loop.create_datagram_endpoint(Collector, local_addr=path,
                                                                       family=socket.AF_UNIX)
                ct, client = await self.loop.create_datagram_endpoint(Collector, remote_addr=path,
                                                                       family=socket.AF_UNIX)
                ct.sendto(b"over unix")
                await self.until(lambda: server.datagrams)
                self.assertEqual(server.datagrams[0][0], b"over unix")
                ct.close()
                st.close()

        self.go(main())

    def test_sock_and_its_argument_checks(self):
        async def main():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            with self.assertRaisesRegex(ValueError, "socket modifier keyword arguments can not be used"):
                await self.loop.create_datagram_endpoint(Collector, sock=s, family=socket.AF_INET)
            t, p = await self.loop.create_datagram_endpoint(Collector, sock=s)
            # As the stock loop: the caller's socket stays usable, is the 'socket' extra, and
            # is closed with the endpoint.
            self.assertEqual(s.getsockname(), t.get_extra_info("sockname"))
            self.assertEqual(t.get_extra_info("socket").fileno(), s.fileno())
            stream = socket.socket()
            # Each version's own wording.
            expected = "A datagram socket was expected" if sys.version_info >= (3, 13) else "A UDP Socket was expected"
            with self.assertRaisesRegex(ValueError, expected):
                await self.loop.create_datagram_endpoint(Collector, sock=stream)
            stream.close()
            for bad in ("localhost", ("localhost", 1, 2, 3)):
                with self.assertRaisesRegex(TypeError, "2-tuple is expected"):
                    await self.loop.create_datagram_endpoint(Collector, local_addr=bad)
                with self.assertRaisesRegex(TypeError, "2-tuple is expected"):
                    await self.loop.create_datagram_endpoint(Collector, remote_addr=bad)
            with self.assertRaisesRegex(ValueError, "Passing `reuse_address=True` is no longer supported"):
                await self.loop.create_datagram_endpoint(Collector, local_addr=("127.0.0.1", 0),
                                                         reuse_address=True)
            with self.assertRaisesRegex(TypeError, "bytes-like"):
                t.sendto("text", ("127.0.0.1", 9))
            t.close()
            await self.until(lambda: p.lost)
            self.assertEqual(s.fileno(), -1)

        self.go(main())


if __name__ == "__main__":
    unittest.main()
