// bench/subprocess/subprocess_ours.cpp - the subprocess benchmark on asyncio-cpp, the same
// program as peers/subprocess_asyncio.py:
//
//   spawn  N x create_subprocess_exec("/bin/true") + wait(), C at once (C=1: one after the other)
//   pipe   communicate() of SIZE bytes through `cat`, SIZE bytes read back
//
// Prints one JSON line. Usage: subprocess_ours spawn N C | subprocess_ours pipe SIZE
#include <asyncio.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

asyncio::Coro<void> spawn_worker(int& remaining) {
    std::vector<std::string> argv{"/bin/true"};
    while (remaining > 0) {
        --remaining;
        asyncio::Process p = co_await asyncio::create_subprocess_exec(argv);
        if (co_await p.wait() != 0) std::abort();
    }
}

asyncio::Coro<void> spawn(int n, int concurrency) {
    int remaining = n;
    std::vector<asyncio::Coro<void>> workers;
    for (int i = 0; i < concurrency; ++i) workers.push_back(spawn_worker(remaining));
    co_await asyncio::gather(std::move(workers));
}

asyncio::Coro<void> pipe(std::size_t size) {
    std::vector<std::string> argv{"cat"};
    asyncio::SubprocessOptions opts;
    opts.stdin_ = asyncio::PIPE;
    opts.stdout_ = asyncio::PIPE;
    asyncio::Process p = co_await asyncio::create_subprocess_exec(argv, opts);
    auto [out, err] = co_await p.communicate(std::string(size, 'x'));
    if (out.size() != size) std::abort();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s spawn N C | pipe SIZE\n", argv[0]);
        return 2;
    }
    std::string mode = argv[1];
    int n = 0, concurrency = 1;
    std::size_t size = 0;
    auto start = std::chrono::steady_clock::now();
    if (mode == "spawn") {
        n = std::atoi(argv[2]);
        concurrency = argc > 3 ? std::atoi(argv[3]) : 1;
        asyncio::run(spawn(n, concurrency));
    } else {
        size = std::strtoull(argv[2], nullptr, 10);
        asyncio::run(pipe(size));
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf(
        "{\"peer\": \"ours\", \"mode\": \"%s\", \"n\": %d, \"concurrency\": %d, \"bytes\": %zu, "
        "\"seconds\": %.6f}\n",
        mode.c_str(), n, concurrency, size, seconds);
}
