// asyncio/detail/gather.hpp - the machinery behind asyncio::gather (tasks.hpp): the outer
// future (GatherState, Python's _GatheringFuture), the children it listens to and the
// awaitable handle gather() returns.
//
// Python's rules: coroutines become tasks at once; the outer future completes with the first
// child exception (the other children go on running) or, when all are done, with every
// result; cancelling the outer future cancels every child; a child cancelled on its own makes
// gather raise CancelledError. With return_exceptions, failures and cancellations are
// returned in place of values (asyncio::Result<T>).
#pragma once

#include <asyncio/detail/event_loop.hpp>
#include <asyncio/detail/task_state.hpp>
#include <asyncio/futures.hpp>

#include <memory>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace asyncio {

class AnyTask;  // tasks.hpp
template <class T>
class Result;  // tasks.hpp

namespace detail {

class GatherState;
/// gather's done callback on one child: 24 bytes, the child is found from the node's index.
struct GatherNode : ReadyItem {
    GatherState* owner = nullptr;
};

class GatherState final : public FutureStateBase, public PoolAllocated {
public:
    using PoolAllocated::operator new;
    using PoolAllocated::operator delete;
    GatherState(EventLoop& loop, std::vector<RefPtr<FutureStateBase>> children, bool return_exceptions);
    /// Registers the done callbacks (after construction, once the state is owned).
    void start();
    bool cancel(std::string msg) override;
    void on_child_done(FutureStateBase& fut);
    static const ReadyItemOps node_ops;

    const std::vector<RefPtr<FutureStateBase>>& children() const noexcept { return children_; }
    std::string repr() const override { return "<_GatheringFuture " + FutureStateBase::repr().substr(8); }

private:
    ~GatherState() override;
    void last_release() noexcept override {
        FutureStateBase::last_release();
        delete this;
    }
    std::vector<RefPtr<FutureStateBase>> children_;
    std::unique_ptr<GatherNode[]> nodes_;  // nodes_[i] listens to children_[i] (first occurrence)
    std::size_t nfuts_ = 0;
    std::size_t nfinished_ = 0;
    bool return_exceptions_;
    bool cancel_requested_ = false;
};

/// A child of gather: its state and typed access to its value.
template <class T>
struct GatherChild {
    RefPtr<FutureStateBase> state;
    ValueHolder<T>* values;
};

template <class R, class Children>
class Gathering;
template <class A>
inline constexpr bool is_gathering_v = false;
template <class R, class C>
inline constexpr bool is_gathering_v<Gathering<R, C>> = true;

template <class T>
stored_t<T> take_child_value(const GatherChild<T>& c) {
    if constexpr (std::is_void_v<T>) {
        return std::monostate{};
    } else {
        return c.values->get_for_await();
    }
}
template <class T>
Result<T> take_child_result(const GatherChild<T>& c) {
    FutureStateBase& st = *c.state;
    if (st.cancelled()) return Result<T>(std::make_exception_ptr(st.make_cancelled_error()));
    if (std::exception_ptr e = st.exception()) return Result<T>(e);
    return Result<T>(take_child_value(c));
}

/// What gather() returns: an awaitable handle on the outer future.
/// The children of a vector gather live in the GatherState only. They are all tasks, or all
/// futures (one Gathering type for both, like Python's single _GatheringFuture).
template <class T>
struct VectorChildren {
    bool futures = false;
};

template <class R, class Children>
class Gathering {
public:
    Gathering(RefPtr<GatherState> state, Children children)
        : state_(std::move(state)), children_(std::move(children)) {}

    bool done() const noexcept { return state_->done(); }
    bool cancelled() const noexcept { return state_->cancelled(); }
    bool cancel(std::string msg = {}) { return state_->cancel(std::move(msg)); }

    struct Awaiter {
        FutureAwaiter<GatherState, void> inner;
        Gathering* self;
        bool await_ready() const noexcept { return inner.await_ready(); }
        void await_suspend(std::coroutine_handle<> h) { inner.await_suspend(h); }
        R await_resume() {
            inner.await_resume();
            return self->build();
        }
    };
    Awaiter operator co_await() & { return Awaiter{{state_}, this}; }
    Awaiter operator co_await() && { return Awaiter{{state_}, this}; }

private:
    template <class T>
    static R build_vector(const std::vector<RefPtr<FutureStateBase>>& states, const VectorChildren<T>& kind) {
        R out;
        out.reserve(states.size());
        for (auto& st : states) {
            GatherChild<T> c{st, nullptr};
            if constexpr (!std::is_void_v<T>) {
                if (kind.futures)
                    c.values = static_cast<FutureState<T>*>(st.get());
                else
                    c.values = static_cast<TaskState<T>*>(st.get());
            }
            if constexpr (std::is_constructible_v<typename R::value_type, decltype(take_child_result(c))>)
                out.push_back(take_child_result(c));
            else
                out.push_back(take_child_value(c));
        }
        return out;
    }
    R build() {
        if constexpr (requires { build_vector(state_->children(), children_); }) {
            return build_vector(state_->children(), children_);
        } else {
            return std::apply(
                [](auto&... c) {
                    if constexpr (requires { R(take_child_result(c)...); })
                        return R(take_child_result(c)...);
                    else
                        return R(take_child_value(c)...);
                },
                children_);
        }
    }
    RefPtr<GatherState> state_;
    Children children_;
};

template <class R, class Children, class States>
Gathering<R, Children> make_gathering(Children children, States states, bool return_exceptions) {
    EventLoop& loop = get_running_loop();
    auto st = RefPtr<GatherState>::adopt(new GatherState(loop, std::move(states), return_exceptions));
    st->start();
    return Gathering<R, Children>(std::move(st), std::move(children));
}

template <class... Cs>
std::vector<RefPtr<FutureStateBase>> states_of(const std::tuple<Cs...>& children) {
    std::vector<RefPtr<FutureStateBase>> v;
    std::apply([&](auto&... c) { (v.push_back(c.state), ...); }, children);
    return v;
}

}  // namespace detail

}  // namespace asyncio
