// examples/echo_server.cpp - the Python docs' "TCP echo server using streams", in C++.
//
//   ./echo_server [port]        (default 8888; Ctrl-C stops it)
//
// Python:
//   async def handle_echo(reader, writer):
//       data = await reader.read(100)
//       message = data.decode()
//       addr = writer.get_extra_info('peername')
//       print(f"Received {message!r} from {addr!r}")
//       writer.write(data)
//       await writer.drain()
//       writer.close()
//       await writer.wait_closed()
#include <asyncio.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

asyncio::Coro<> handle_echo(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
    std::string data = co_await reader.read(100);
    auto addr = writer.get_extra_info<asyncio::SockAddr>("peername", {});
    std::printf("Received '%s' from %s\n", data.c_str(), addr.to_string().c_str());
    std::printf("Send: '%s'\n", data.c_str());
    writer.write(data);
    co_await writer.drain();
    std::printf("Close the connection\n");
    writer.close();
    co_await writer.wait_closed();
}

asyncio::Coro<> serve(int port) {
    asyncio::Server server = co_await asyncio::start_server(handle_echo, "127.0.0.1", port);
    for (auto& sock : server.sockets()) std::printf("Serving on %s\n", sock.getsockname().to_string().c_str());
    std::fflush(stdout);
    co_await server.serve_forever();
}

int main(int argc, char** argv) {
    int port = argc > 1 ? std::atoi(argv[1]) : 8888;
    try {
        asyncio::run(serve(port));
    } catch (const asyncio::KeyboardInterrupt&) {
        std::printf("\nbye\n");
    }
}
