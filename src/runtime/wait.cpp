// src/runtime/wait.cpp - asyncio::wait's core (Python's _wait), _cancel_and_wait, as_completed.
#include <asyncio/tasks.hpp>

namespace asyncio::detail {

namespace {
/// What wait()'s done callbacks share. Held by the callbacks themselves: one may already be
/// queued on the loop when wait() returns, and must not touch a finished coroutine's frame.
struct WaitShared {
    Future<void> waiter;
    TimerHandle timeout_handle;
    std::size_t counter;
    ReturnWhen return_when;
};
}  // namespace

Coro<> wait_states(std::vector<FutureStateBase*> fs, std::optional<double> timeout, ReturnWhen return_when) {
    EventLoop& loop = get_running_loop();
    auto shared = std::make_shared<WaitShared>(WaitShared{Future<void>(loop), {}, fs.size(), return_when});
    if (timeout) {
        shared->timeout_handle = loop.call_later(*timeout, [waiter = shared->waiter]() mutable {
            if (!waiter.done()) waiter.set_result();
        });
    }
    auto on_completion = [shared](FutureStateBase* f) {
        WaitShared& s = *shared;
        --s.counter;
        if (s.counter == 0 || s.return_when == FIRST_COMPLETED ||
            (s.return_when == FIRST_EXCEPTION && !f->cancelled() && f->exception())) {
            s.timeout_handle.cancel();
            if (!s.waiter.done()) s.waiter.set_result();
        }
    };
    std::vector<std::uint64_t> ids;
    ids.reserve(fs.size());
    for (FutureStateBase* f : fs) ids.push_back(f->add_done_callback(on_completion, nullptr));
    struct Cleanup {
        std::vector<FutureStateBase*>& fs;
        std::vector<std::uint64_t>& ids;
        WaitShared& shared;
        ~Cleanup() {
            shared.timeout_handle.cancel();
            for (std::size_t i = 0; i < ids.size(); ++i) fs[i]->remove_done_callback(ids[i]);
        }
    } cleanup{fs, ids, *shared};
    co_await shared->waiter;
}

Coro<> cancel_and_wait(RefPtr<FutureStateBase> fut) {
    EventLoop& loop = get_running_loop();
    Future<void> waiter(loop);
    std::uint64_t id = fut->add_done_callback(
        [waiter](FutureStateBase*) mutable {
            if (!waiter.done()) waiter.set_result();
        },
        nullptr);
    struct Cleanup {
        FutureStateBase* f;
        std::uint64_t id;
        ~Cleanup() { f->remove_done_callback(id); }
    } cleanup{fut.get(), id};
    fut->cancel(std::string());
    co_await waiter;
}

// ---- as_completed ----------------------------------------------------------------------------
AsCompletedState::AsCompletedState(EventLoop& loop, std::vector<RefPtr<FutureStateBase>> fs,
                                   std::optional<double> timeout)
    : FutureStateBase(loop), fs_(std::move(fs)), nodes_(fs_.size()), timeout_(timeout) {}

AsCompletedState::~AsCompletedState() = default;

void AsCompletedState::start() {
    todo_ = fs_.size();
    for (std::size_t i = 0; i < fs_.size(); ++i) nodes_[i].attach(this, fs_[i].get(), i);
    if (todo_ && timeout_) {
        add_ref();
        RefPtr<AsCompletedState> self = RefPtr<AsCompletedState>::adopt(this);
        timeout_handle_ = loop().call_later(*timeout_, [self] { self->on_timeout(); });
    }
}

void AsCompletedState::on_child_done(ChildNode<AsCompletedState>& node) {
    if (todo_ == 0) return;  // the timeout came first
    --todo_;
    done_.push_back(node.child);
    if (todo_ == 0 && timeout_handle_) timeout_handle_.cancel();
    wake_getter();
}

void AsCompletedState::on_timeout() {
    for (auto& n : nodes_) {
        if (n.detach()) done_.push_back(nullptr);  // a dummy entry: next_done() raises TimeoutError
    }
    todo_ = 0;
    for (std::size_t i = 0; i < done_.size(); ++i) wake_getter();
}

void AsCompletedState::wake_getter() {
    while (!getters_.empty()) {
        RefPtr<PlainFutureState> g = std::move(getters_.front());
        getters_.pop_front();
        if (!g->done()) {
            g->set_done();
            return;
        }
    }
}

Coro<FutureStateBase*> AsCompletedState::next_done() {
    RefPtr<AsCompletedState> keep(this);
    while (done_.empty()) {
        auto getter = RefPtr<PlainFutureState>::adopt(new PlainFutureState(loop()));
        getters_.push_back(getter);
        co_await FutureAwaiter<PlainFutureState, void>(getter);
    }
    FutureStateBase* f = done_.front();
    done_.pop_front();
    co_return f;
}

}  // namespace asyncio::detail
