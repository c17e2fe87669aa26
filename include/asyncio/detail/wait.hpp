// asyncio/detail/wait.hpp - asyncio::wait, wait_for and as_completed (part of tasks.hpp).
#pragma once

#include <asyncio/futures.hpp>
#include <asyncio/tasks.hpp>

#include <deque>
#include <optional>
#include <vector>

namespace asyncio {

enum ReturnWhen : int { FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED };

/// An optional delay in seconds: empty (Python's None), a double, or a chrono duration.
struct OptionalDelay {
    std::optional<double> seconds;
    OptionalDelay() = default;
    OptionalDelay(std::nullopt_t) {}
    template <detail::Delay D>
    OptionalDelay(D d) : seconds(detail::to_seconds(d)) {}
};

struct WaitOptions {
    OptionalDelay timeout = {};
    ReturnWhen return_when = ALL_COMPLETED;
};

/// What wait() returns: the done and the pending futures (input order, duplicates removed).
template <class F>
struct WaitResult {
    std::vector<F> done;
    std::vector<F> pending;
};

namespace detail {
/// Waits until the condition of `return_when` holds for `fs` or the timeout expires.
/// Never cancels anything (Python's asyncio._wait).
Coro<> wait_states(std::vector<FutureStateBase*> fs, std::optional<double> timeout, ReturnWhen return_when);
/// Cancels `fut` and waits until it is done (Python's _cancel_and_wait).
Coro<> cancel_and_wait(RefPtr<FutureStateBase> fut);
}  // namespace detail

/// wait(futures or tasks, {.timeout, .return_when}) -> {done, pending}. Coroutines are not
/// accepted (as in Python 3.11+): wrap them with create_task().
template <class F>
    requires std::is_base_of_v<AnyFuture, F>
Coro<WaitResult<F>> wait(std::vector<F> fs, WaitOptions options = {}) {
    if (fs.empty()) throw std::invalid_argument("Set of Tasks/Futures is empty.");
    if (options.return_when != FIRST_COMPLETED && options.return_when != FIRST_EXCEPTION &&
        options.return_when != ALL_COMPLETED)
        throw std::invalid_argument("Invalid return_when value: " + std::to_string(int(options.return_when)));
    std::vector<F> unique;
    std::vector<detail::FutureStateBase*> states;
    for (auto& f : fs) {
        detail::FutureStateBase* st = f.state_ptr();
        if (!st) throw InvalidStateError("wait(): empty Task/Future handle");
        bool seen = false;
        for (auto* s : states) seen = seen || s == st;
        if (seen) continue;
        states.push_back(st);
        unique.push_back(f);
    }
    co_await detail::wait_states(states, options.timeout.seconds, options.return_when);
    WaitResult<F> out;
    for (auto& f : unique) (f.done() ? out.done : out.pending).push_back(f);
    co_return out;
}

namespace detail {
template <class A>
auto ensure_task(A&& aw) {
    if constexpr (is_coro_v<std::remove_cvref_t<A>>)
        return create_task(std::move(aw));
    else if constexpr (std::is_base_of_v<AnyFuture, std::remove_cvref_t<A>>)
        return aw;
    else
        return create_task(as_coro(std::forward<A>(aw)));
}
}  // namespace detail

/// wait_for(aw, timeout) -> T: waits for `aw`; on expiry cancels it, waits until it is
/// cancelled, and throws TimeoutError (Python 3.12 semantics: a timeout <= 0 cancels at
/// once; an empty timeout waits forever).
template <class A>
    requires detail::GatherArg<A>
Coro<detail::await_result_t<A>> wait_for(A aw, OptionalDelay timeout) {
    using T = detail::await_result_t<A>;
    if (timeout.seconds && *timeout.seconds <= 0) {
        auto fut = detail::ensure_task(std::move(aw));
        if (!fut.done()) {
            co_await detail::cancel_and_wait(detail::RefPtr<detail::FutureStateBase>(fut.state_ptr()));
            if (fut.cancelled()) throw TimeoutError();
        }
        if constexpr (std::is_void_v<T>)
            co_return co_await fut;
        else
            co_return co_await fut;
    }
    co_return co_await asyncio::timeout(timeout.seconds, std::move(aw));
}

namespace detail {
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

/// as_completed(tasks or futures, timeout) -> a range of N awaitables; the k-th yields the
/// result of the k-th task to complete (or throws its exception, or TimeoutError).
template <class F>
class AsCompleted {
public:
    using T = detail::await_result_t<F>;
    AsCompleted(std::vector<F> fs, OptionalDelay timeout) {
        std::vector<detail::RefPtr<detail::FutureStateBase>> states;
        for (auto& f : fs) {
            if (!f.state_ptr()) throw InvalidStateError("as_completed(): empty Task/Future handle");
            bool seen = false;
            for (auto& s : states) seen = seen || s.get() == f.state_ptr();
            if (!seen) states.emplace_back(f.state_ptr());
        }
        EventLoop& loop = get_running_loop();
        state_ = detail::RefPtr<detail::AsCompletedState>::adopt(
            new detail::AsCompletedState(loop, std::move(states), timeout.seconds));
        state_->start();
    }

    class iterator {
    public:
        using difference_type = std::ptrdiff_t;
        using value_type = Coro<T>;
        Coro<T> operator*() const {
            ++state_->handed_out;
            return next(state_);
        }
        iterator& operator++() {
            ++i_;
            return *this;
        }
        void operator++(int) { ++i_; }
        bool operator==(const iterator& o) const { return i_ == o.i_; }

    private:
        friend class AsCompleted;
        iterator(detail::RefPtr<detail::AsCompletedState> s, std::size_t i) : state_(std::move(s)), i_(i) {}
        detail::RefPtr<detail::AsCompletedState> state_;
        std::size_t i_;
    };
    /// Iteration resumes after the awaitables already handed out (as Python's iterator).
    iterator begin() const { return iterator(state_, state_->handed_out); }
    iterator end() const { return iterator(state_, state_->size()); }
    std::size_t size() const { return state_->size(); }

private:
    static Coro<T> next(detail::RefPtr<detail::AsCompletedState> st) {
        detail::FutureStateBase* f = co_await st->next_done();
        if (!f) throw TimeoutError();
        f->check_result();
        if constexpr (!std::is_void_v<T>) {
            using S = std::conditional_t<std::is_base_of_v<AnyTask, F>, detail::TaskState<T>, detail::FutureState<T>>;
            co_return static_cast<S*>(f)->get_for_await();
        }
    }
    detail::RefPtr<detail::AsCompletedState> state_;
};

template <class F>
    requires std::is_base_of_v<AnyFuture, F>
AsCompleted<F> as_completed(std::vector<F> fs, OptionalDelay timeout = {}) {
    return AsCompleted<F>(std::move(fs), timeout);
}

}  // namespace asyncio
