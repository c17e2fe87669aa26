// src/loop/frame_pool.cpp - the process-wide slabs behind the thread-local frame pools.
#include <asyncio/detail/frame_pool.hpp>

#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

namespace asyncio::detail {
namespace {
// Slabs are never returned while the process runs: blocks carved from them may sit on any
// thread's free list. They stay listed here so memory checkers see them as reachable.
struct SlabRegistry {
    std::mutex mutex;
    std::vector<void*> slabs;
    ~SlabRegistry() {
        for (void* s : slabs) std::free(s);
    }
};
SlabRegistry& registry() {
    static SlabRegistry* r = new SlabRegistry;  // intentionally immortal: threads may outlive statics
    return *r;
}
}  // namespace

void* frame_pool_new_slab(std::size_t bytes) {
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    SlabRegistry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    r.slabs.push_back(p);
    return p;
}

std::size_t frame_pool_slab_count() noexcept {
    SlabRegistry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    return r.slabs.size();
}

}  // namespace asyncio::detail
