// examples/http_hello.cpp - a tiny HTTP/1.1 "hello world" server with keep-alive, on
// streams. Load it with wrk (numbers in examples/README.md):
//
//   ./http_hello [port] [loops]     (default 8080; loops > 1: one loop per core, reuse_port)
//   wrk -t2 -c100 -d10s http://127.0.0.1:8080/
//
// The scale-out pattern: one EventLoop per thread, each with its own server bound to the
// same port with reuse_port; the kernel spreads the connections over them.
#include <asyncio.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {
constexpr std::string_view response =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "Hello, World!";

/// Serves requests on one keep-alive connection: reads each request head (up to the blank
/// line; request bodies are not supported: this is a hello world), answers it.
asyncio::Coro<> handle(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
    try {
        for (;;) {
            std::string head = co_await reader.readuntil("\r\n\r\n");
            const bool close = head.find("Connection: close") != std::string::npos;
            writer.write(response);
            co_await writer.drain();
            if (close) break;
        }
    } catch (const asyncio::IncompleteReadError&) {
        // the client closed the connection
    } catch (const asyncio::LimitOverrunError&) {
        writer.write("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n");
    } catch (const std::system_error&) {
        // reset by the peer
    }
    writer.close();
}

asyncio::Coro<> serve(int port, bool reuse_port) {
    asyncio::ServerOptions opts;
    opts.reuse_port = reuse_port;
    opts.backlog = 1024;
    asyncio::Server server = co_await asyncio::start_server(handle, "127.0.0.1", port, opts);
    co_await server.serve_forever();
}
}  // namespace

int main(int argc, char** argv) {
    int port = argc > 1 ? std::atoi(argv[1]) : 8080;
    int loops = argc > 2 ? std::atoi(argv[2]) : 1;
    std::printf("http_hello: http://127.0.0.1:%d/ with %d loop(s)\n", port, loops);
    std::fflush(stdout);
    if (loops <= 1) {
        try {
            asyncio::run(serve(port, false));
        } catch (const asyncio::KeyboardInterrupt&) {
        }
        return 0;
    }
    // One loop per thread, all listening on the same port (SO_REUSEPORT).
    std::vector<std::thread> threads;
    for (int i = 0; i < loops; ++i) threads.emplace_back([port] { asyncio::run(serve(port, true)); });
    for (auto& t : threads) t.join();
}
