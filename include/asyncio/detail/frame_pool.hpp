// asyncio/detail/frame_pool.hpp - thread-local size-class recycler for coroutine frames and
// the runtime's small shared states (tasks, futures, handles).
//
// Blocks are carved from 64 KiB slabs (no per-block malloc header: a 1,000,000-task program
// pays for its tasks, not for the allocator's bookkeeping) and recycled through per-thread,
// per-size-class free lists, so a steady-state program allocates nothing per task. A block
// allocated on one thread may be freed on another (run_coroutine_threadsafe creates a
// coroutine on the caller's thread and the loop destroys it): it simply joins the freeing
// thread's list. Because blocks migrate, slabs are owned by the process, not by a thread, and
// are kept for reuse until exit (like most allocators, memory reached at a peak stays mapped).
//
// Under AddressSanitizer the recycler is bypassed so use-after-free stays detectable.
//
// With ASYNCIO_FAULT_INJECTION (test builds) allocate() is an allocation-failure injection
// point: on a thread armed by alloc_faults::arm() it counts, and the chosen allocation throws
// std::bad_alloc, whether the block would come from a free list, a new slab or malloc.
#pragma once

#include <asyncio/detail/alloc_faults.hpp>

#include <cstddef>
#include <cstdlib>
#include <new>

namespace asyncio::detail {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define ASYNCIO_FRAME_POOL_ENABLED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define ASYNCIO_FRAME_POOL_ENABLED 0
#endif
#endif
#ifndef ASYNCIO_FRAME_POOL_ENABLED
#define ASYNCIO_FRAME_POOL_ENABLED 1
#endif

/// Allocates a slab for the pool (process-wide, never freed before exit).
void* frame_pool_new_slab(std::size_t bytes);
/// How many slabs the process has allocated so far (tests: steady state allocates none).
std::size_t frame_pool_slab_count() noexcept;

class FramePool {
public:
    static constexpr std::size_t granularity = 16;
    static constexpr std::size_t max_pooled_size = 1024;
    static constexpr std::size_t class_count = max_pooled_size / granularity;
    static constexpr std::size_t slab_bytes = 64 * 1024;

    static FramePool& local() noexcept {
        thread_local FramePool pool;
        return pool;
    }

    void* allocate(std::size_t size) {
#ifdef ASYNCIO_FAULT_INJECTION
        // Tests: the n-th allocation of an armed thread throws (alloc_faults.hpp). Not in
        // builds without the option: the hot path then has no check.
        if (alloc_faults::active()) [[unlikely]]
            alloc_faults::count_allocation();
#endif
#if ASYNCIO_FRAME_POOL_ENABLED
        if (size <= max_pooled_size) {
            std::size_t c = class_of(size);
            if (FreeBlock* b = heads_[c]) {
                heads_[c] = b->next;
                return b;
            }
            return carve((c + 1) * granularity);
        }
#endif
        void* p = std::malloc(size);
        if (!p) throw std::bad_alloc();
        return p;
    }

    void deallocate(void* p, std::size_t size) noexcept {
#ifdef ASYNCIO_FAULT_INJECTION
        if (alloc_faults::active()) [[unlikely]]
            alloc_faults::count_free();
#endif
#if ASYNCIO_FRAME_POOL_ENABLED
        if (size <= max_pooled_size) {
            std::size_t c = class_of(size);
            auto* b = static_cast<FreeBlock*>(p);
            b->next = heads_[c];
            heads_[c] = b;
            return;
        }
#else
        (void)size;
#endif
        std::free(p);
    }

private:
    struct FreeBlock {
        FreeBlock* next;
    };
    static std::size_t class_of(std::size_t size) noexcept { return size == 0 ? 0 : (size - 1) / granularity; }
    void* carve(std::size_t block) {
        if (static_cast<std::size_t>(slab_end_ - slab_next_) < block) {
            slab_next_ = static_cast<char*>(frame_pool_new_slab(slab_bytes));
            slab_end_ = slab_next_ + slab_bytes;
        }
        void* p = slab_next_;
        slab_next_ += block;
        return p;
    }
    // Unused when the pool is off (sanitizer builds): every block then comes from malloc.
    [[maybe_unused]] FreeBlock* heads_[class_count] = {};
    char* slab_next_ = nullptr;
    char* slab_end_ = nullptr;
};

/// Mixin giving a class pooled operator new/delete.
struct PoolAllocated {
    static void* operator new(std::size_t size) { return FramePool::local().allocate(size); }
    static void operator delete(void* p, std::size_t size) noexcept { FramePool::local().deallocate(p, size); }
};

}  // namespace asyncio::detail
