// asyncio/queues.hpp - Queue<T>, PriorityQueue<T, Compare>, LifoQueue<T> (Python's
// asyncio.queues, 3.13 semantics including shutdown()).
//
// A port of CPython's Lib/asyncio/queues.py, nearly line by line:
// - `getters_` / `putters_` are FIFO lists of waiter futures (Python's collections.deque of
//   futures). A waiter future is created only when put()/get() must wait; the uncontended
//   paths create no future and allocate nothing beyond the container's own storage.
// - `wakeup_next()` wakes the first waiter that is not done (cancelled ones are skipped).
// - put()/get() handle cancellation as Python does: a waiter that was already woken when its
//   task got cancelled passes the wake-up on to the next waiter, so no wake-up is ever lost.
// - `unfinished_tasks_` and a small future-based event (`finished_` + `join_waiters_`, the
//   port of Python's locks.Event used by the queue) implement task_done()/join().
// - shutdown(immediate) follows 3.13: later puts raise QueueShutDown; gets raise once the queue
//   is empty; `immediate` drains the queue (counting each removed item as done) and every
//   blocked getter/putter is woken to re-check.
//
// Waiters (detail/waiters.hpp, the primitives' waiter queue too) live in the frames of the
// waiting put()/get()/join() coroutines: O(1) removal, no allocation for the list itself; a
// frame destroyed without resuming (its loop was closed) unlinks its waiter. The items are
// kept in a ring buffer (detail/ring_buffer.hpp).
//
// Loop binding (Python's mixins._LoopBoundMixin): a queue binds to the running loop when it
// first has to wait, and may be re-bound to another loop once it has no waiters, so a queue
// outliving one asyncio::run can be used by the next. Waiting on it from another loop while
// waiters of the first are pending throws asyncio::RuntimeError. Not thread-safe (like Python).
//
// PriorityQueue and LifoQueue derive from Queue<T> and override the storage hooks, like
// Python's subclasses override _init/_put/_get: a Queue<T>& can refer to any of the three.
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/detail/ring_buffer.hpp>
#include <asyncio/detail/waiters.hpp>
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/exceptions.hpp>
#include <asyncio/futures.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace asyncio {

namespace detail {

template <class T>
concept QueueStreamable = requires(std::ostream& os, const T& v) { os << v; };

}  // namespace detail

/// A queue for coordinating producer and consumer coroutines (Python's asyncio.Queue).
///
/// If maxsize <= 0 the queue size is infinite; otherwise `co_await put()` waits while the queue
/// holds maxsize items, until an item is removed by get(). Items are moved in and out, so
/// move-only T works: `co_await q.put(std::move(p)); auto p2 = co_await q.get();`.
template <class T>
class Queue {
    static_assert(!std::is_reference_v<T> && !std::is_const_v<T>, "Queue<T> needs a plain value type");
    static_assert(std::is_move_constructible_v<T>, "Queue<T> needs a move-constructible T");

public:
    using value_type = T;

    explicit Queue(std::ptrdiff_t maxsize = 0) noexcept : maxsize_(maxsize) {}
    Queue(const Queue&) = delete;
    Queue& operator=(const Queue&) = delete;
    // Waiting coroutines outliving their queue is a bug of the program; at least their
    // frames' destruction does not touch freed lists (a WaiterList unlinks what it holds).
    virtual ~Queue() = default;

    /// Number of items in the queue.
    std::size_t qsize() const noexcept { return do_size(); }
    /// Number of items allowed in the queue (<= 0: unbounded).
    std::ptrdiff_t maxsize() const noexcept { return maxsize_; }
    /// True if the queue is empty.
    bool empty() const noexcept { return do_size() == 0; }
    /// True if there are maxsize items in the queue (never true when maxsize <= 0).
    bool full() const noexcept {
        if (maxsize_ <= 0) return false;
        return qsize() >= static_cast<std::size_t>(maxsize_);
    }

    /// `co_await q.put(x)` / `co_await q.get()`: finish at once, with no coroutine frame, when
    /// the queue has room / an item (Python's put()/get() then never suspend either);
    /// otherwise they run the waiting coroutine inline. Usable wherever an awaitable is
    /// (create_task, wait_for, gather, timeout...).
    class [[nodiscard]] PutOperation {
    public:
        bool await_ready() const noexcept { return !q_->full(); }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) {
            slow_.emplace(q_->put_waiting(std::move(item_)));
            awaiter_.emplace(slow_->operator co_await());
            return awaiter_->await_suspend(h);
        }
        void await_resume() {
            if (awaiter_)
                awaiter_->await_resume();
            else
                q_->put_nowait(std::move(item_));
        }

    private:
        friend class Queue;
        PutOperation(Queue* q, T&& item) : q_(q), item_(std::move(item)) {}
        Queue* q_;
        T item_;
        std::optional<Coro<>> slow_;
        std::optional<typename Coro<>::Awaiter> awaiter_;
    };
    class [[nodiscard]] GetOperation {
    public:
        bool await_ready() const noexcept { return !q_->empty(); }
        std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) {
            slow_.emplace(q_->get_waiting());
            awaiter_.emplace(slow_->operator co_await());
            return awaiter_->await_suspend(h);
        }
        T await_resume() {
            if (awaiter_) return awaiter_->await_resume();
            return q_->get_nowait();
        }

    private:
        friend class Queue;
        explicit GetOperation(Queue* q) : q_(q) {}
        Queue* q_;
        std::optional<Coro<T>> slow_;
        std::optional<typename Coro<T>::Awaiter> awaiter_;
    };

    /// Puts an item into the queue, waiting while it is full. QueueShutDown once shut down.
    PutOperation put(T item) { return PutOperation(this, std::move(item)); }
    /// Removes and returns an item, waiting while the queue is empty. QueueShutDown once the
    /// queue is shut down and empty (at once after shutdown(immediate=true)).
    GetOperation get() { return GetOperation(this); }

private:
    /// put()/get() when they may have to wait: Python's coroutines, line by line.
    Coro<> put_waiting(T item) {
        while (full()) {
            if (is_shutdown_) throw QueueShutDown();
            detail::Waiter putter(bind_loop());
            putters_.push_back(putter);
            try {
                co_await putter.fut;
            } catch (...) {
                putter.fut.cancel();  // just in case the putter is not done yet
                // Clean putters_ from the cancelled putter (it may already have been popped
                // by get_nowait() or shutdown()).
                putter.leave();
                if (!full() && !putter.fut.cancelled()) {
                    // We were woken up by get_nowait() but can't take the call: wake up the
                    // next in line (the putter was set, then the await cancelled).
                    wakeup_next(putters_);
                }
                throw;
            }
        }
        put_nowait(std::move(item));
    }

public:
    /// Puts an item without blocking: QueueFull if no free slot, QueueShutDown once shut
    /// down. On either exception the argument is left untouched.
    void put_nowait(const T& item)
        requires std::is_copy_constructible_v<T>
    {
        put_nowait_impl<const T&>(item);
    }
    void put_nowait(T&& item) { put_nowait_impl<T>(std::move(item)); }

private:
    Coro<T> get_waiting() {
        while (empty()) {
            if (is_shutdown_) throw QueueShutDown();
            detail::Waiter getter(bind_loop());
            getters_.push_back(getter);
            try {
                co_await getter.fut;
            } catch (...) {
                getter.fut.cancel();  // just in case the getter is not done yet
                // Clean getters_ from the cancelled getter (it may already have been popped
                // by put_nowait() or shutdown()).
                getter.leave();
                if (!empty() && !getter.fut.cancelled()) {
                    // We were woken up by put_nowait() but can't take the call: wake up the
                    // next in line (the getter was set, then the await cancelled).
                    wakeup_next(getters_);
                }
                throw;
            }
        }
        co_return get_nowait();
    }

public:
    /// Removes and returns an item if one is available now; else QueueEmpty (QueueShutDown
    /// when the queue is shut down).
    T get_nowait() {
        if (empty()) {
            if (is_shutdown_) throw QueueShutDown();
            throw QueueEmpty();
        }
        T item = do_get();
        wakeup_next(putters_);
        return item;
    }

    /// Indicates that a formerly enqueued item is processed (one call per get()).
    /// std::invalid_argument (Python's ValueError) if called more times than items were put.
    void task_done() {
        if (unfinished_tasks_ <= 0) throw std::invalid_argument("task_done() called too many times");
        --unfinished_tasks_;
        if (unfinished_tasks_ == 0) set_finished();
    }

    /// Waits until every item put into the queue has been got and processed (task_done()).
    Coro<> join() {
        if (unfinished_tasks_ > 0) {
            // Python's `await self._finished.wait()` (locks.Event.wait), inlined.
            if (finished_) co_return;
            detail::Waiter waiter(bind_loop());
            join_waiters_.push_back(waiter);
            co_await waiter.fut;  // the node unlinks itself on the way out ("finally: remove")
        }
    }

    /// Shuts the queue down (3.13): put()/put_nowait() raise QueueShutDown from now on;
    /// get()/get_nowait() raise it once the queue is empty. With `immediate`, the queue is
    /// drained first, each removed item counting as done (join() returns when nothing else is
    /// unfinished), so gets raise at once. Every blocked put()/get() is woken to re-check.
    void shutdown(bool immediate = false) {
        is_shutdown_ = true;
        if (immediate) {
            while (!empty()) {
                (void)do_get();
                if (unfinished_tasks_ > 0) --unfinished_tasks_;
            }
            // Release every join() waiter.
            if (unfinished_tasks_ == 0) set_finished();
        }
        // All getters need to re-check queue-empty to raise QueueShutDown.
        while (detail::Waiter* getter = getters_.pop_front())
            if (!getter->fut.done()) getter->fut.set_result();
        while (detail::Waiter* putter = putters_.pop_front())
            if (!putter->fut.done()) putter->fut.set_result();
    }

    /// Whether shutdown() was called (not in Python's public API; handy).
    bool is_shutdown() const noexcept { return is_shutdown_; }

    /// Python's repr(q): "<Queue at 0x... maxsize=0 _queue=[1, 2] _getters[1] tasks=2>".
    std::string repr() const { return "<" + std::string(type_name()) + " at " + address() + " " + format() + ">"; }
    /// Python's str(q): "<Queue maxsize=0 ...>".
    std::string str() const { return "<" + std::string(type_name()) + " " + format() + ">"; }
    /// Python's Queue._format(): "maxsize=0 _queue=[...] _getters[n] _putters[n] tasks=n shutdown".
    /// `_queue=[...]` is shown when T can be written to an std::ostream.
    std::string format() const {
        std::ostringstream os;
        os << "maxsize=" << maxsize_;
        if constexpr (detail::QueueStreamable<T>) {
            if (!empty()) {
                os << " _queue=[";
                bool first = true;
                for_each_item([&](const T& v) {
                    if (!first) os << ", ";
                    first = false;
                    if constexpr (std::is_convertible_v<const T&, std::string_view>)
                        os << '\'' << v << '\'';  // like Python's repr of a str
                    else
                        os << v;
                });
                os << "]";
            }
        }
        if (!getters_.empty()) os << " _getters[" << getters_.size() << "]";
        if (!putters_.empty()) os << " _putters[" << putters_.size() << "]";
        if (unfinished_tasks_) os << " tasks=" << unfinished_tasks_;
        if (is_shutdown_) os << " shutdown";
        return os.str();
    }

protected:
    // ---- The storage hooks (Python's overridable _init/_put/_get) -------------------------
    virtual std::size_t do_size() const noexcept { return fifo_.size(); }
    virtual void do_put(T&& item) { fifo_.push_back(std::move(item)); }
    virtual T do_get() { return fifo_.pop_front(); }
    /// Visits the items in storage order (repr only).
    virtual void for_each_item(const std::function<void(const T&)>& fn) const {
        for (std::size_t i = 0; i < fifo_.size(); ++i) fn(fifo_[i]);
    }
    virtual const char* type_name() const noexcept { return "Queue"; }

private:
    /// U is T (move the item in) or const T& (copy it).
    template <class U>
    void put_nowait_impl(U&& item) {
        if (is_shutdown_) throw QueueShutDown();
        if (full()) throw QueueFull();
        if constexpr (std::is_same_v<U, T>)
            do_put(std::move(item));
        else
            do_put(T(item));  // the copy is made only once the item is accepted
        ++unfinished_tasks_;
        finished_ = false;  // self._finished.clear()
        wakeup_next(getters_);
    }

    /// Wakes up the next waiter (if any) that isn't cancelled.
    static void wakeup_next(detail::WaiterList& waiters) {
        while (detail::Waiter* waiter = waiters.pop_front()) {
            if (!waiter->fut.done()) {
                waiter->fut.set_result();
                break;
            }
        }
    }

    /// self._finished.set(): wakes every join() waiter (they unlink themselves).
    void set_finished() {
        if (finished_) return;
        finished_ = true;
        join_waiters_.for_each([](detail::Waiter& w) {
            if (!w.fut.done()) w.fut.set_result();
        });
    }

    /// Python's _LoopBoundMixin._get_loop(), re-binding allowed once no waiter is left.
    EventLoop& bind_loop() {
        EventLoop& running = get_running_loop();
        if (loop_ != &running) {
            if (loop_ != nullptr && (!getters_.empty() || !putters_.empty() || !join_waiters_.empty()))
                throw RuntimeError(repr() +
                                   " is bound to a different event loop: it has waiters there; "
                                   "a queue can move to another loop only once nothing waits on it");
            loop_ = &running;
        }
        return running;
    }

    std::string address() const {
        std::ostringstream os;
        os << static_cast<const void*>(this);
        return os.str();
    }

    detail::RingBuffer<T> fifo_;
    detail::WaiterList getters_;
    detail::WaiterList putters_;
    detail::WaiterList join_waiters_;  // the waiters of the `_finished` event
    EventLoop* loop_ = nullptr;
    std::ptrdiff_t maxsize_;
    std::int64_t unfinished_tasks_ = 0;
    bool finished_ = true;  // the `_finished` event: set while no task is unfinished
    bool is_shutdown_ = false;
};

/// A Queue that retrieves entries in priority order, smallest first (Python's PriorityQueue,
/// a binary heap like heapq). `Compare` orders items like std::less: Compare(a, b) means a
/// comes out before b. Entries are typically pairs/tuples (priority, data).
template <class T, class Compare = std::less<T>>
class PriorityQueue : public Queue<T> {
public:
    explicit PriorityQueue(std::ptrdiff_t maxsize = 0, Compare comp = Compare())
        : Queue<T>(maxsize), comp_(std::move(comp)) {}

protected:
    std::size_t do_size() const noexcept override { return heap_.size(); }
    void do_put(T&& item) override {
        heap_.push_back(std::move(item));
        std::push_heap(heap_.begin(), heap_.end(), Greater{&comp_});
    }
    T do_get() override {
        std::pop_heap(heap_.begin(), heap_.end(), Greater{&comp_});
        T item = std::move(heap_.back());
        heap_.pop_back();
        return item;
    }
    void for_each_item(const std::function<void(const T&)>& fn) const override {
        for (const T& v : heap_) fn(v);  // heap order, like Python's repr of the list
    }
    const char* type_name() const noexcept override { return "PriorityQueue"; }

private:
    /// std's heaps put the largest first; reversing the comparison gives heapq's min-heap.
    struct Greater {
        Compare* comp;
        bool operator()(const T& a, const T& b) const { return (*comp)(b, a); }
    };
    std::vector<T> heap_;
    Compare comp_;
};

/// A Queue that retrieves the most recently added entries first (Python's LifoQueue).
template <class T>
class LifoQueue : public Queue<T> {
public:
    explicit LifoQueue(std::ptrdiff_t maxsize = 0) : Queue<T>(maxsize) {}

protected:
    std::size_t do_size() const noexcept override { return stack_.size(); }
    void do_put(T&& item) override { stack_.push_back(std::move(item)); }
    T do_get() override {
        T item = std::move(stack_.back());
        stack_.pop_back();
        return item;
    }
    void for_each_item(const std::function<void(const T&)>& fn) const override {
        for (const T& v : stack_) fn(v);
    }
    const char* type_name() const noexcept override { return "LifoQueue"; }

private:
    std::vector<T> stack_;
};

}  // namespace asyncio
