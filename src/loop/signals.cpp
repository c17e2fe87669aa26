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

namespace {
/// The program's own disposition of each signal we took over, put back by restore().
/// Touched from the main thread only (add_signal_handler refuses other threads).
struct sigaction saved[65];
bool has_saved[65] = {};
}  // namespace

bool valid(int sig) noexcept {
    if (sig < 1 || sig > 64) return false;
    // Python's signal.valid_signals(): what sigfillset() fills - every signal but the ones the
    // C library keeps for itself (glibc's 32 and 33, for thread cancellation and setxid).
    sigset_t all;
    sigfillset(&all);
    return sigismember(&all, sig) == 1;
}

void install(int sig) {
    struct sigaction sa {};
    sa.sa_handler = record_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    struct sigaction previous {};
    if (::sigaction(sig, &sa, &previous) < 0) throw std::system_error(errno, std::generic_category(), "sigaction");
    if (!has_saved[sig]) {  // a second install (handler replaced) keeps the program's own
        saved[sig] = previous;
        has_saved[sig] = true;
    }
}

void restore(int sig) {
    if (!has_saved[sig]) return;
    ::sigaction(sig, &saved[sig], nullptr);
    has_saved[sig] = false;
}

void arm_hard_interrupt(bool armed) noexcept {
    sigint_count.store(0);
    hard_interrupt.store(armed);
}

}  // namespace asyncio::detail::signals
