// src/backend/make_backend.cpp - which backend a new loop gets.
#include "backend.hpp"

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

namespace asyncio::detail {

std::unique_ptr<Backend> make_backend() {
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

}  // namespace asyncio::detail
