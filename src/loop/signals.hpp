// src/loop/signals.hpp - the process-wide half of signal handling.
//
// A C signal handler may only do async-signal-safe things: it records the signal in a
// pending mask and writes the signal loop's eventfd; the loop then runs the Python-level
// handlers as ordinary callbacks. Only one loop (in the main thread) receives signals.
#pragma once

#include <atomic>
#include <cstdint>

namespace asyncio::detail::signals {

/// Signals received and not yet dispatched (bit n-1 = signal n, 1 <= n <= 64).
extern std::atomic<std::uint64_t> pending;
/// The eventfd of the loop that handles signals (-1: none).
extern std::atomic<int> wakeup_fd;

/// Whether `sig` is a signal a program may handle (Python's signal.valid_signals()).
bool valid(int sig) noexcept;
/// Installs the recording handler for `sig`, keeping the program's disposition of it.
void install(int sig);
/// Puts back the disposition `sig` had before install() (unlike Python, which resets to
/// SIG_DFL: a C++ program's own handler or SIG_IGN is not ours to drop).
void restore(int sig);

/// Python Runner's Ctrl-C rule: while armed, the first SIGINT is dispatched to the loop and
/// the second one terminates the process at once (the loop may be stuck in user code).
void arm_hard_interrupt(bool armed) noexcept;

}  // namespace asyncio::detail::signals
