// asyncio/runners.hpp - asyncio::run and Runner (Python's asyncio.runners).
//
// run(main()) creates a new loop, runs main() to completion, then cancels every task still
// pending and waits for them, shuts down async generators and the default executor, and
// closes the loop. In the main thread the first Ctrl-C cancels the main task (run() then
// throws KeyboardInterrupt) and a second one interrupts the process for good.
#pragma once

#include <asyncio/contextvars.hpp>
#include <asyncio/coroutines.hpp>
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/tasks.hpp>

#include <memory>

namespace asyncio {

struct RunOptions {
    bool debug = false;
    /// A loop with a virtual clock (see LoopOptions): for tests.
    bool virtual_clock = false;
};

class Runner {
public:
    explicit Runner(RunOptions options = {}) : options_(options) {}
    Runner(const Runner&) = delete;
    Runner& operator=(const Runner&) = delete;
    ~Runner();

    /// Runs `coro` on this runner's loop and returns its result. RuntimeError when called
    /// from a running loop or after close().
    ///
    /// As in Python, the runner has one context (a copy of the current context, taken when
    /// its loop is made) and every run() runs in it: what one run sets in a ContextVar, the
    /// next run sees.
    template <class T>
    T run(Coro<T> coro) {
        return run(std::move(coro), context_);
    }
    /// run() in `context` instead of the runner's own (Python's run(coro, context=...)):
    /// what the coroutine sets is recorded in `context`.
    template <class T>
    T run(Coro<T> coro, Context& context) {
        check_can_run();
        lazy_init();
        Task<T> task = enters_context(context) ? context.run([&] { return loop_->create_task(std::move(coro)); })
                                               : loop_->create_task(std::move(coro));
        RunGuard guard(*this, task, context);
        try {
            return loop_->run_until_complete(task);
        } catch (const CancelledError&) {
            guard.on_cancelled();  // KeyboardInterrupt after Ctrl-C
            throw;
        }
    }
    /// The runner's loop (created on first use).
    EventLoop& get_loop();
    /// Cancels and awaits remaining tasks, shuts down async generators and the default
    /// executor, closes the loop. Idempotent.
    void close();

private:
    enum class State { created, initialized, closed };
    /// Installs/removes the Ctrl-C handler around one run().
    class RunGuard {
    public:
        /// At the end of the run, what the main task set is recorded in `context`.
        RunGuard(Runner& runner, AnyTask main_task, Context& context);
        ~RunGuard();
        void on_cancelled();

    private:
        Runner& runner_;
        AnyTask main_task_;
        Context& context_;
        bool installed_ = false;
        bool interrupted_ = false;  // Ctrl-C cancelled the main task
    };
    void check_can_run() const;
    void lazy_init();
    /// Whether the main task must be created inside `context` (not when no context variable
    /// was ever used in this thread: every context is empty then, and creating the task
    /// stays on its fast path).
    static bool enters_context(const Context& context) noexcept;

    RunOptions options_;
    State state_ = State::created;
    std::unique_ptr<EventLoop> loop_;
    Context context_;  // Python's Runner._context
};

/// Python's asyncio.run(): runs `main` in a new loop and closes it.
template <class T>
T run(Coro<T> main, RunOptions options = {}) {
    if (get_running_loop_or_null())
        throw RuntimeError(
            "asyncio.run() cannot be called from a running event loop: inside a coroutine, use "
            "`co_await main()` or create_task(main()) instead of asyncio::run()");
    Runner runner(options);
    return runner.run(std::move(main));
}

}  // namespace asyncio
