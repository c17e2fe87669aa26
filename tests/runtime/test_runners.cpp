// tests/runtime/test_runners.cpp - asyncio::run and Runner, the semantics of CPython's
// Lib/test/test_asyncio/test_runners.py (plus the parts of runners.py it relies on: the
// shutdown of leftover tasks, the debug flag, Ctrl-C handling).
#include "support.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <signal.h>
#include <unistd.h>

using namespace asyncio;
using asyncio_test::HandlerCapture;
using asyncio_test::LogCapture;
using asyncio_test::run_virtual;

namespace {

struct FancyExit : std::runtime_error {
    FancyExit() : std::runtime_error("fancy exit") {}
};

Coro<int> answer() {
    co_await asyncio::sleep(0);
    co_return 42;
}

Coro<> raise_spam() {
    co_await asyncio::sleep(0);
    throw std::invalid_argument("spam");
}

/// The current SIGINT disposition of the process.
struct sigaction sigint_action() {
    struct sigaction sa {};
    ::sigaction(SIGINT, nullptr, &sa);
    return sa;
}
bool sigint_is_default() { return sigint_action().sa_handler == SIG_DFL; }

/// Restores SIGINT's default disposition when a test that changed it ends.
struct RestoreSigint {
    ~RestoreSigint() {
        struct sigaction sa {};
        sa.sa_handler = SIG_DFL;
        sigemptyset(&sa.sa_mask);
        ::sigaction(SIGINT, &sa, nullptr);
    }
};

}  // namespace

// ============================================================================================
// asyncio::run
// ============================================================================================

TEST(Run, ReturnsTheValueOfMain) { EXPECT_EQ(asyncio::run(answer()), 42); }

TEST(Run, RunsAVoidMain) {
    bool ran = false;
    auto main = [](bool& ran) -> Coro<> {
        co_await asyncio::sleep(0);
        ran = true;
    };
    asyncio::run(main(ran));
    EXPECT_TRUE(ran);
}

TEST(Run, ReturnsAMoveOnlyValue) {
    auto main = []() -> Coro<std::unique_ptr<int>> {
        co_await asyncio::sleep(0);
        co_return std::make_unique<int>(7);
    };
    std::unique_ptr<int> p = asyncio::run(main());
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 7);
}

TEST(Run, RethrowsTheExceptionOfMain) {
    try {
        asyncio::run(raise_spam());
        FAIL() << "expected std::invalid_argument";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "spam");
    }
}

TEST(Run, RethrowsAnExceptionRaisedBeforeTheFirstSuspension) {
    auto main = []() -> Coro<int> {
        throw FancyExit();
        co_return 0;
    };
    EXPECT_THROW(asyncio::run(main()), FancyExit);
}

TEST(Run, MainIsRunAsATaskOnARunningLoop) {
    auto main = []() -> Coro<> {
        EventLoop& loop = get_running_loop();
        EXPECT_TRUE(loop.is_running());
        EXPECT_FALSE(loop.is_closed());
        EXPECT_TRUE(bool(current_task()));
        co_return;
    };
    asyncio::run(main());
}

TEST(Run, NoLoopIsRunningAfterRunReturns) {
    asyncio::run(answer());
    EXPECT_EQ(get_running_loop_or_null(), nullptr);
    EXPECT_THROW(get_running_loop(), RuntimeError);
}

TEST(Run, NoLoopIsRunningAfterRunThrows) {
    EXPECT_THROW(asyncio::run(raise_spam()), std::invalid_argument);
    EXPECT_EQ(get_running_loop_or_null(), nullptr);
}

TEST(Run, TheLoopIsClosedWhenRunReturns) {
    std::optional<Future<int>> fut;  // Future<T> has no empty state: it needs a loop
    Task<int> leftover;
    auto main = [](std::optional<Future<int>>& fut, Task<int>& leftover) -> Coro<> {
        fut = get_running_loop().create_future<int>();
        leftover = create_task([]() -> Coro<int> {
            co_await asyncio::sleep(10);
            co_return 1;
        }());
        co_return;
    };
    asyncio::run(main(fut, leftover));
    try {
        (void)fut->get_loop();
        FAIL() << "expected RuntimeError";
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "Event loop is closed");
    }
    EXPECT_THROW(leftover.get_loop(), RuntimeError);
}

TEST(Run, UsesANewLoopEachTime) {
    // Whatever the first run did to its loop does not leak into the second run's loop.
    auto first = []() -> Coro<> {
        EventLoop& loop = get_running_loop();
        loop.set_debug(true);
        loop.set_exception_handler([](EventLoop&, const ExceptionContext&) {});
        loop.set_task_factory(eager_task_factory);
        co_return;
    };
    auto second = []() -> Coro<> {
        EventLoop& loop = get_running_loop();
        EXPECT_FALSE(loop.get_debug());
        EXPECT_FALSE(bool(loop.get_exception_handler()));
        EXPECT_FALSE(loop.eager_task_factory_enabled());
        co_return;
    };
    asyncio::run(first());
    asyncio::run(second());
}

TEST(Run, AFutureOfAnEarlierRunBelongsToAClosedLoop) {
    std::optional<Future<>> old;
    auto first = [](std::optional<Future<>>& old) -> Coro<> {
        old = Future<>();
        co_return;
    };
    auto second = [](std::optional<Future<>>& old) -> Coro<> {
        // The new loop is open, the old one is not.
        EXPECT_NO_THROW(get_running_loop().call_soon([] {}));
        EXPECT_THROW(old->get_loop(), RuntimeError);
        co_return;
    };
    asyncio::run(first(old));
    asyncio::run(second(old));
}

TEST(Run, DebugOptionReachesTheLoop) {
    auto main = [](bool expected) -> Coro<> {
        EXPECT_EQ(get_running_loop().get_debug(), expected);
        co_return;
    };
    asyncio::run(main(false));
    asyncio::run(main(true), RunOptions{.debug = true});
    asyncio::run(main(false), RunOptions{.debug = false});
}

TEST(Run, FromARunningLoopThrowsRuntimeError) {
    auto inner = []() -> Coro<int> { co_return 1; };
    auto main = [&inner]() -> Coro<std::string> {
        try {
            asyncio::run(inner());
        } catch (const RuntimeError& e) {
            co_return e.what();
        }
        co_return "no exception";
    };
    std::string msg = asyncio::run(main());
    EXPECT_NE(msg.find("cannot be called from a running event loop"), std::string::npos) << msg;
}

TEST(Run, FromARunningLoopDoesNotDisturbTheOuterRun) {
    auto inner = []() -> Coro<int> { co_return 1; };
    auto main = [&inner]() -> Coro<int> {
        EXPECT_THROW(asyncio::run(inner()), RuntimeError);
        // The outer loop is still running and usable.
        EXPECT_TRUE(get_running_loop().is_running());
        co_return co_await answer();
    };
    EXPECT_EQ(asyncio::run(main()), 42);
}

TEST(Run, CancelsHangingTasks) {
    Task<> lo_task;
    auto main = [](Task<>& lo_task) -> Coro<int> {
        lo_task = create_task([]() -> Coro<> { co_await asyncio::sleep(0.1); }());
        co_return 123;
    };
    EXPECT_EQ(asyncio::run(main(lo_task)), 123);
    EXPECT_TRUE(lo_task.done());
    EXPECT_TRUE(lo_task.cancelled());
}

TEST(Run, HangingTaskSeesCancelledErrorBeforeRunReturns) {
    std::vector<std::string> log;
    auto leftover = [](std::vector<std::string>& log) -> Coro<> {
        try {
            co_await asyncio::sleep(100);
            log.push_back("woke up");
        } catch (const CancelledError&) {
            log.push_back("cancelled");
            throw;
        }
    };
    auto main = [&]() -> Coro<> {
        create_task(leftover(log));
        co_await asyncio::sleep(0);  // let it start
        log.push_back("main done");
    };
    asyncio::run(main());
    EXPECT_EQ(log, (std::vector<std::string>{"main done", "cancelled"}));
}

TEST(Run, ATaskCreatedInMainsLastStepStillGetsItsFirstStep) {
    // As in Python: the task's first step was queued before the stop callback of main's
    // completion, so it runs before run() starts the shutdown; a task that finishes in that
    // step is not cancelled.
    bool body_ran = false;
    Task<> lo_task;
    auto main = [](bool& body_ran, Task<>& lo_task) -> Coro<> {
        lo_task = create_task([](bool& body_ran) -> Coro<> {
            body_ran = true;
            co_return;
        }(body_ran));
        co_return;
    };
    asyncio::run(main(body_ran, lo_task));
    EXPECT_TRUE(body_ran);
    EXPECT_TRUE(lo_task.done());
    EXPECT_FALSE(lo_task.cancelled());
}

TEST(Run, HangingTaskCleanupIsAwaited) {
    // A leftover may await during its cancellation handling: run waits for it to finish.
    bool cleaned_up = false;
    double cleanup_time = -1;
    auto leftover = [](bool& cleaned_up, double& cleanup_time) -> Coro<> {
        try {
            co_await asyncio::sleep(100);
        } catch (const CancelledError&) {
        }
        co_await asyncio::sleep(5);  // cleanup that takes time
        cleanup_time = get_running_loop().time();
        cleaned_up = true;
    };
    auto main = [&]() -> Coro<> {
        create_task(leftover(cleaned_up, cleanup_time));
        co_await asyncio::sleep(1);
    };
    run_virtual(main());
    EXPECT_TRUE(cleaned_up);
    EXPECT_DOUBLE_EQ(cleanup_time, 6.0);
}

TEST(Run, HangingTaskThatSwallowsCancellationFinishesNormallyAndIsNotReported) {
    HandlerCapture handler;
    Task<int> lo_task;
    auto main = [&]() -> Coro<> {
        handler.install(get_running_loop());
        lo_task = create_task([]() -> Coro<int> {
            try {
                co_await asyncio::sleep(100);
            } catch (const CancelledError&) {
            }
            co_return 5;
        }());
        co_await asyncio::sleep(0);
    };
    asyncio::run(main());
    EXPECT_TRUE(lo_task.done());
    EXPECT_FALSE(lo_task.cancelled());
    EXPECT_EQ(lo_task.result(), 5);
    EXPECT_TRUE(handler.contexts.empty());
}

TEST(Run, ReportsHangingTaskErrorsThroughTheExceptionHandler) {
    HandlerCapture handler;
    Task<> lo_task;
    auto main = [&]() -> Coro<int> {
        handler.install(get_running_loop());
        lo_task = create_task(
            []() -> Coro<> {
                try {
                    co_await asyncio::sleep(0.1);
                } catch (const CancelledError&) {
                    throw std::domain_error("1 / 0");
                }
            }(),
            "leftover");
        co_await asyncio::sleep(0);
        co_return 123;
    };
    EXPECT_EQ(asyncio::run(main()), 123);
    EXPECT_TRUE(lo_task.done());
    ASSERT_EQ(handler.contexts.size(), 1u);
    const ExceptionContext& ctx = handler.contexts[0];
    EXPECT_NE(ctx.message.find("unhandled exception during asyncio.run() shutdown"), std::string::npos) << ctx.message;
    ASSERT_TRUE(ctx.exception);
    EXPECT_THROW(std::rethrow_exception(ctx.exception), std::domain_error);
    EXPECT_NE(ctx.future.find("leftover"), std::string::npos) << ctx.future;
}

TEST(Run, ReportsEveryFailingHangingTask) {
    HandlerCapture handler;
    auto failing = []() -> Coro<> {
        try {
            co_await asyncio::sleep(10);
        } catch (const CancelledError&) {
            throw std::runtime_error("cleanup failed");
        }
    };
    auto main = [&]() -> Coro<> {
        handler.install(get_running_loop());
        create_task(failing());
        create_task(failing());
        create_task(failing());
        co_await asyncio::sleep(0);
    };
    asyncio::run(main());
    ASSERT_EQ(handler.contexts.size(), 3u);
    for (auto& c : handler.contexts) EXPECT_NE(c.message.find("asyncio.run() shutdown"), std::string::npos);
}

TEST(Run, ShutdownErrorsWithoutAHandlerAreLogged) {
    LogCapture log;
    auto main = []() -> Coro<> {
        create_task([]() -> Coro<> {
            try {
                co_await asyncio::sleep(10);
            } catch (const CancelledError&) {
                throw std::runtime_error("cleanup failed");
            }
        }());
        co_await asyncio::sleep(0);
    };
    asyncio::run(main());
    EXPECT_TRUE(log.contains("unhandled exception during asyncio.run() shutdown")) << log.joined();
    EXPECT_TRUE(log.contains("cleanup failed")) << log.joined();
}

TEST(Run, MainExceptionWinsOverHangingTaskErrors) {
    HandlerCapture handler;
    Task<> lazyboy;
    auto main = [&]() -> Coro<> {
        handler.install(get_running_loop());
        lazyboy = create_task([]() -> Coro<> {
            try {
                for (;;) co_await asyncio::sleep(1);
            } catch (const CancelledError&) {
                throw std::domain_error("1 / 0");
            }
        }());
        co_await asyncio::sleep(0);
        throw FancyExit();
    };
    EXPECT_THROW(asyncio::run(main()), FancyExit);
    EXPECT_TRUE(lazyboy.done());
    EXPECT_TRUE(handler.contains("asyncio.run() shutdown"));
}

TEST(Run, MainThatCancelsItselfThrowsCancelledError) {
    auto main = []() -> Coro<> {
        current_task().cancel("self");
        co_await asyncio::sleep(0);
    };
    try {
        asyncio::run(main());
        FAIL() << "expected CancelledError";
    } catch (const CancelledError& e) {
        EXPECT_EQ(e.message(), "self");
    }
}

TEST(Run, MainCancelledByAnotherTaskThrowsCancelledErrorNotKeyboardInterrupt) {
    auto main = []() -> Coro<> {
        AnyTask self = current_task();
        create_task([](AnyTask self) -> Coro<> {
            co_await asyncio::sleep(0);
            self.cancel();
        }(self));
        co_await asyncio::sleep(10);
    };
    EXPECT_THROW(run_virtual(main()), CancelledError);
}

TEST(Run, WorksOnVirtualClock) {
    auto main = []() -> Coro<double> {
        double t0 = get_running_loop().time();
        co_await asyncio::sleep(3600);
        co_return get_running_loop().time() - t0;
    };
    EXPECT_DOUBLE_EQ(run_virtual(main()), 3600.0);
}

TEST(Run, CanBeCalledManyTimesInARow) {
    for (int i = 0; i < 20; ++i) EXPECT_EQ(asyncio::run(answer()), 42);
}

// ============================================================================================
// Runner
// ============================================================================================

TEST(Runner, NonDebugByDefault) {
    asyncio::Runner runner;
    EXPECT_FALSE(runner.get_loop().get_debug());
}

TEST(Runner, DebugOptionReachesTheLoop) {
    asyncio::Runner runner(RunOptions{.debug = true});
    EXPECT_TRUE(runner.get_loop().get_debug());
    auto main = []() -> Coro<bool> { co_return get_running_loop().get_debug(); };
    EXPECT_TRUE(runner.run(main()));
}

TEST(Runner, RunReturnsTheValue) {
    asyncio::Runner runner;
    auto f = []() -> Coro<std::string> {
        co_await asyncio::sleep(0);
        co_return "done";
    };
    EXPECT_EQ(runner.run(f()), "done");
}

TEST(Runner, RunRethrows) {
    asyncio::Runner runner;
    EXPECT_THROW(runner.run(raise_spam()), std::invalid_argument);
}

TEST(Runner, GetLoopCreatesTheLoopLazilyAndDoesNotRunIt) {
    asyncio::Runner runner;
    EventLoop& loop = runner.get_loop();
    EXPECT_FALSE(loop.is_running());
    EXPECT_FALSE(loop.is_closed());
    EXPECT_EQ(&runner.get_loop(), &loop);
}

TEST(Runner, RunUsesTheLoopOfGetLoop) {
    asyncio::Runner runner;
    EventLoop* loop = &runner.get_loop();
    auto f = []() -> Coro<EventLoop*> { co_return &get_running_loop(); };
    EXPECT_EQ(runner.run(f()), loop);
    EXPECT_EQ(runner.run(f()), loop);
}

TEST(Runner, RunsSeveralCoroutinesOnOneLoop) {
    asyncio::Runner runner;
    std::vector<int> seen;
    auto f = [](std::vector<int>& seen, int i) -> Coro<int> {
        co_await asyncio::sleep(0);
        seen.push_back(i);
        co_return i * 10;
    };
    EXPECT_EQ(runner.run(f(seen, 1)), 10);
    EXPECT_EQ(runner.run(f(seen, 2)), 20);
    EXPECT_EQ(runner.run(f(seen, 3)), 30);
    EXPECT_EQ(seen, (std::vector<int>{1, 2, 3}));
}

TEST(Runner, LoopIsNotClosedBetweenRuns) {
    asyncio::Runner runner;
    (void)runner.run(answer());
    EXPECT_FALSE(runner.get_loop().is_closed());
    EXPECT_FALSE(runner.get_loop().is_running());
}

TEST(Runner, BackgroundTasksSurviveBetweenRuns) {
    // run() only waits for its own coroutine; other tasks keep going in the next run().
    asyncio::Runner runner(RunOptions{.virtual_clock = true});
    int ticks = 0;
    Task<> background;
    auto start = [](int& ticks, Task<>& background) -> Coro<> {
        background = create_task([](int& ticks) -> Coro<> {
            for (int i = 0; i < 3; ++i) {
                co_await asyncio::sleep(1);
                ++ticks;
            }
        }(ticks));
        co_return;
    };
    auto wait_a_bit = [](double d) -> Coro<> { co_await asyncio::sleep(d); };
    runner.run(start(ticks, background));
    EXPECT_EQ(ticks, 0);
    EXPECT_FALSE(background.done());
    runner.run(wait_a_bit(1.5));
    EXPECT_EQ(ticks, 1);
    runner.run(wait_a_bit(10));
    EXPECT_EQ(ticks, 3);
    EXPECT_TRUE(background.done());
    EXPECT_FALSE(background.cancelled());
}

// ---- the runner's context (CPython: test_run_keeps_context) --------------------------------
namespace {
ContextVar<int> runner_var("runner_var", -1);

/// Reads runner_var, then sets it to `value`; returns what it read.
Coro<int> read_then_set(int value) {
    co_await asyncio::sleep(0);
    int seen = runner_var.get();
    runner_var.set(value);
    co_return seen;
}
}  // namespace

TEST(RunnerContext, OneRunnerKeepsItsContextAcrossRuns) {
    asyncio::Runner runner;
    EXPECT_EQ(runner.run(read_then_set(1)), -1);
    EXPECT_EQ(runner.run(read_then_set(2)), 1);
    EXPECT_EQ(runner.run(read_then_set(3)), 2);
    EXPECT_EQ(runner_var.get(), -1);  // the caller's context is not the runner's
}

TEST(RunnerContext, RunStartsEachCallFromAFreshCopyOfTheCurrentContext) {
    EXPECT_EQ(asyncio::run(read_then_set(1)), -1);
    EXPECT_EQ(asyncio::run(read_then_set(2)), -1);
    EXPECT_EQ(runner_var.get(), -1);
}

TEST(RunnerContext, TheRunnersContextIsACopyOfTheOneCurrentWhenItsLoopWasMade) {
    auto outer = runner_var.set(7);
    asyncio::Runner runner;
    (void)runner.get_loop();
    auto later = runner_var.set(8);  // after the copy: not seen by the runner
    EXPECT_EQ(runner.run(read_then_set(9)), 7);
    EXPECT_EQ(runner.run(read_then_set(10)), 9);
    EXPECT_EQ(runner_var.get(), 8);
    runner_var.reset(later);
    runner_var.reset(outer);
}

TEST(RunnerContext, TasksOfARunCopyTheRunnersContext) {
    asyncio::Runner runner;
    (void)runner.run(read_then_set(5));
    auto child_reads = []() -> Coro<int> { co_return co_await create_task(read_then_set(6)); };
    EXPECT_EQ(runner.run(child_reads()), 5);
    EXPECT_EQ(runner.run(read_then_set(0)), 5);  // the child's set stayed in the child's copy
}

TEST(RunnerContext, RunInAGivenContextRecordsWhatTheCoroutineSetsThere) {
    asyncio::Runner runner;
    Context ctx;
    EXPECT_EQ(runner.run(read_then_set(5), ctx), -1);
    EXPECT_EQ(runner.run(read_then_set(6), ctx), 5);
    EXPECT_EQ(ctx.run([] { return runner_var.get(); }), 6);
    EXPECT_EQ(runner.run(read_then_set(1)), -1);  // the runner's own context is untouched
}

TEST(RunnerContext, ARunThatThrowsStillKeepsWhatItSet) {
    asyncio::Runner runner;
    auto set_then_throw = []() -> Coro<> {
        runner_var.set(4);
        co_await asyncio::sleep(0);
        throw std::invalid_argument("spam");
    };
    EXPECT_THROW(runner.run(set_then_throw()), std::invalid_argument);
    EXPECT_EQ(runner.run(read_then_set(0)), 4);
}

TEST(Runner, StillUsableAfterARunThrew) {
    asyncio::Runner runner;
    EXPECT_THROW(runner.run(raise_spam()), std::invalid_argument);
    EXPECT_EQ(runner.run(answer()), 42);
}

TEST(Runner, CloseClosesTheLoop) {
    asyncio::Runner runner;
    Future<int> fut(runner.get_loop());
    runner.close();
    try {
        (void)fut.get_loop();
        FAIL() << "expected RuntimeError";
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "Event loop is closed");
    }
}

TEST(Runner, GetLoopAfterCloseThrows) {
    asyncio::Runner runner;
    (void)runner.get_loop();
    runner.close();
    try {
        (void)runner.get_loop();
        FAIL() << "expected RuntimeError";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("Runner is closed"), std::string::npos) << e.what();
    }
}

TEST(Runner, RunAfterCloseThrowsAndDoesNotRunTheCoroutine) {
    asyncio::Runner runner;
    std::vector<int> ret;
    auto f = [](std::vector<int>& ret, int arg) -> Coro<> {
        ret.push_back(arg);
        co_return;
    };
    runner.run(f(ret, 1));
    runner.close();
    try {
        runner.run(f(ret, 2));
        FAIL() << "expected RuntimeError";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("Runner is closed"), std::string::npos) << e.what();
    }
    EXPECT_EQ(ret, std::vector<int>{1});
}

TEST(Runner, CloseIsIdempotent) {
    asyncio::Runner runner;
    Future<> fut(runner.get_loop());
    runner.close();
    EXPECT_NO_THROW(runner.close());
    EXPECT_NO_THROW(runner.close());
    EXPECT_THROW(fut.get_loop(), RuntimeError);
    EXPECT_THROW(runner.get_loop(), RuntimeError);
}

TEST(Runner, CloseOfAnUnusedRunnerIsANoOp) {
    // Python: close() only acts on an initialized runner; an unused one stays usable.
    asyncio::Runner runner;
    runner.close();
    EXPECT_EQ(runner.run(answer()), 42);
}

TEST(Runner, DestructorClosesTheLoop) {
    std::optional<Future<>> fut;
    {
        asyncio::Runner runner;
        fut = runner.get_loop().create_future<void>();
        EXPECT_NO_THROW(fut->get_loop());
    }
    EXPECT_THROW(fut->get_loop(), RuntimeError);
}

TEST(Runner, CloseCancelsAndAwaitsPendingTasks) {
    asyncio::Runner runner;
    std::vector<std::string> log;
    Task<> background;
    auto start = [](std::vector<std::string>& log, Task<>& background) -> Coro<> {
        background = create_task([](std::vector<std::string>& log) -> Coro<> {
            try {
                co_await asyncio::sleep(100);
            } catch (const CancelledError&) {
                log.push_back("cancelled");
                throw;
            }
        }(log));
        co_await asyncio::sleep(0);
    };
    runner.run(start(log, background));
    EXPECT_TRUE(log.empty());
    EXPECT_FALSE(background.done());
    runner.close();
    EXPECT_EQ(log, std::vector<std::string>{"cancelled"});
    EXPECT_TRUE(background.cancelled());
}

TEST(Runner, CloseReportsTasksFailingDuringShutdown) {
    HandlerCapture handler;
    asyncio::Runner runner;
    handler.install(runner.get_loop());
    auto start = []() -> Coro<> {
        create_task([]() -> Coro<> {
            try {
                co_await asyncio::sleep(100);
            } catch (const CancelledError&) {
                throw std::runtime_error("cleanup failed");
            }
        }());
        co_await asyncio::sleep(0);
    };
    runner.run(start());
    EXPECT_TRUE(handler.contexts.empty());
    runner.close();
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_NE(handler.contexts[0].message.find("shutdown"), std::string::npos);
}

TEST(Runner, RecursiveRunThrowsRuntimeError) {
    asyncio::Runner runner;
    auto g = []() -> Coro<> { co_return; };
    auto f = [&]() -> Coro<std::string> {
        try {
            runner.run(g());
        } catch (const RuntimeError& e) {
            co_return e.what();
        }
        co_return "no exception";
    };
    std::string msg = runner.run(f());
    EXPECT_NE(msg.find("Runner.run() cannot be called from a running event loop"), std::string::npos) << msg;
}

TEST(Runner, RecursiveRunReportsTheRejectedCoroutineAsNeverAwaitedInDebugMode) {
    HandlerCapture handler;
    asyncio::Runner runner(RunOptions{.debug = true});
    handler.install(runner.get_loop());
    auto g = []() -> Coro<> { co_return; };
    auto f = [&]() -> Coro<> {
        EXPECT_THROW(runner.run(g()), RuntimeError);
        co_return;
    };
    runner.run(f());
    EXPECT_TRUE(handler.contains("never awaited"));
}

TEST(Runner, RunFromAnotherRunnersLoopThrows) {
    asyncio::Runner outer;
    asyncio::Runner inner;
    auto f = [&]() -> Coro<> {
        EXPECT_THROW(inner.run(answer()), RuntimeError);
        co_return;
    };
    outer.run(f());
    // The inner runner was not spoiled by the refused call.
    EXPECT_EQ(inner.run(answer()), 42);
}

TEST(Runner, RunWithEagerTaskFactoryOnTheLoop) {
    asyncio::Runner runner;
    runner.get_loop().set_task_factory(eager_task_factory);
    auto f = []() -> Coro<bool> {
        auto t = create_task([]() -> Coro<int> { co_return 1; }());
        co_return t.done();
    };
    EXPECT_TRUE(runner.run(f()));
}

// ============================================================================================
// Ctrl-C (SIGINT) handling
// ============================================================================================

TEST(RunnerSigint, KeyboardInterruptIsNotAStdException) {
    // Like Python's KeyboardInterrupt (a BaseException): `catch (const std::exception&)` in
    // user code does not swallow it.
    EXPECT_FALSE((std::is_base_of_v<std::exception, KeyboardInterrupt>));
}

TEST(RunnerSigint, SigintCancelsTheMainTaskAndRunThrowsKeyboardInterrupt) {
    RestoreSigint restore;
    bool saw_cancelled = false;
    double cancelled_at = -1;
    auto main = [](bool& saw_cancelled, double& cancelled_at) -> Coro<> {
        try {
            co_await asyncio::sleep(3600);
        } catch (const CancelledError&) {
            saw_cancelled = true;
            cancelled_at = get_running_loop().time();
            throw;
        }
    };
    asyncio::Runner runner(RunOptions{.virtual_clock = true});
    double t0 = runner.get_loop().time();
    runner.get_loop().call_later(0.1, [] { ::raise(SIGINT); });
    EXPECT_THROW(runner.run(main(saw_cancelled, cancelled_at)), KeyboardInterrupt);
    EXPECT_TRUE(saw_cancelled);
    EXPECT_DOUBLE_EQ(cancelled_at - t0, 0.1);
}

TEST(RunnerSigint, SigintFromAnotherThreadInterruptsALongSleep) {
    RestoreSigint restore;
    std::thread killer;
    bool saw_cancelled = false;
    auto main = [](std::thread& killer, bool& saw_cancelled) -> Coro<> {
        // Started from inside run(): the Ctrl-C handler is installed by now.
        killer = std::thread([] { ::kill(::getpid(), SIGINT); });
        try {
            co_await asyncio::sleep(3600);  // real clock: only the signal ends this
        } catch (const CancelledError&) {
            saw_cancelled = true;
            throw;
        }
    };
    asyncio::Runner runner;
    EXPECT_THROW(runner.run(main(killer, saw_cancelled)), KeyboardInterrupt);
    killer.join();
    EXPECT_TRUE(saw_cancelled);
}

TEST(RunnerSigint, AsyncioRunAlsoTurnsSigintIntoKeyboardInterrupt) {
    RestoreSigint restore;
    auto main = []() -> Coro<> {
        get_running_loop().call_later(0.5, [] { ::raise(SIGINT); });
        co_await asyncio::sleep(3600);
    };
    EXPECT_THROW(run_virtual(main()), KeyboardInterrupt);
}

TEST(RunnerSigint, InterruptsATaskBusyYieldingWithSleepZero) {
    // The only case where the task is not suspended on a future: the cancellation is
    // delivered at its next yield.
    RestoreSigint restore;
    bool saw_cancelled = false;
    auto main = [](bool& saw_cancelled) -> Coro<> {
        int n = 0;
        try {
            for (;; ++n) {
                if (n == 10) ::raise(SIGINT);
                co_await asyncio::sleep(0);
            }
        } catch (const CancelledError&) {
            saw_cancelled = true;
        }
        EXPECT_GE(n, 10);
        throw CancelledError();
    };
    asyncio::Runner runner;
    EXPECT_THROW(runner.run(main(saw_cancelled)), KeyboardInterrupt);
    EXPECT_TRUE(saw_cancelled);
}

TEST(RunnerSigint, InterruptWhileAwaitingAFutureCancelsTheFutureAndTheTask) {
    RestoreSigint restore;
    asyncio::Runner runner(RunOptions{.virtual_clock = true});
    Future<int> fut = runner.get_loop().create_future<int>();
    bool saw_cancelled = false;
    auto main = [](Future<int> fut, bool& saw_cancelled) -> Coro<> {
        try {
            co_await fut;
        } catch (const CancelledError&) {
            saw_cancelled = true;
        }
        throw CancelledError();
    };
    runner.get_loop().call_later(0.1, [] { ::raise(SIGINT); });
    EXPECT_THROW(runner.run(main(fut, saw_cancelled)), KeyboardInterrupt);
    EXPECT_TRUE(saw_cancelled);
    EXPECT_TRUE(fut.cancelled());
}

TEST(RunnerSigint, MainTaskThatSwallowsTheInterruptReturnsNormally) {
    RestoreSigint restore;
    auto main = []() -> Coro<int> {
        get_running_loop().call_later(0.1, [] { ::raise(SIGINT); });
        try {
            co_await asyncio::sleep(3600);
        } catch (const CancelledError&) {
            co_return -1;
        }
        co_return 0;
    };
    asyncio::Runner runner(RunOptions{.virtual_clock = true});
    EXPECT_EQ(runner.run(main()), -1);
}

TEST(RunnerSigint, InterruptingAnAlreadyCancelledMainTaskRaisesCancelledError) {
    // Python's test_interrupt_cancelled_task: the main task is cancelled by another task and
    // then Ctrl-C arrives; run() raises CancelledError, not KeyboardInterrupt.
    RestoreSigint restore;
    auto main = []() -> Coro<> {
        AnyTask self = current_task();
        create_task([](AnyTask self) -> Coro<> {
            co_await asyncio::sleep(0);
            self.cancel();
            ::raise(SIGINT);
        }(self));
        co_await asyncio::sleep(10);
    };
    asyncio::Runner runner(RunOptions{.virtual_clock = true});
    bool got_cancelled = false;
    try {
        runner.run(main());
    } catch (const CancelledError&) {
        got_cancelled = true;
    } catch (const KeyboardInterrupt&) {
        got_cancelled = false;
    }
    EXPECT_TRUE(got_cancelled) << "expected CancelledError, got KeyboardInterrupt";
}

TEST(RunnerSigint, RunnerIsUsableAfterAKeyboardInterrupt) {
    RestoreSigint restore;
    asyncio::Runner runner(RunOptions{.virtual_clock = true});
    auto long_sleep = []() -> Coro<> {
        get_running_loop().call_later(0.1, [] { ::raise(SIGINT); });
        co_await asyncio::sleep(3600);
    };
    EXPECT_THROW(runner.run(long_sleep()), KeyboardInterrupt);
    EXPECT_EQ(runner.run(answer()), 42);
    // A later interrupt is again turned into KeyboardInterrupt (the count restarts per run).
    EXPECT_THROW(runner.run(long_sleep()), KeyboardInterrupt);
}

TEST(RunnerSigint, HandlerIsInstalledOnlyWhileRunning) {
    RestoreSigint restore;
    ASSERT_TRUE(sigint_is_default());
    asyncio::Runner runner;
    (void)runner.get_loop();
    EXPECT_TRUE(sigint_is_default());
    auto main = []() -> Coro<bool> { co_return sigint_is_default(); };
    EXPECT_FALSE(runner.run(main()));
    EXPECT_TRUE(sigint_is_default());
    EXPECT_THROW(runner.run(raise_spam()), std::invalid_argument);
    EXPECT_TRUE(sigint_is_default());
}

TEST(RunnerSigint, HandlerIsRemovedAfterAKeyboardInterrupt) {
    RestoreSigint restore;
    auto main = []() -> Coro<> {
        get_running_loop().call_later(0.1, [] { ::raise(SIGINT); });
        co_await asyncio::sleep(3600);
    };
    EXPECT_THROW(run_virtual(main()), KeyboardInterrupt);
    EXPECT_TRUE(sigint_is_default());
}

TEST(RunnerSigint, AUserSigintDispositionIsLeftAlone) {
    // Python installs its handler only when SIGINT has the default disposition.
    RestoreSigint restore;
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    ASSERT_EQ(::sigaction(SIGINT, &ign, nullptr), 0);
    auto main = []() -> Coro<int> {
        EXPECT_EQ(sigint_action().sa_handler, SIG_IGN);
        ::raise(SIGINT);  // ignored: nothing is cancelled
        co_await asyncio::sleep(1);
        co_return 7;
    };
    EXPECT_EQ(run_virtual(main()), 7);
    EXPECT_EQ(sigint_action().sa_handler, SIG_IGN);
}

TEST(RunnerSigint, RunInAThreadOtherThanMainInstallsNoHandler) {
    RestoreSigint restore;
    ASSERT_TRUE(sigint_is_default());
    bool default_during_run = false;
    int result = 0;
    bool failed = false;
    std::thread th([&] {
        auto main = [](bool& default_during_run) -> Coro<int> {
            default_during_run = sigint_is_default();
            co_await asyncio::sleep(0);
            co_return 5;
        };
        try {
            result = asyncio::run(main(default_during_run));
        } catch (...) {
            failed = true;
        }
    });
    th.join();
    EXPECT_FALSE(failed);
    EXPECT_EQ(result, 5);
    EXPECT_TRUE(default_during_run);
    EXPECT_TRUE(sigint_is_default());
}

TEST(RunnerSigint, RunnerInAThreadOtherThanMainWorksAndInstallsNoHandler) {
    RestoreSigint restore;
    std::vector<bool> defaults;
    std::thread th([&] {
        asyncio::Runner runner;
        auto main = [](std::vector<bool>& defaults) -> Coro<> {
            defaults.push_back(sigint_is_default());
            co_return;
        };
        runner.run(main(defaults));
        runner.run(main(defaults));
    });
    th.join();
    EXPECT_EQ(defaults, (std::vector<bool>{true, true}));
}

TEST(RunnerSigintDeathTest, SecondSigintTerminatesTheProcess) {
    // The first Ctrl-C cancels the main task; a second one (the loop may be stuck) ends the
    // process for good. Python raises KeyboardInterrupt at once; we die from SIGINT.
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(
        {
            asyncio::Runner runner(RunOptions{.virtual_clock = true});
            runner.get_loop().call_later(0.1, [] {
                ::raise(SIGINT);
                ::raise(SIGINT);
            });
            try {
                runner.run([]() -> Coro<> { co_await asyncio::sleep(3600); }());
            } catch (...) {
            }
            std::_Exit(0);
        },
        ::testing::KilledBySignal(SIGINT), "");
}
