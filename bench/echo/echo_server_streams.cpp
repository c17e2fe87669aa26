// bench/echo/echo_server_streams.cpp - asyncio-cpp echo server with streams: the Python
// asyncio streams server of python_server.py, line for line.
//   echo_server_streams --port P [--backend epoll|io_uring]
#include <asyncio.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <sys/resource.h>

namespace {
asyncio::Coro<void> handle(asyncio::StreamReader reader, asyncio::StreamWriter writer) {
    try {
        for (;;) {
            std::string data = co_await reader.read(65536);
            if (data.empty()) break;
            writer.write(data);
            co_await writer.drain();
        }
    } catch (const std::system_error&) {
        // reset by the peer: just close
    }
    writer.close();
}

asyncio::Coro<void> serve(int port) {
    asyncio::ServerOptions opts;
    opts.backlog = 4096;
    asyncio::Server server = co_await asyncio::start_server(handle, "127.0.0.1", port, opts);
    co_await server.serve_forever();
}

void raise_nofile_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
    }
}
}  // namespace

int main(int argc, char** argv) {
    int port = 0;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], "--port") == 0)
            port = std::atoi(argv[i + 1]);
        else if (std::strcmp(argv[i], "--backend") == 0)
            ::setenv("ASYNCIO_BACKEND", argv[i + 1], 1);  // epoll (default) or io_uring
    if (port <= 0) {
        std::fprintf(stderr, "usage: %s --port P [--backend epoll|io_uring]\n", argv[0]);
        return 2;
    }
    raise_nofile_limit();
    try {
        asyncio::run(serve(port));
    } catch (const asyncio::CancelledError&) {
    } catch (const asyncio::KeyboardInterrupt&) {
    } catch (const std::exception& e) {
        std::fprintf(stderr, "echo_server_streams: %s\n", e.what());
        return 1;
    }
}
