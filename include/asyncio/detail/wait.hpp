// asyncio/detail/wait.hpp - the machinery behind asyncio::wait, wait_for and as_completed
// (tasks.hpp): waiting on a set of future states, cancel-and-wait, and as_completed's queue.
#pragma once

#include <asyncio/coroutines.hpp>
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/futures.hpp>

#include <cstddef>
#include <deque>
#include <optional>
#include <vector>

namespace asyncio {

enum ReturnWhen : int;  // tasks.hpp: FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED

namespace detail {
/// Waits until the condition of `return_when` holds for `fs` or the timeout expires.
/// Never cancels anything (Python's asyncio._wait).
Coro<> wait_states(std::vector<FutureStateBase*> fs, std::optional<double> timeout, ReturnWhen return_when);
/// Cancels `fut` and waits until it is done (Python's _cancel_and_wait).
Coro<> cancel_and_wait(RefPtr<FutureStateBase> fut);

/// Shared state of one as_completed() iteration (Python's `done` queue and `todo` set).
class AsCompletedState final : public FutureStateBase, public PoolAllocated {
public:
    using PoolAllocated::operator new;
    using PoolAllocated::operator delete;
    AsCompletedState(EventLoop& loop, std::vector<RefPtr<FutureStateBase>> fs, std::optional<double> timeout);
    void start();
    void on_child_done(ChildNode<AsCompletedState>& node);
    /// Waits for the next completed future; null means the timeout expired.
    Coro<FutureStateBase*> next_done();
    std::size_t size() const noexcept { return nodes_.size(); }
    /// How many awaitables iteration has handed out so far.
    std::size_t handed_out = 0;

private:
    ~AsCompletedState() override;
    void last_release() noexcept override { delete this; }
    void on_timeout();
    void wake_getter();
    std::vector<RefPtr<FutureStateBase>> fs_;
    std::vector<ChildNode<AsCompletedState>> nodes_;
    std::size_t todo_ = 0;
    std::deque<FutureStateBase*> done_;  // null entries: timed out
    std::optional<double> timeout_;
    TimerHandle timeout_handle_;
    std::deque<RefPtr<PlainFutureState>> getters_;
};
}  // namespace detail

}  // namespace asyncio
