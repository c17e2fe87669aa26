// tests/support/alloc_fault_new.cpp - the global operator new and delete, replaced for a test
// binary that injects allocation failures (issue 15): while a thread is armed
// (asyncio::detail::alloc_faults::arm), each allocation it makes through operator new counts
// on the same per-thread counter as the frame pool's, and the chosen one fails - the
// throwing forms throw std::bad_alloc, the nothrow forms return nullptr. Frees are counted
// too. Unarmed threads (and every thread while nothing is armed) allocate as usual.
#include <asyncio/detail/alloc_faults.hpp>

#include <cstdlib>
#include <new>

namespace af = asyncio::detail::alloc_faults;

namespace {

bool allowed() noexcept { return !af::active() || af::allow_allocation(); }

void* plain(std::size_t size) noexcept { return std::malloc(size == 0 ? 1 : size); }
void* aligned(std::size_t size, std::align_val_t al) noexcept {
    const std::size_t a = static_cast<std::size_t>(al) < sizeof(void*) ? sizeof(void*) : static_cast<std::size_t>(al);
    const std::size_t rounded = (size == 0 ? a : (size + a - 1) / a * a);
    return std::aligned_alloc(a, rounded);
}

void* throwing(std::size_t size) {
    if (!allowed()) af::throw_bad_alloc();
    for (;;) {
        if (void* p = plain(size)) return p;
        std::new_handler h = std::get_new_handler();
        if (!h) throw std::bad_alloc();
        h();
    }
}
void* throwing(std::size_t size, std::align_val_t al) {
    if (!allowed()) af::throw_bad_alloc();
    for (;;) {
        if (void* p = aligned(size, al)) return p;
        std::new_handler h = std::get_new_handler();
        if (!h) throw std::bad_alloc();
        h();
    }
}
void release(void* p) noexcept {
    if (!p) return;
    if (af::active()) af::count_free();
    std::free(p);
}

}  // namespace

void* operator new(std::size_t size) { return throwing(size); }
void* operator new[](std::size_t size) { return throwing(size); }
void* operator new(std::size_t size, std::align_val_t al) { return throwing(size, al); }
void* operator new[](std::size_t size, std::align_val_t al) { return throwing(size, al); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return allowed() ? plain(size) : nullptr; }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return allowed() ? plain(size) : nullptr; }
void* operator new(std::size_t size, std::align_val_t al, const std::nothrow_t&) noexcept {
    return allowed() ? aligned(size, al) : nullptr;
}
void* operator new[](std::size_t size, std::align_val_t al, const std::nothrow_t&) noexcept {
    return allowed() ? aligned(size, al) : nullptr;
}

void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }
void operator delete(void* p, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }
