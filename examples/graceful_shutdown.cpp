// examples/graceful_shutdown.cpp - a TCP echo server that shuts down gracefully on SIGTERM or
// SIGINT: it stops accepting, lets the connections in progress finish (up to a grace period),
// then exits 0. The loop's signal handlers are ordinary callbacks (no work in the C handler).
//
//   ./graceful_shutdown [port]        (default 8888)
//   kill -TERM <pid>                  (or Ctrl-C)
//
// Python:
//   loop = asyncio.get_running_loop()
//   stop = loop.create_future()
//   loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
//   async with server: await stop   ... server.close(); await asyncio.wait_for(server.wait_closed(), 10)
#include <asyncio.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

asyncio::Coro<> echo(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
    for (;;) {
        std::string data = co_await reader.read(65536);
        if (data.empty()) break;
        writer.write(data);
        co_await writer.drain();
    }
    writer.close();
    co_await writer.wait_closed();
}

asyncio::Coro<> serve(int port) {
    asyncio::EventLoop& loop = asyncio::get_running_loop();
    asyncio::Event stop;
    for (int sig : {SIGTERM, SIGINT})
        loop.add_signal_handler(sig, [&stop, sig] {
            std::printf("\nsignal %d: shutting down\n", sig);
            stop.set();
        });
    asyncio::Server server = co_await asyncio::start_server(echo, "127.0.0.1", port);
    std::printf("serving on 127.0.0.1:%d (pid %d); SIGTERM or Ctrl-C stops it\n", port, int(::getpid()));
    std::fflush(stdout);

    co_await stop.wait();
    server.close();  // no new connections; the open ones go on
    try {
        co_await asyncio::wait_for(server.wait_closed(), 10.0);
        std::printf("every connection finished\n");
    } catch (const asyncio::TimeoutError&) {
        std::printf("grace period over: closing the remaining connections\n");
        server.close_clients();
    }
    for (int sig : {SIGTERM, SIGINT}) loop.remove_signal_handler(sig);  // the defaults are back
}

int main(int argc, char** argv) {
    int port = argc > 1 ? std::atoi(argv[1]) : 8888;
    asyncio::run(serve(port));
    return 0;
}
