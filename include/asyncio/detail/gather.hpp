// asyncio/detail/gather.hpp - asyncio::gather (part of asyncio/tasks.hpp).
//
// Python's rules: coroutines become tasks at once; the outer future completes with the first
// child exception (the other children go on running) or, when all are done, with every
// result; cancelling the outer future cancels every child; a child cancelled on its own makes
// gather raise CancelledError. With return_exceptions, failures and cancellations are
// returned in place of values (asyncio::Result<T>).
#pragma once

#include <asyncio/detail/awaitable.hpp>
#include <asyncio/futures.hpp>
#include <asyncio/tasks.hpp>

#include <tuple>
#include <variant>
#include <vector>

namespace asyncio {

/// The tag selecting gather's return_exceptions=True.
struct ReturnExceptions {};
inline constexpr ReturnExceptions return_exceptions{};

/// A value or the exception that took its place (gather with return_exceptions).
template <class T>
class Result {
public:
    using value_type = detail::stored_t<T>;
    explicit Result(value_type v) : v_(std::in_place_index<0>, std::move(v)) {}
    explicit Result(std::exception_ptr e) : v_(std::in_place_index<1>, std::move(e)) {}
    bool has_value() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }
    /// The value; rethrows the error when there is none.
    value_type& value() & {
        if (!has_value()) std::rethrow_exception(std::get<1>(v_));
        return std::get<0>(v_);
    }
    const value_type& value() const& {
        if (!has_value()) std::rethrow_exception(std::get<1>(v_));
        return std::get<0>(v_);
    }
    value_type&& value() && { return std::move(value()); }
    /// The exception (null when there is a value).
    std::exception_ptr error() const noexcept { return has_value() ? nullptr : std::get<1>(v_); }

private:
    std::variant<value_type, std::exception_ptr> v_;
};

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

template <class T>
GatherChild<T> gather_child(Coro<T>&& coro) {
    Task<T> t = create_task(std::move(coro));
    auto* st = static_cast<TaskState<T>*>(t.state_ptr());
    return {RefPtr<FutureStateBase>(st), st};
}
template <class T>
GatherChild<T> gather_child(const Task<T>& task) {
    auto* st = static_cast<TaskState<T>*>(task.state_ptr());
    if (!st) throw InvalidStateError("gather(): empty Task handle");
    return {RefPtr<FutureStateBase>(st), st};
}
template <class T>
GatherChild<T> gather_child(const Future<T>& fut) {
    auto* st = static_cast<FutureState<T>*>(fut.state_ptr());
    if (!st) throw InvalidStateError("gather(): empty Future handle");
    return {RefPtr<FutureStateBase>(st), st};
}

inline GatherChild<void> gather_child(const AnyTask& task) {
    if (!task.state_ptr()) throw InvalidStateError("gather(): empty Task handle");
    return {RefPtr<FutureStateBase>(task.state_ptr()), nullptr};
}

}  // namespace detail

/// create_task() of any awaitable that is not a coroutine (a queue's get(), a sleep, a
/// gather...): it is wrapped in a coroutine first (Python's ensure_future).
template <class A>
    requires(detail::Awaitable<A> && !is_coro_v<std::remove_cvref_t<A>> &&
             !std::is_base_of_v<AnyFuture, std::remove_cvref_t<A>>)
Task<detail::await_result_t<A>> create_task(A aw) {
    return create_task(detail::as_coro(std::move(aw)));
}
template <class A>
    requires(detail::Awaitable<A> && !is_coro_v<std::remove_cvref_t<A>> &&
             !std::is_base_of_v<AnyFuture, std::remove_cvref_t<A>>)
Task<detail::await_result_t<A>> create_task(A aw, TaskOptions options) {
    return create_task(detail::as_coro(std::move(aw)), options);
}

template <class A>
auto EventLoop::create_task(A aw, std::string_view name) {
    static_assert(detail::Awaitable<A>, "create_task() needs a coroutine or an awaitable");
    return create_task(detail::as_coro(std::move(aw)), name);
}

namespace detail {

template <class R, class Children>
class Gathering;
template <class A>
inline constexpr bool is_gathering_v = false;
template <class R, class C>
inline constexpr bool is_gathering_v<Gathering<R, C>> = true;

template <class A>
    requires(!is_coro_v<std::remove_cvref_t<A>> && !std::is_base_of_v<AnyFuture, std::remove_cvref_t<A>>)
GatherChild<await_result_t<A>> gather_child(A&& aw) {
    using T = await_result_t<A>;
    // A nested gather starts awaiting at once (eagerly), so that cancelling this gather
    // reaches the inner one's children even before the wrapper task's first step, as
    // Python's gather-of-a-gather does.
    constexpr bool eager = is_gathering_v<std::remove_cvref_t<A>>;
    Task<T> t = create_task(as_coro(std::forward<A>(aw)), TaskOptions{{}, eager});
    auto* st = static_cast<TaskState<T>*>(t.state_ptr());
    return {RefPtr<FutureStateBase>(st), st};
}

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

/// gather(a(), b(), ...) -> std::tuple<A, B, ...> (void -> std::monostate).
template <detail::GatherArg... As>
auto gather(As&&... aws) {
    using R = std::tuple<detail::stored_t<detail::await_result_t<As>>...>;
    std::tuple<detail::GatherChild<detail::await_result_t<As>>...> children{
        detail::gather_child(std::forward<As>(aws))...};
    auto states = detail::states_of(children);
    return detail::make_gathering<R>(std::move(children), std::move(states), false);
}

/// gather(return_exceptions, a(), b(), ...) -> std::tuple<Result<A>, Result<B>, ...>.
template <detail::GatherArg... As>
auto gather(ReturnExceptions, As&&... aws) {
    using R = std::tuple<Result<detail::await_result_t<As>>...>;
    std::tuple<detail::GatherChild<detail::await_result_t<As>>...> children{
        detail::gather_child(std::forward<As>(aws))...};
    auto states = detail::states_of(children);
    return detail::make_gathering<R>(std::move(children), std::move(states), true);
}

namespace detail {
/// Whether a vector gather's children are futures (FutureState) rather than tasks.
template <class A>
inline constexpr bool is_plain_future_v = std::is_base_of_v<AnyFuture, A> && !std::is_base_of_v<AnyTask, A>;

template <class A>
std::vector<RefPtr<FutureStateBase>> gather_vector(std::vector<A> aws) {
    std::vector<RefPtr<FutureStateBase>> states;
    states.reserve(aws.size());
    for (auto& a : aws) states.push_back(gather_child(std::move(a)).state);
    return states;  // `aws` is freed here, before the gather starts (peak memory)
}
}  // namespace detail

/// gather(std::vector<Coro<T>> / std::vector<Task<T>> / std::vector<Future<T>>)
///     -> std::vector<T> (void -> std::monostate).
template <class A>
    requires detail::GatherArg<A>
auto gather(std::vector<A> aws) {
    using T = detail::await_result_t<A>;
    return detail::make_gathering<std::vector<detail::stored_t<T>>>(
        detail::VectorChildren<T>{detail::is_plain_future_v<A>}, detail::gather_vector(std::move(aws)), false);
}

/// gather(return_exceptions, vector) -> std::vector<Result<T>>.
template <class A>
    requires detail::GatherArg<A>
auto gather(ReturnExceptions, std::vector<A> aws) {
    using T = detail::await_result_t<A>;
    return detail::make_gathering<std::vector<Result<T>>>(
        detail::VectorChildren<T>{detail::is_plain_future_v<A>}, detail::gather_vector(std::move(aws)), true);
}

}  // namespace asyncio
