// src/loop/signals.cpp - process-wide signal recording (see signals.hpp) and the loop's
// add_signal_handler/remove_signal_handler.
#include "signals.hpp"

#include <asyncio/detail/event_loop.hpp>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <unistd.h>
#include <sys/syscall.h>

namespace asyncio::detail::signals {

std::atomic<std::uint64_t> pending{0};
std::atomic<int> wakeup_fd{-1};
namespace {
std::atomic<bool> hard_interrupt{false};
std::atomic<int> sigint_count{0};

extern "C" void record_signal(int sig) {
    int saved_errno = errno;
    if (sig == SIGINT && hard_interrupt.load()) {
        if (sigint_count.fetch_add(1) + 1 >= 2) {
            // Second Ctrl-C: interrupt for good, whatever the loop is doing.
            ::signal(SIGINT, SIG_DFL);
            ::raise(SIGINT);
        }
    }
    pending.fetch_or(std::uint64_t(1) << (sig - 1));
    int fd = wakeup_fd.load();
    if (fd >= 0) {
        std::uint64_t one = 1;
        ssize_t r = ::write(fd, &one, sizeof one);
        (void)r;
    }
    errno = saved_errno;
}
}  // namespace

void install(int sig) {
    struct sigaction sa {};
    sa.sa_handler = record_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (::sigaction(sig, &sa, nullptr) < 0) throw std::system_error(errno, std::generic_category(), "sigaction");
}

void restore(int sig) {
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
}

void arm_hard_interrupt(bool armed) noexcept {
    sigint_count.store(0);
    hard_interrupt.store(armed);
}

}  // namespace asyncio::detail::signals
