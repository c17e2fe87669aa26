// src/backend/make_backend.cpp - which backend a new loop gets.
#include "backend.hpp"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

namespace asyncio::detail {

namespace {

/// The backend named by $ASYNCIO_BACKEND, else epoll.
std::unique_ptr<Backend> make_chosen_backend() {
    const char* env = std::getenv("ASYNCIO_BACKEND");
    const std::string_view wanted = env ? env : "";
    if (wanted == "epoll") return make_epoll_backend();
    if (wanted == "io_uring") {
        if (auto backend = make_uring_backend()) return backend;
        throw std::runtime_error(
            "ASYNCIO_BACKEND=io_uring, but io_uring is not usable here (needs Linux 6.0+, liburing at build "
            "time, and io_uring not disabled by /proc/sys/kernel/io_uring_disabled or a seccomp filter); "
            "unset ASYNCIO_BACKEND or set it to epoll");
    }
    if (!wanted.empty())
        throw std::invalid_argument("ASYNCIO_BACKEND must be \"epoll\" or \"io_uring\", not \"" + std::string(wanted) +
                                    "\"");
    // io_uring is opt-in until it beats epoll on the echo benchmark (bench/README.md).
    return make_epoll_backend();
}

/// $ASYNCIO_SHUFFLE_SEED: each new backend gets its own stream of that seed (reproducible for
/// the same sequence of loops), 0 when unset.
std::uint64_t next_shuffle_seed() {
    static const char* const env = std::getenv("ASYNCIO_SHUFFLE_SEED");
    if (env == nullptr || *env == '\0') return 0;
    static std::atomic<std::uint64_t> backends{0};
    return (std::strtoull(env, nullptr, 10) + 1) * 0x9E3779B97F4A7C15ull + backends.fetch_add(1) + 1;
}

}  // namespace

std::unique_ptr<Backend> make_backend() {
    std::unique_ptr<Backend> backend = make_chosen_backend();
    if (std::uint64_t seed = next_shuffle_seed()) backend->shuffle_completions(seed);
    return backend;
}

}  // namespace asyncio::detail
