// src/runtime/loop_state.hpp - what the runtime keeps per loop beside the loop core: the
// default executor, the started async generators (for shutdown_asyncgens) and the futures
// parked while executor work runs. The loop core holds it as one opaque resource (see
// loop/loop_impl.hpp): created on first use, told when the loop closes, destroyed with it.
#pragma once

#include <asyncio/asyncgen.hpp>
#include <asyncio/executors.hpp>
#include <asyncio/futures.hpp>

#include "loop/loop_impl.hpp"

#include <cstdint>
#include <memory>
#include <unordered_map>

namespace asyncio::detail {

struct RuntimeLoopState final : LoopResource {
    std::unique_ptr<Executor> default_executor;
    bool executor_shutdown_called = false;
    IntrusiveList<AsyncGenHook> asyncgens;  // started async generators, newest first
    /// Futures waiting for executor work, under an id: a worker thread carries only the id.
    std::unordered_map<std::uint64_t, RefPtr<FutureStateBase>> parked_futures;
    std::uint64_t next_parked_id = 0;

    /// The loop's state, created on first use.
    static RuntimeLoopState& of(EventLoop& loop);
    /// The loop's state, or null when the runtime never needed one.
    static RuntimeLoopState* find(EventLoop& loop) noexcept;

    /// Parked futures are dropped, generators still registered forgotten (they finalize
    /// themselves), and the default executor stops taking work without waiting (Python's
    /// close()).
    void loop_closing() noexcept override;
    /// Joins the default executor's threads (the loop they post to still exists).
    ~RuntimeLoopState() override;
};

}  // namespace asyncio::detail
