// src/gather.cpp - the outer future of asyncio::gather (Python's _GatheringFuture and its
// _done_callback).
#include <asyncio/tasks.hpp>

namespace asyncio::detail {

GatherState::GatherState(EventLoop& loop, std::vector<RefPtr<FutureStateBase>> children,
                         bool return_exceptions)
    : FutureStateBase(loop), children_(std::move(children)), return_exceptions_(return_exceptions) {}

void GatherState::start() {
    // Distinct children only (the same task passed twice counts once), as Python's arg_to_fut.
    std::vector<FutureStateBase*> distinct;
    for (auto& c : children_) {
        bool seen = false;
        for (FutureStateBase* d : distinct) seen = seen || d == c.get();
        if (!seen) distinct.push_back(c.get());
    }
    nfuts_ = distinct.size();
    if (nfuts_ == 0) {
        finish(FutureStatus::finished);
        return;
    }
    nodes_.resize(nfuts_);
    // Pending children get the callback; children already done are handled at once,
    // after all callbacks were added (Python's done_futs loop).
    std::vector<std::size_t> already_done;
    for (std::size_t i = 0; i < nfuts_; ++i) {
        if (distinct[i]->done())
            already_done.push_back(i);
        else
            nodes_[i].attach(this, distinct[i], i);
    }
    for (std::size_t i : already_done) {
        nodes_[i].owner = this;
        nodes_[i].child = distinct[i];
        nodes_[i].index = i;
        on_child_done(nodes_[i]);
        nodes_[i].child = nullptr;
    }
}

GatherState::~GatherState() = default;

bool GatherState::cancel(std::string msg) {
    anchor_->open_loop();
    if (done()) return false;
    bool ret = false;
    for (auto& c : children_) {
        if (c->cancel(msg)) ret = true;
    }
    if (ret) cancel_requested_ = true;
    return ret;
}

void GatherState::on_child_done(ChildNode<GatherState>& node) {
    FutureStateBase& fut = *node.child;
    ++nfinished_;
    if (done()) {
        if (!fut.cancelled()) (void)fut.exception();  // mark retrieved
        return;
    }
    if (!return_exceptions_) {
        if (fut.cancelled()) {
            set_exception_now(std::make_exception_ptr(fut.make_cancelled_error()));
            return;
        }
        if (std::exception_ptr e = fut.exception()) {
            set_exception_now(e);
            return;
        }
    }
    if (nfinished_ == nfuts_) {
        // Mark every child's exception retrieved (they are returned as results).
        for (auto& c : children_)
            if (!c->cancelled()) (void)c->exception();
        if (cancel_requested_)
            set_exception_now(std::make_exception_ptr(fut.make_cancelled_error()));
        else
            finish(FutureStatus::finished);
    }
}

}  // namespace asyncio::detail
