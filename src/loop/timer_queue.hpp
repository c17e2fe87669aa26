// src/loop/timer_queue.hpp - the loop's timers: a binary min-heap ordered by (when, seq).
//
// Cancellation is O(1): the entry stays in the heap and is skipped when it surfaces, because
// its node's generation moved on. When stale entries outnumber live ones the heap is rebuilt
// (amortised O(1) per cancellation), as CPython's base_events does.
#pragma once

#include <asyncio/detail/event_loop.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace asyncio::detail {

class TimerQueue {
public:
    /// 24 bytes. `seq` orders timers due at the same instant FIFO; it wraps after 2^32 timers,
    /// which is harmless because it is compared modulo 2^32 and two timers due at the very
    /// same instant are never 2^31 insertions apart in practice.
    struct Entry {
        double when;
        TimerNode* node;
        std::uint32_t seq;
        std::uint32_t generation;
    };

    /// Adds a timer for `node` (taking a reference to it).
    void push(TimerNode* node, double when) {
        heap_.push_back(Entry{when, node, next_seq_++, node->generation});  // may throw: nothing held yet
        node->ops->add_ref(node);
        std::push_heap(heap_.begin(), heap_.end(), later);
    }
    /// Invalidates every queued entry of `node`.
    void cancel(TimerNode* node) noexcept {
        ++node->generation;
        ++stale_;
        if (stale_ > 64 && stale_ * 2 > heap_.size()) compact();
    }
    /// Time of the earliest live timer; false when there is none.
    bool next_when(double& when) {
        drop_stale_top();
        if (heap_.empty()) return false;
        when = heap_.front().when;
        return true;
    }
    /// Pops every live timer due before `end_time` and fires it, in (when, seq) order.
    template <class Fire>
    void pop_due(double end_time, Fire&& fire) {
        for (;;) {
            drop_stale_top();
            if (heap_.empty() || heap_.front().when >= end_time) return;
            std::pop_heap(heap_.begin(), heap_.end(), later);
            Entry e = heap_.back();
            heap_.pop_back();
            fire(e.node);
            e.node->ops->release(e.node);
        }
    }
    bool empty() const noexcept { return heap_.empty(); }
    std::size_t live_count() const noexcept {
        std::size_t n = 0;
        for (const Entry& e : heap_) n += is_live(e);
        return n;
    }
    /// Calls `visit(node)` for every entry, stale ones included (each holds a reference),
    /// until one returns non-zero; returns that.
    template <class Visit>
    int visit(Visit&& visit) const {
        for (const Entry& e : heap_)
            if (int r = visit(e.node)) return r;
        return 0;
    }
    /// Releases every entry (loop closing).
    void clear() noexcept {
        std::vector<Entry> old;
        old.swap(heap_);
        for (Entry& e : old) e.node->ops->release(e.node);
        stale_ = 0;
    }
    ~TimerQueue() { clear(); }

private:
    // A function object (not a function pointer) so the heap algorithms inline it.
    struct Later {
        bool operator()(const Entry& a, const Entry& b) const noexcept {
            return a.when > b.when || (a.when == b.when && static_cast<std::int32_t>(a.seq - b.seq) > 0);
        }
    };
    static constexpr Later later{};
    static bool is_live(const Entry& e) noexcept { return e.generation == e.node->generation; }
    void drop_stale_top() noexcept {
        while (!heap_.empty() && !is_live(heap_.front())) {
            std::pop_heap(heap_.begin(), heap_.end(), later);
            Entry e = heap_.back();
            heap_.pop_back();
            if (stale_) --stale_;
            e.node->ops->release(e.node);
        }
    }
    // Each stale entry leaves the heap before its reference is released: releasing may run
    // arbitrary code (a Python __del__) that adds timers or, through a garbage collection,
    // walks the heap (visit()), and both must find only entries that hold a reference. A
    // timer added meanwhile goes at the back, which the walk down from the top never reaches
    // again; make_heap() then orders whatever is left.
    void compact() noexcept {
        stale_ = 0;  // before releasing: what a release cancels counts anew
        for (std::size_t i = heap_.size(); i-- > 0;) {
            if (i >= heap_.size() || is_live(heap_[i])) continue;
            Entry e = heap_[i];
            heap_[i] = heap_.back();
            heap_.pop_back();
            e.node->ops->release(e.node);
        }
        std::make_heap(heap_.begin(), heap_.end(), later);
    }

    std::vector<Entry> heap_;
    std::uint32_t next_seq_ = 0;
    std::size_t stale_ = 0;
};

}  // namespace asyncio::detail
