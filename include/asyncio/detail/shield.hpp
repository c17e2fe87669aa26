// asyncio/detail/shield.hpp - the link behind asyncio::shield (tasks.hpp).
//
// shield(aw) returns an outer future that mirrors the inner task; cancelling the outer future
// (or the task awaiting it) does not cancel the inner one, which runs on (Python's shield).
#pragma once

#include <asyncio/detail/event_loop.hpp>
#include <asyncio/futures.hpp>

#include <exception>
#include <string>

namespace asyncio {

namespace detail {

/// Links an inner future/task to the outer future returned by shield().
template <class T, class InnerState>
class ShieldLink final : public FutureStateBase, public PoolAllocated {
public:
    using PoolAllocated::operator new;
    using PoolAllocated::operator delete;
    ShieldLink(EventLoop& loop, RefPtr<InnerState> inner, RefPtr<FutureState<T>> outer)
        : FutureStateBase(loop), inner_(std::move(inner)), outer_(std::move(outer)) {}
    void start() {
        if (inner_->done()) {
            copy_outcome();  // Python returns the inner future itself: no extra iteration
            return;
        }
        inner_node_.attach(this, inner_.get(), 0);
        outer_node_.attach(this, outer_.get(), 1);
    }
    void on_child_done(ChildNode<ShieldLink>& node) {
        if (node.index == 0) {
            outer_node_.detach();
            copy_outcome();
        } else {
            // The outer future finished first (cancelled): stop listening to the inner one.
            inner_node_.detach();
        }
    }
    /// The inner task was abandoned by a closing loop: let go of the outer future too.
    void on_child_dropped(ChildNode<ShieldLink>& node) noexcept {
        if (node.index == 0) outer_node_.detach();
    }

private:
    void copy_outcome() {
        if (outer_->cancelled()) return;
        if (inner_->cancelled()) {
            outer_->cancel(std::string());
        } else if (std::exception_ptr e = inner_->exception()) {
            outer_->set_exception(e);
        } else if constexpr (std::is_void_v<T>) {
            outer_->set_result();
        } else {
            outer_->set_result(inner_->get_for_await());
        }
    }
    ~ShieldLink() override = default;
    void last_release() noexcept override { delete this; }
    RefPtr<InnerState> inner_;
    RefPtr<FutureState<T>> outer_;
    ChildNode<ShieldLink> inner_node_;
    ChildNode<ShieldLink> outer_node_;
};

template <class T, class InnerState>
Future<T> shield_state(RefPtr<InnerState> inner) {
    if (!inner) throw InvalidStateError("shield(): empty Task/Future handle");
    EventLoop& loop = inner->loop();
    Future<T> outer(loop);
    auto* outer_state = static_cast<FutureState<T>*>(outer.state_ptr());
    auto link = RefPtr<ShieldLink<T, InnerState>>::adopt(
        new ShieldLink<T, InnerState>(loop, std::move(inner), RefPtr<FutureState<T>>(outer_state)));
    link->start();
    return outer;
}

}  // namespace detail

}  // namespace asyncio
