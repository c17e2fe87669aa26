// bench/echo/echo_server_protocol.cpp - asyncio-cpp echo server with a Protocol: the Python
// asyncio protocol server of python_server.py (data_received -> transport.write).
//   echo_server_protocol --port P [--backend epoll|io_uring]
#include <asyncio.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <sys/resource.h>

namespace {
struct EchoProtocol final : asyncio::Protocol {
    std::shared_ptr<asyncio::Transport> transport;
    void connection_made(std::shared_ptr<asyncio::Transport> t) override { transport = std::move(t); }
    void data_received(std::string_view data) override { transport->write(data); }
    void connection_lost(std::exception_ptr) override { transport.reset(); }
};

asyncio::Coro<void> serve(int port) {
    asyncio::ServerOptions opts;
    opts.backlog = 4096;
    asyncio::EventLoop& loop = asyncio::get_running_loop();
    asyncio::Server server =
        co_await loop.create_server([] { return std::make_shared<EchoProtocol>(); }, "127.0.0.1", port, opts);
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
    } catch (const std::exception& e) {
        std::fprintf(stderr, "echo_server_protocol: %s\n", e.what());
        return 1;
    }
}
