// asyncio/detail/frame_pool.hpp - thread-local size-class recycler for coroutine frames and
// task states.
//
// Every coroutine frame and task state is allocated through here. Freed blocks go to the
// freeing thread's free list for their size class and are handed out again without calling
// malloc, so a steady-state program allocates nothing per task. Blocks are individual malloc
// blocks, so a block allocated on one thread and freed on another (run_coroutine_threadsafe
// creates a coroutine on the caller's thread and the loop destroys it) is simply recycled by
// the freeing thread: no arenas, no ownership. A thread's cached blocks are freed when the
// thread exits; each class caches a bounded number of blocks.
//
// Under AddressSanitizer the recycler is bypassed so use-after-free stays detectable.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace asyncio::detail {

#if defined(__SANITIZE_ADDRESS__)
#define ASYNCIO_FRAME_POOL_ENABLED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASYNCIO_FRAME_POOL_ENABLED 0
#endif
#endif
#ifndef ASYNCIO_FRAME_POOL_ENABLED
#define ASYNCIO_FRAME_POOL_ENABLED 1
#endif

class FramePool {
public:
    static constexpr std::size_t granularity = 16;
    static constexpr std::size_t max_pooled_size = 2048;
    static constexpr std::size_t class_count = max_pooled_size / granularity;
    static constexpr std::size_t max_cached_per_class = 1u << 20;

    static FramePool& local() noexcept {
        thread_local FramePool pool;
        return pool;
    }

    void* allocate(std::size_t size) {
#if ASYNCIO_FRAME_POOL_ENABLED
        if (size <= max_pooled_size && alive_) {
            std::size_t c = class_of(size);
            if (FreeBlock* b = heads_[c]) {
                heads_[c] = b->next;
                --counts_[c];
                return b;
            }
            size = (c + 1) * granularity;
        }
#endif
        void* p = std::malloc(size);
        if (!p) throw std::bad_alloc();
        return p;
    }

    void deallocate(void* p, std::size_t size) noexcept {
#if ASYNCIO_FRAME_POOL_ENABLED
        if (size <= max_pooled_size && alive_) {
            std::size_t c = class_of(size);
            if (counts_[c] < max_cached_per_class) {
                auto* b = static_cast<FreeBlock*>(p);
                b->next = heads_[c];
                heads_[c] = b;
                ++counts_[c];
                return;
            }
        }
#else
        (void)size;
#endif
        std::free(p);
    }

    /// Number of blocks currently cached (for tests and benchmarks).
    std::size_t cached_blocks() const noexcept {
        std::size_t n = 0;
        for (std::size_t c : counts_) n += c;
        return n;
    }

    ~FramePool() {
        alive_ = false;
        for (FreeBlock*& head : heads_) {
            while (head) {
                FreeBlock* next = head->next;
                std::free(head);
                head = next;
            }
        }
    }

private:
    struct FreeBlock {
        FreeBlock* next;
    };
    static std::size_t class_of(std::size_t size) noexcept {
        return size == 0 ? 0 : (size - 1) / granularity;
    }
    FreeBlock* heads_[class_count] = {};
    std::size_t counts_[class_count] = {};
    bool alive_ = true;
};

/// Mixin giving a class pooled operator new/delete.
struct PoolAllocated {
    static void* operator new(std::size_t size) { return FramePool::local().allocate(size); }
    static void operator delete(void* p, std::size_t size) noexcept {
        FramePool::local().deallocate(p, size);
    }
};

}  // namespace asyncio::detail
