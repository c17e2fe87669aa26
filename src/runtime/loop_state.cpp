// src/runtime/loop_state.cpp - the runtime's per-loop state (loop_state.hpp) and the
// EventLoop members that use it: the default executor (Python's set_default_executor,
// shutdown_default_executor), async-generator tracking (shutdown_asyncgens), parked futures.
#include "loop_state.hpp"

#include <asyncio/tasks.hpp>

#include <thread>

namespace asyncio {
namespace detail {

namespace {
const char state_key = 0;  // identifies the runtime's state among the loop's
}  // namespace

RuntimeLoopState& RuntimeLoopState::of(EventLoop& loop) {
    LoopResource& s = IoAccess::impl(loop).state(&state_key, [] { return std::make_unique<RuntimeLoopState>(); });
    return static_cast<RuntimeLoopState&>(s);
}

RuntimeLoopState* RuntimeLoopState::find(EventLoop& loop) noexcept {
    return static_cast<RuntimeLoopState*>(IoAccess::impl(loop).find_state(&state_key));
}

void RuntimeLoopState::loop_closing() noexcept {
    parked_futures.clear();  // executor work that never reported back
    while (AsyncGenHook* hook = asyncgens.front()) unregister_asyncgen(hook);
    if (default_executor) default_executor->shutdown(false);
}

RuntimeLoopState::~RuntimeLoopState() { default_executor.reset(); }

// ---- async generators ------------------------------------------------------------------------
void register_asyncgen(AsyncGenHook* hook, EventLoop* loop) {
    if (!loop || loop->is_closed()) return;
    RuntimeLoopState::of(*loop).asyncgens.push_front(*hook);
    hook->loop = loop;
}

void unregister_asyncgen(AsyncGenHook* hook) noexcept {
    if (!hook->loop) return;
    IntrusiveList<AsyncGenHook>::remove(*hook);
    hook->loop = nullptr;
}

// ---- parked futures --------------------------------------------------------------------------
std::uint64_t LoopAccess::park_future(EventLoop& loop, FutureStateBase* f) {
    RuntimeLoopState& s = RuntimeLoopState::of(loop);
    std::uint64_t id = ++s.next_parked_id;
    s.parked_futures.emplace(id, RefPtr<FutureStateBase>(f));
    return id;
}

RefPtr<FutureStateBase> LoopAccess::unpark_future(EventLoop& loop, std::uint64_t id) noexcept {
    RuntimeLoopState* s = RuntimeLoopState::find(loop);
    if (!s) return nullptr;
    auto it = s->parked_futures.find(id);
    if (it == s->parked_futures.end()) return nullptr;
    RefPtr<FutureStateBase> f = std::move(it->second);
    s->parked_futures.erase(it);
    return f;
}

}  // namespace detail

void EventLoop::shutdown_asyncgens() noexcept {
    // Each finalize() unregisters its hook, so the list shrinks as we go. A generator a task is
    // inside cannot be closed now (Python: "an error occurred during closing of asynchronous
    // generator"): reported and left to its owner.
    detail::RuntimeLoopState* state = detail::RuntimeLoopState::find(*this);
    if (!state) return;
    while (detail::AsyncGenHook* hook = state->asyncgens.front()) {
        if (hook->finalize(hook->owner)) continue;
        detail::unregister_asyncgen(hook);
        call_exception_handler(
            {"an error occurred during closing of asynchronous generator",
             std::make_exception_ptr(RuntimeError("aclose(): asynchronous generator is already running")),
             {},
             {}});
    }
}

// ---- the default executor --------------------------------------------------------------------
Executor& EventLoop::default_executor() {
    check_closed();
    detail::RuntimeLoopState& s = detail::RuntimeLoopState::of(*this);
    if (s.executor_shutdown_called) throw RuntimeError("Executor shutdown has been called");
    if (!s.default_executor) s.default_executor = std::make_unique<ThreadPoolExecutor>();
    return *s.default_executor;
}

void EventLoop::set_default_executor(std::unique_ptr<Executor> executor) {
    detail::RuntimeLoopState::of(*this).default_executor = std::move(executor);
}

Coro<void> EventLoop::shutdown_default_executor() {
    detail::RuntimeLoopState& s = detail::RuntimeLoopState::of(*this);
    s.executor_shutdown_called = true;
    std::unique_ptr<Executor> executor = std::move(s.default_executor);
    if (!executor) co_return;
    // Joining may take a while: a helper thread does it, so that the loop keeps running (and
    // keeps delivering the results of the work that is finishing).
    Future<void> joined(*this);
    auto* delivery = new Future<void>(joined);  // dereferenced and freed on this thread only
    std::thread joiner([this, ex = executor.get(), delivery] {
        ex->shutdown(true);
        try {
            call_soon_threadsafe([d = std::unique_ptr<Future<void>>(delivery)] {
                if (!d->done()) d->set_result();
            });
        } catch (const RuntimeError&) {
        }
    });
    std::exception_ptr error;
    try {
        co_await joined;
    } catch (...) {
        error = std::current_exception();
    }
    joiner.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace asyncio
