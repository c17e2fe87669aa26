// src/loop/alloc_faults.cpp - see asyncio/detail/alloc_faults.hpp.
#include <asyncio/detail/alloc_faults.hpp>

#include <new>

namespace asyncio::detail::alloc_faults {

std::atomic<bool> active_flag{false};

namespace {
struct ThreadState {
    bool armed = false;
    bool and_after = false;
    std::uint64_t fail_at = 0;
    Counts counts;
};
// constinit: no guard, no allocation, usable from inside operator new.
constinit thread_local ThreadState tl_state;
}  // namespace

void arm(std::uint64_t fail_at, bool and_after) noexcept {
    tl_state = ThreadState{true, and_after, fail_at, {}};
    active_flag.store(true, std::memory_order_relaxed);
}

Counts disarm() noexcept {
    tl_state.armed = false;
    active_flag.store(false, std::memory_order_relaxed);
    return tl_state.counts;
}

Counts counts() noexcept { return tl_state.counts; }

bool allow_allocation() noexcept {
    ThreadState& s = tl_state;
    if (!s.armed) return true;
    const std::uint64_t n = ++s.counts.allocations;
    if (s.fail_at == 0 || n < s.fail_at || (n > s.fail_at && !s.and_after)) return true;
    ++s.counts.failed;
    return false;
}

void count_allocation() {
    if (!allow_allocation()) throw_bad_alloc();
}

void count_free() noexcept {
    ThreadState& s = tl_state;
    if (s.armed) ++s.counts.frees;
}

void throw_bad_alloc() { throw std::bad_alloc(); }

}  // namespace asyncio::detail::alloc_faults
