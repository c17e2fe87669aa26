// asyncio/detail/alloc_faults.hpp - allocation-failure injection for tests (issue 15): make
// the n-th allocation of a thread throw std::bad_alloc.
//
// One counter per thread, shared by every allocation path the library has: the frame pool
// (coroutine frames, task and future states, callback handles: FramePool::allocate calls
// count_allocation() while a thread is armed) and, in a test binary that links
// tests/support/alloc_fault_new.cpp, the global operator new (which asks allow_allocation()).
// The pool's hook is compiled in only with the CMake option ASYNCIO_FAULT_INJECTION (the
// test presets); without it the pool's hot path has no check at all (`compiled_in` says so).
//
// A test arms its own thread: arm(n) counts the thread's allocations from 1 and makes the
// n-th fail (n = 0: count only); with `and_after`, every allocation from the n-th on fails.
// Other threads are never counted or failed. While armed the thread also counts frees, so a
// test can check that a run gave back what it took (live()).
#pragma once

#include <atomic>
#include <cstdint>

namespace asyncio::detail::alloc_faults {

/// Whether the frame pool's hook is compiled in (CMake ASYNCIO_FAULT_INJECTION).
#ifdef ASYNCIO_FAULT_INJECTION
inline constexpr bool compiled_in = true;
#else
inline constexpr bool compiled_in = false;
#endif

/// True while some thread is armed (the hooks' fast check: one relaxed load).
extern std::atomic<bool> active_flag;
inline bool active() noexcept { return active_flag.load(std::memory_order_relaxed); }

struct Counts {
    std::uint64_t allocations = 0;  ///< allocations counted on the armed thread
    std::uint64_t frees = 0;        ///< frees counted on the armed thread
    std::uint64_t failed = 0;       ///< allocations made to fail
};

/// Arms the calling thread: counting restarts at 0; the `fail_at`-th allocation fails
/// (0: none fails), and with `and_after` every one after it too.
void arm(std::uint64_t fail_at, bool and_after = false) noexcept;
/// Disarms the calling thread; returns its counts (still readable through counts()).
Counts disarm() noexcept;
/// The calling thread's counts since its last arm().
Counts counts() noexcept;

/// One allocation on this thread: false when it must fail. Counts nothing on a thread that
/// is not armed. For allocators that cannot throw (operator new's nothrow forms).
bool allow_allocation() noexcept;
[[noreturn]] void throw_bad_alloc();
/// One allocation that fails by throwing std::bad_alloc (the frame pool). Out of line: the
/// pool's inlined allocate() grows by one call only.
void count_allocation();
/// One free on this thread (counted only while armed).
void count_free() noexcept;

}  // namespace asyncio::detail::alloc_faults
