// src/runtime/gather.cpp - the outer future of asyncio::gather (Python's _GatheringFuture and its
// _done_callback).
#include <asyncio/tasks.hpp>

namespace asyncio::detail {

// A node keeps its gather alive while registered and while queued, as Python's callback
// closure keeps its _GatheringFuture: children that finish after the gather failed still
// have their exceptions marked retrieved. (Known limit: a plain future that is never
// completed and whose handles are all dropped keeps its gather, and itself, alive - a cycle
// Python's garbage collector would break; tasks always end, so they never cause it.)
namespace {
FutureStateBase& child_of(const GatherNode* node, const std::vector<RefPtr<FutureStateBase>>& children,
                          const GatherNode* first) {
    return *children[static_cast<std::size_t>(node - first)];
}
}  // namespace

const ReadyItemOps GatherState::node_ops = {
    /*run=*/[](ReadyItem* item) {
        auto* node = static_cast<GatherNode*>(item);
        GatherState* g = node->owner;
        node->owner = nullptr;
        try {
            g->on_child_done(child_of(node, g->children_, g->nodes_.get()));
        } catch (...) {
            if (EventLoop* loop = g->loop_or_null())
                loop->call_exception_handler(
                    {"Exception in gather's done callback", std::current_exception(), g->repr(), {}});
        }
        g->release();  // the node's reference
    },
    /*discard=*/
    [](ReadyItem* item) noexcept {
        auto* node = static_cast<GatherNode*>(item);
        std::exchange(node->owner, nullptr)->release();
    },
    /*drop=*/
    [](ReadyItem* item) noexcept {
        auto* node = static_cast<GatherNode*>(item);
        std::exchange(node->owner, nullptr)->release();
    },
    /*describe=*/
    [](const ReadyItem* item) -> std::string {
        return "<gather callback of " + static_cast<const GatherNode*>(item)->owner->repr() + ">";
    },
};

GatherState::GatherState(EventLoop& loop, std::vector<RefPtr<FutureStateBase>> children, bool return_exceptions)
    : FutureStateBase(loop), children_(std::move(children)), return_exceptions_(return_exceptions) {}

void GatherState::start() {
    // Distinct children only (the same task passed twice counts once), as Python's arg_to_fut;
    // the mark makes that O(n).
    const std::size_t n = children_.size();
    std::vector<std::size_t> already_done;
    nodes_ = std::make_unique<GatherNode[]>(n);
    nfuts_ = 0;
    for (auto& c : children_) {
        if (c->anchor() != anchor_.get()) {
            throw std::invalid_argument("gather(): futures are attached to different event loops");
        }
    }
    for (std::size_t i = 0; i < n; ++i) {
        FutureStateBase* c = children_[i].get();
        if (c->mark) continue;
        c->mark = true;
        ++nfuts_;
        // Pending children get the callback; children already done are handled after all
        // callbacks were added (Python's done_futs loop).
        if (c->done()) {
            already_done.push_back(i);
        } else {
            nodes_[i].ops = &node_ops;
            nodes_[i].owner = this;
            add_ref();  // the node's reference, see node_ops
            c->add_callback_node(&nodes_[i]);
        }
    }
    for (auto& c : children_) c->mark = false;
    if (nfuts_ == 0) {
        finish(FutureStatus::finished);
        return;
    }
    for (std::size_t i : already_done) on_child_done(*children_[i]);
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

void GatherState::on_child_done(FutureStateBase& fut) {
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
