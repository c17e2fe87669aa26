// asyncio/detail/waiters.hpp - the one waiter queue of the synchronization primitives
// (locks.hpp) and the queues (queues.hpp): Python's `collections.deque` of waiter futures.
//
// A Waiter is a future plus its link; it lives in the waiting coroutine's frame (or its
// awaiter), so queueing allocates nothing beyond the future, and removing a waiter that was
// cancelled is O(1). A waiter unlinks itself when destroyed, and a list unlinks what it still
// holds when it is destroyed, so neither can be left pointing at the other.
#pragma once

#include <asyncio/detail/event_loop.hpp>
#include <asyncio/detail/intrusive_list.hpp>
#include <asyncio/futures.hpp>

#include <atomic>

namespace asyncio::detail {

/// One waiting coroutine: the future it awaits and its place in a WaiterList.
struct Waiter : ListNode {
    Future<void> fut;

    explicit Waiter(EventLoop& loop) : fut(loop) {}
    Waiter(const Waiter&) = delete;
    Waiter& operator=(const Waiter&) = delete;
    ~Waiter() { leave(); }
    /// Python's `_waiters.remove(fut)`: leaves the list (a no-op when it already left).
    void leave() noexcept {
        if (linked()) unlink();
    }
};

/// A FIFO of waiters. Not copyable or movable (its waiters point at it).
class WaiterList : public IntrusiveList<Waiter> {
public:
    WaiterList() noexcept = default;
    ~WaiterList() { clear(); }

    /// The waiters of a loop that has been closed (or destroyed) will never run again: their
    /// tasks are gone. Forget them, so that their owner can serve another loop. O(1): every
    /// waiter of one list belongs to the same loop.
    void drop_if_loop_closed() noexcept {
        Waiter* first = front();
        if (first == nullptr) return;
        LoopAnchor* a = first->fut.state_ptr()->anchor();
        if (a->loop == nullptr || a->closed.load(std::memory_order_relaxed)) [[unlikely]]
            forget_all();
    }

private:
    /// Out of line and cold, so that the inline callers of drop_if_loop_closed() stay small.
    [[gnu::cold, gnu::noinline]] void forget_all() noexcept { clear(); }
};

}  // namespace asyncio::detail
