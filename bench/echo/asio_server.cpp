// Echo benchmark: Boost.Asio 1.81 echo server with C++20 coroutines.
//
// One io_context (concurrency hint 1) run by one thread. The acceptor coroutine co_spawns one
// session coroutine per connection (TCP_NODELAY); a session loops
//   n = co_await async_read_some(64 KiB buffer); co_await async_write(n bytes)
// with use_awaitable, so at most 64 KiB per connection is in flight, the same as the C epoll
// server. The buffer lives in the coroutine frame (one 64 KiB allocation per connection;
// only the pages actually written become resident).
//
// Usage: asio_server --port P     (listens on 127.0.0.1:P; prints nothing but errors)
// Build: g++ -std=c++20 -O2 asio_server.cpp -o asio_server -pthread

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include <sys/resource.h>

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

asio::awaitable<void> session(tcp::socket sock) {
    std::array<char, 64 * 1024> buf;
    try {
        for (;;) {
            std::size_t n = co_await sock.async_read_some(asio::buffer(buf), asio::use_awaitable);
            co_await asio::async_write(sock, asio::buffer(buf.data(), n), asio::use_awaitable);
        }
    } catch (const boost::system::system_error&) {
        // EOF or reset: the client is gone.
    }
}

asio::awaitable<void> listener(tcp::acceptor& acceptor) {
    for (;;) {
        boost::system::error_code ec;
        tcp::socket sock = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
            if (ec != asio::error::connection_aborted)
                std::fprintf(stderr, "asio_server: accept: %s\n", ec.message().c_str());
            continue;
        }
        sock.set_option(tcp::no_delay(true), ec);
        asio::co_spawn(acceptor.get_executor(), session(std::move(sock)), asio::detached);
    }
}

void raise_nofile() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

}  // namespace

int main(int argc, char** argv) {
    int port = -1;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--port") && i + 1 < argc) {
            port = std::atoi(argv[++i]);
        } else {
            std::fprintf(stderr, "usage: %s --port P\n", argv[0]);
            return 2;
        }
    }
    if (port <= 0 || port > 65535) {
        std::fprintf(stderr, "usage: %s --port P\n", argv[0]);
        return 2;
    }
    raise_nofile();
    try {
        asio::io_context ctx(1);
        tcp::acceptor acceptor(ctx);
        tcp::endpoint ep(asio::ip::address_v4::loopback(), static_cast<unsigned short>(port));
        acceptor.open(ep.protocol());
        acceptor.set_option(tcp::acceptor::reuse_address(true));
        acceptor.bind(ep);
        acceptor.listen(tcp::acceptor::max_listen_connections);
        asio::co_spawn(ctx, listener(acceptor), asio::detached);
        ctx.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "asio_server: %s\n", e.what());
        return 1;
    }
    return 0;
}
