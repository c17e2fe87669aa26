// bench/subprocess/peers/subprocess_boost.cpp - the subprocess benchmark on Boost.Process v2
// (Boost 1.81, Debian's libboost1.81-dev) over Boost.Asio with C++20 coroutines: the C++ peer.
//
//   spawn  N times: start /bin/true, async_wait for it; C at once (C=1: one after the other)
//   pipe   SIZE bytes into `cat` and SIZE bytes back out, both directions at once
//
// Prints one JSON line like the Python peer. Usage:
//   subprocess_boost spawn N C
//   subprocess_boost pipe SIZE
// Boost 1.81's process/v2 headers use these without including them.
#include <boost/optional.hpp>
#include <type_traits>

#include <boost/asio.hpp>
#include <boost/process/v2.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace asio = boost::asio;
namespace bp = boost::process::v2;

namespace {

asio::awaitable<void> spawn_worker(int& remaining) {
    auto executor = co_await asio::this_coro::executor;
    while (remaining > 0) {
        --remaining;
        bp::process proc(executor, bp::filesystem::path("/bin/true"), std::vector<std::string>{});
        int rc = co_await proc.async_wait(asio::use_awaitable);
        if (rc != 0) std::abort();
    }
}

asio::awaitable<void> write_all(asio::writable_pipe& in, const std::string& data) {
    co_await asio::async_write(in, asio::buffer(data), asio::use_awaitable);
    in.close();
}

asio::awaitable<void> read_all(asio::readable_pipe& out, std::string& into) {
    char buf[65536];
    for (;;) {
        auto [ec, n] = co_await out.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
        into.append(buf, n);
        if (ec) break;
    }
}

asio::awaitable<void> pipe(std::size_t size) {
    auto executor = co_await asio::this_coro::executor;
    asio::readable_pipe out(executor);
    asio::writable_pipe in(executor);
    bp::process proc(executor, bp::filesystem::path("/bin/cat"), std::vector<std::string>{},
                     bp::process_stdio{in, out, {}});
    std::string data(size, 'x'), got;
    got.reserve(size);
    asio::co_spawn(executor, write_all(in, data), asio::detached);
    co_await read_all(out, got);
    co_await proc.async_wait(asio::use_awaitable);
    if (got.size() != size) std::abort();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s spawn N C | pipe SIZE\n", argv[0]);
        return 2;
    }
    std::string mode = argv[1];
    asio::io_context ctx;
    int n = 0, concurrency = 1;
    std::size_t size = 0;
    auto start = std::chrono::steady_clock::now();
    if (mode == "spawn") {
        n = std::atoi(argv[2]);
        concurrency = argc > 3 ? std::atoi(argv[3]) : 1;
        int remaining = n;
        for (int i = 0; i < concurrency; ++i) asio::co_spawn(ctx, spawn_worker(remaining), asio::detached);
    } else {
        size = std::strtoull(argv[2], nullptr, 10);
        asio::co_spawn(ctx, pipe(size), asio::detached);
    }
    ctx.run();
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf(
        "{\"peer\": \"boost.process\", \"mode\": \"%s\", \"n\": %d, \"concurrency\": %d, \"bytes\": %zu, "
        "\"seconds\": %.6f}\n",
        mode.c_str(), n, concurrency, size, seconds);
}
