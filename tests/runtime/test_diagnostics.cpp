// tests/runtime/test_diagnostics.cpp - the "Diagnostics for the classic asyncio mistakes" table of
// shared/API.md and the misuse list that goes with it: each classic Python asyncio mistake
// either gives the documented diagnostic or cannot happen.
//
//   coroutine was never awaited      -> reported in debug mode (exception handler / log)
//   asyncio.run() from a running loop -> RuntimeError with the message and the fix
//   Task was destroyed but pending    -> cannot happen: the loop owns pending tasks
//   Event loop is closed              -> RuntimeError("Event loop is closed"), never a crash
//   global Lock across asyncio::run   -> (locks come later; not tested here)
// plus: awaiting a task from itself, result() before done, a Coro awaited twice,
// CancelledError vs catch (const std::exception&), "Task exception was never retrieved".
#include "support.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

using namespace asyncio;
using asyncio_test::HandlerCapture;
using asyncio_test::LogCapture;
using asyncio_test::run_virtual;
using ::testing::HasSubstr;

namespace {

Coro<int> answer() {
    co_await asyncio::sleep(0);
    co_return 42;
}

Coro<> nothing() { co_return; }

/// Sets a flag when destroyed: shows that a coroutine frame was destroyed (its locals ran
/// their destructors).
struct DestroyFlag {
    bool* flag;
    explicit DestroyFlag(bool* f) : flag(f) {}
    DestroyFlag(const DestroyFlag&) = delete;
    ~DestroyFlag() { *flag = true; }
};

/// The message of the RuntimeError `fn` throws ("" and a test failure when it throws none).
template <class F>
std::string runtime_error_message(F&& fn) {
    try {
        fn();
    } catch (const RuntimeError& e) {
        return e.what();
    } catch (...) {
        ADD_FAILURE() << "expected asyncio::RuntimeError, got another exception";
        return "";
    }
    ADD_FAILURE() << "expected asyncio::RuntimeError, nothing was thrown";
    return "";
}

constexpr const char* kClosed = "Event loop is closed";

/// A closed loop and a pending Future / Task handle that outlived it.
struct ClosedLoopHandles {
    std::optional<Future<int>> fut;
    Task<int> task;
    Task<int> done_task;
    ClosedLoopHandles() {
        auto main = [](ClosedLoopHandles& h) -> Coro<> {
            h.fut = Future<int>();
            h.task = create_task([]() -> Coro<int> {
                co_await asyncio::sleep(3600);
                co_return 1;
            }());
            h.done_task = create_task([]() -> Coro<int> { co_return 7; }());
            co_await asyncio::sleep(0);
        };
        // Closing via EventLoop::close (not run's shutdown) leaves `task` pending.
        EventLoop loop({.virtual_clock = true});
        loop.run_until_complete(main(*this));
        loop.close();
    }
};

}  // namespace

// ============================================================================================
// "coroutine 'foo' was never awaited"
// ============================================================================================

TEST(NeverAwaited, UnstartedCoroDestroyedIsReportedInDebugMode) {
    HandlerCapture handler;
    auto main = [&]() -> Coro<> {
        handler.install(get_running_loop());
        { auto c = answer(); }  // forgot to co_await it
        co_return;
    };
    asyncio::run(main(), RunOptions{.debug = true});
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_THAT(handler.contexts[0].message, HasSubstr("never awaited"));
}

TEST(NeverAwaited, NotReportedWithoutDebugMode) {
    HandlerCapture handler;
    LogCapture log;
    auto main = [&]() -> Coro<> {
        handler.install(get_running_loop());
        { auto c = answer(); }
        co_return;
    };
    asyncio::run(main());
    EXPECT_TRUE(handler.contexts.empty());
    EXPECT_FALSE(log.contains("never awaited")) << log.joined();
}

TEST(NeverAwaited, DebugModeSetOnTheLoopLaterAlsoReports) {
    HandlerCapture handler;
    auto main = [&]() -> Coro<> {
        handler.install(get_running_loop());
        get_running_loop().set_debug(true);
        { auto c = nothing(); }
        co_return;
    };
    asyncio::run(main());
    EXPECT_TRUE(handler.contains("never awaited"));
}

TEST(NeverAwaited, WithoutAHandlerTheDefaultHandlerLogsIt) {
    LogCapture log;
    auto main = []() -> Coro<> {
        { auto c = answer(); }
        co_return;
    };
    asyncio::run(main(), RunOptions{.debug = true});
    EXPECT_TRUE(log.contains("never awaited")) << log.joined();
}

TEST(NeverAwaited, EachForgottenCoroIsReportedOnce) {
    HandlerCapture handler;
    auto main = [&]() -> Coro<> {
        handler.install(get_running_loop());
        for (int i = 0; i < 3; ++i) {
            auto c = answer();
        }
        co_return;
    };
    asyncio::run(main(), RunOptions{.debug = true});
    EXPECT_EQ(handler.contexts.size(), 3u);
}

TEST(NeverAwaited, ForgottenCoroInACallbackIsReported) {
    HandlerCapture handler;
    auto main = [&]() -> Coro<> {
        handler.install(get_running_loop());
        get_running_loop().call_soon([] { auto c = nothing(); });
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
    };
    asyncio::run(main(), RunOptions{.debug = true});
    EXPECT_TRUE(handler.contains("never awaited"));
}

TEST(NeverAwaited, AwaitedCoroIsNotReported) {
    HandlerCapture handler;
    auto main = [&]() -> Coro<int> {
        handler.install(get_running_loop());
        auto c = answer();
        co_return co_await c;
    };
    EXPECT_EQ(asyncio::run(main(), RunOptions{.debug = true}), 42);
    EXPECT_TRUE(handler.contexts.empty());
}

TEST(NeverAwaited, CoroTurnedIntoATaskIsNotReported) {
    HandlerCapture handler;
    auto main = [&]() -> Coro<int> {
        handler.install(get_running_loop());
        auto t = create_task(answer());
        co_return co_await t;
    };
    EXPECT_EQ(asyncio::run(main(), RunOptions{.debug = true}), 42);
    EXPECT_TRUE(handler.contexts.empty());
}

TEST(NeverAwaited, MovedFromCoroIsNotReported) {
    HandlerCapture handler;
    auto main = [&]() -> Coro<int> {
        handler.install(get_running_loop());
        auto c = answer();
        auto d = std::move(c);
        co_return co_await d;  // c (empty) is destroyed at the end of the frame
    };
    EXPECT_EQ(asyncio::run(main(), RunOptions{.debug = true}), 42);
    EXPECT_TRUE(handler.contexts.empty());
}

TEST(NeverAwaited, ForgottenCoroArgumentOfARefusedNestedRunIsReported) {
    // Python's test_recursive_run: the refused coroutine also warns "never awaited".
    HandlerCapture handler;
    asyncio::Runner runner(RunOptions{.debug = true});
    handler.install(runner.get_loop());
    auto main = [&]() -> Coro<> {
        EXPECT_THROW(asyncio::run(nothing()), RuntimeError);
        co_return;
    };
    runner.run(main());
    EXPECT_TRUE(handler.contains("never awaited"));
}

// ============================================================================================
// "This event loop is already running" / "asyncio.run() cannot be called from a running
// event loop"
// ============================================================================================

TEST(AlreadyRunning, NestedAsyncioRunThrowsWithTheMessageAndTheFix) {
    auto main = []() -> Coro<std::string> { co_return runtime_error_message([] { asyncio::run(answer()); }); };
    std::string msg = asyncio::run(main());
    EXPECT_THAT(msg, HasSubstr("asyncio.run() cannot be called from a running event loop"));
    EXPECT_THAT(msg, HasSubstr("co_await"));  // the fix
}

TEST(AlreadyRunning, NestedRunnerRunThrowsWithTheMessageAndTheFix) {
    asyncio::Runner runner;
    auto main = [&]() -> Coro<std::string> { co_return runtime_error_message([&] { runner.run(answer()); }); };
    std::string msg = runner.run(main());
    EXPECT_THAT(msg, HasSubstr("cannot be called from a running event loop"));
    EXPECT_THAT(msg, HasSubstr("co_await"));
}

TEST(AlreadyRunning, RunUntilCompleteOnTheRunningLoopThrows) {
    auto main = []() -> Coro<std::string> {
        EventLoop& loop = get_running_loop();
        co_return runtime_error_message([&] { loop.run_until_complete(answer()); });
    };
    std::string msg = asyncio::run(main());
    EXPECT_THAT(msg, HasSubstr("This event loop is already running"));
    EXPECT_THAT(msg, HasSubstr("co_await"));
}

TEST(AlreadyRunning, RunForeverOnTheRunningLoopThrows) {
    auto main = []() -> Coro<std::string> {
        EventLoop& loop = get_running_loop();
        co_return runtime_error_message([&] { loop.run_forever(); });
    };
    EXPECT_THAT(asyncio::run(main()), HasSubstr("This event loop is already running"));
}

TEST(AlreadyRunning, RunningAnotherLoopInsideARunningLoopThrows) {
    auto main = []() -> Coro<std::string> {
        EventLoop other;
        co_return runtime_error_message([&] { other.run_until_complete(answer()); });
    };
    EXPECT_THAT(asyncio::run(main()), HasSubstr("Cannot run the event loop while another loop is running"));
}

TEST(AlreadyRunning, NestedRunFromACallbackThrowsToo) {
    std::string msg;
    auto main = [&]() -> Coro<> {
        get_running_loop().call_soon([&] { msg = runtime_error_message([] { asyncio::run(answer()); }); });
        co_await asyncio::sleep(0);
        co_await asyncio::sleep(0);
    };
    asyncio::run(main());
    EXPECT_THAT(msg, HasSubstr("cannot be called from a running event loop"));
}

TEST(AlreadyRunning, TheOuterLoopKeepsWorkingAfterTheRefusal) {
    auto main = []() -> Coro<int> {
        EventLoop& loop = get_running_loop();
        EXPECT_THROW(asyncio::run(answer()), RuntimeError);
        EXPECT_THROW(loop.run_until_complete(answer()), RuntimeError);
        EXPECT_THROW(loop.run_forever(), RuntimeError);
        EXPECT_TRUE(loop.is_running());
        EXPECT_EQ(&get_running_loop(), &loop);
        co_await asyncio::sleep(1);
        co_return co_await answer();
    };
    EXPECT_EQ(run_virtual(main()), 42);
}

TEST(AlreadyRunning, ClosingTheRunningLoopThrows) {
    auto main = []() -> Coro<std::string> {
        EventLoop& loop = get_running_loop();
        co_return runtime_error_message([&] { loop.close(); });
    };
    EXPECT_THAT(asyncio::run(main()), HasSubstr("Cannot close a running event loop"));
}

TEST(AlreadyRunning, RunningTheSameEventLoopFromItsCallbackThrows) {
    EventLoop loop({.virtual_clock = true});
    std::string msg;
    loop.call_soon([&] {
        msg = runtime_error_message([&] { loop.run_forever(); });
        loop.stop();
    });
    loop.run_forever();
    EXPECT_THAT(msg, HasSubstr("already running"));
}

// ============================================================================================
// No running event loop
// ============================================================================================

TEST(NoRunningLoop, GetRunningLoopOutsideALoopThrows) {
    EXPECT_THAT(runtime_error_message([] { (void)get_running_loop(); }), HasSubstr("no running event loop"));
    EXPECT_EQ(get_running_loop_or_null(), nullptr);
}

TEST(NoRunningLoop, CreateTaskOutsideALoopThrows) {
    EXPECT_THAT(runtime_error_message([] { (void)create_task(answer()); }), HasSubstr("no running event loop"));
}

TEST(NoRunningLoop, FutureOutsideALoopThrows) {
    EXPECT_THAT(runtime_error_message([] { Future<int> f; }), HasSubstr("no running event loop"));
}

TEST(NoRunningLoop, CurrentTaskOutsideALoopThrows) {
    EXPECT_THAT(runtime_error_message([] { (void)current_task(); }), HasSubstr("no running event loop"));
}

TEST(NoRunningLoop, AllTasksOutsideALoopThrows) {
    EXPECT_THAT(runtime_error_message([] { (void)all_tasks(); }), HasSubstr("no running event loop"));
}

// ============================================================================================
// "Task was destroyed but it is pending!" cannot happen
// ============================================================================================

TEST(TaskDestroyedPending, DroppingEveryHandleOfARunningTaskLetsItComplete) {
    LogCapture log;
    bool finished = false;
    auto main = [&]() -> Coro<> {
        {
            (void)create_task([](bool& finished) -> Coro<> {
                co_await asyncio::sleep(1);
                co_await asyncio::sleep(1);
                finished = true;
            }(finished));
        }
        co_await asyncio::sleep(5);
    };
    run_virtual(main());
    EXPECT_TRUE(finished);
    EXPECT_TRUE(log.messages.empty()) << log.joined();
}

TEST(TaskDestroyedPending, TaskWithoutHandlesSuspendedOnAFutureResumesWhenItCompletes) {
    auto main = []() -> Coro<int> {
        Future<int> fut;
        auto result = std::make_shared<int>(0);
        (void)create_task(
            [](Future<int> fut, std::shared_ptr<int> result) -> Coro<> { *result = co_await fut; }(fut, result));
        co_await asyncio::sleep(1);
        fut.set_result(17);
        co_await asyncio::sleep(1);
        co_return *result;
    };
    EXPECT_EQ(run_virtual(main()), 17);
}

TEST(TaskDestroyedPending, TaskWithoutHandlesIsStillInAllTasks) {
    auto main = []() -> Coro<std::size_t> {
        (void)create_task([]() -> Coro<> { co_await asyncio::sleep(10); }());
        co_await asyncio::sleep(1);
        co_return all_tasks().size();  // main + the orphan
    };
    EXPECT_EQ(run_virtual(main()), 2u);
}

TEST(TaskDestroyedPending, LeftoverTasksAreCancelledAndAwaitedAtTheEndOfRun) {
    LogCapture log;
    std::vector<std::string> events;
    auto main = [&]() -> Coro<> {
        (void)create_task([](std::vector<std::string>& events) -> Coro<> {
            bool cancelled = false;
            try {
                co_await asyncio::sleep(3600);
            } catch (const CancelledError&) {
                events.push_back("cancelled");
                cancelled = true;  // (C++: no co_await inside a catch handler)
            }
            if (cancelled) {
                co_await asyncio::sleep(1);  // cleanup that awaits
                events.push_back("cleaned up");
                throw CancelledError();
            }
        }(events));
        co_await asyncio::sleep(1);
        events.push_back("main returns");
    };
    run_virtual(main());
    EXPECT_EQ(events, (std::vector<std::string>{"main returns", "cancelled", "cleaned up"}));
    EXPECT_TRUE(log.messages.empty()) << log.joined();
}

TEST(TaskDestroyedPending, ClosingALoopWithPendingTasksDestroysTheirFramesSilently) {
    LogCapture log;
    bool destroyed = false;
    bool resumed = false;
    EventLoop loop({.virtual_clock = true});
    HandlerCapture handler;
    handler.install(loop);
    auto main = [&]() -> Coro<> {
        (void)create_task([](bool* destroyed, bool* resumed) -> Coro<> {
            DestroyFlag guard(destroyed);
            co_await asyncio::sleep(3600);
            *resumed = true;
        }(&destroyed, &resumed));
        co_await asyncio::sleep(1);
    };
    loop.run_until_complete(main());
    EXPECT_FALSE(destroyed);
    loop.close();
    EXPECT_TRUE(destroyed);  // the frame's locals were destroyed
    EXPECT_FALSE(resumed);   // but the body was not resumed
    EXPECT_TRUE(handler.contexts.empty());
    EXPECT_TRUE(log.messages.empty()) << log.joined();
}

TEST(TaskDestroyedPending, DestroyingALoopWithPendingTasksDestroysTheirFrames) {
    bool destroyed = false;
    Task<> kept;
    {
        EventLoop loop({.virtual_clock = true});
        auto main = [&]() -> Coro<> {
            kept = create_task([](bool* destroyed) -> Coro<> {
                DestroyFlag guard(destroyed);
                co_await asyncio::sleep(3600);
            }(&destroyed));
            co_await asyncio::sleep(0);
        };
        loop.run_until_complete(main());
    }
    EXPECT_TRUE(destroyed);
    EXPECT_FALSE(kept.done());
    EXPECT_THROW(kept.cancel(), RuntimeError);
}

// ============================================================================================
// "Event loop is closed"
// ============================================================================================

TEST(EventLoopClosed, CallSoonThrows) {
    EventLoop loop;
    loop.close();
    EXPECT_EQ(runtime_error_message([&] { loop.call_soon([] {}); }), kClosed);
}

TEST(EventLoopClosed, CallLaterAndCallAtThrow) {
    EventLoop loop;
    loop.close();
    EXPECT_EQ(runtime_error_message([&] { loop.call_later(1.0, [] {}); }), kClosed);
    EXPECT_EQ(runtime_error_message([&] { loop.call_at(loop.time() + 1, [] {}); }), kClosed);
}

TEST(EventLoopClosed, CallSoonThreadsafeThrowsFromAnyThread) {
    EventLoop loop;
    loop.close();
    EXPECT_EQ(runtime_error_message([&] { loop.call_soon_threadsafe([] {}); }), kClosed);
    std::string from_thread;
    std::thread th([&] { from_thread = runtime_error_message([&] { loop.call_soon_threadsafe([] {}); }); });
    th.join();
    EXPECT_EQ(from_thread, kClosed);
}

TEST(EventLoopClosed, CreateTaskAndCreateFutureThrow) {
    EventLoop loop;
    loop.close();
    EXPECT_EQ(runtime_error_message([&] { (void)loop.create_task(answer()); }), kClosed);
    EXPECT_EQ(runtime_error_message([&] { (void)loop.create_future<int>(); }), kClosed);
    EXPECT_EQ(runtime_error_message([&] { Future<int> f(loop); }), kClosed);
}

TEST(EventLoopClosed, RunUntilCompleteAndRunForeverThrow) {
    EventLoop loop;
    loop.close();
    EXPECT_EQ(runtime_error_message([&] { loop.run_until_complete(answer()); }), kClosed);
    EXPECT_EQ(runtime_error_message([&] { loop.run_forever(); }), kClosed);
}

TEST(EventLoopClosed, AddSignalHandlerThrows) {
    EventLoop loop;
    loop.close();
    EXPECT_EQ(runtime_error_message([&] { loop.add_signal_handler(SIGUSR1, [] {}); }), kClosed);
}

TEST(EventLoopClosed, CloseIsIdempotentAndStateIsVisible) {
    EventLoop loop;
    EXPECT_FALSE(loop.is_closed());
    loop.close();
    EXPECT_TRUE(loop.is_closed());
    EXPECT_NO_THROW(loop.close());
    EXPECT_TRUE(loop.is_closed());
    EXPECT_FALSE(loop.is_running());
}

TEST(EventLoopClosed, PendingTaskHandleThatOutlivedItsLoop) {
    ClosedLoopHandles h;
    EXPECT_FALSE(h.task.done());
    EXPECT_FALSE(h.task.cancelled());
    EXPECT_EQ(runtime_error_message([&] { h.task.cancel(); }), kClosed);
    EXPECT_EQ(runtime_error_message([&] { h.task.add_done_callback([] {}); }), kClosed);
    EXPECT_EQ(runtime_error_message([&] { (void)h.task.get_loop(); }), kClosed);
}

TEST(EventLoopClosed, PendingFutureHandleThatOutlivedItsLoop) {
    ClosedLoopHandles h;
    Future<int>& fut = *h.fut;
    EXPECT_FALSE(fut.done());
    EXPECT_EQ(runtime_error_message([&] { fut.cancel(); }), kClosed);
    EXPECT_EQ(runtime_error_message([&] { fut.set_result(1); }), kClosed);
    EXPECT_EQ(runtime_error_message([&] { fut.set_exception(std::runtime_error("x")); }), kClosed);
    EXPECT_EQ(runtime_error_message([&] { fut.add_done_callback([] {}); }), kClosed);
    EXPECT_EQ(runtime_error_message([&] { (void)fut.get_loop(); }), kClosed);
    EXPECT_FALSE(fut.done());  // nothing changed
}

TEST(EventLoopClosed, ResultOfAPendingFutureOfAClosedLoopIsStillInvalidState) {
    // Python: result() of a pending future raises InvalidStateError, closed loop or not.
    ClosedLoopHandles h;
    EXPECT_THROW((void)h.fut->result(), InvalidStateError);
    EXPECT_THROW((void)h.task.result(), InvalidStateError);
}

TEST(EventLoopClosed, ADoneTaskKeepsItsResultAfterTheLoopClosed) {
    ClosedLoopHandles h;
    EXPECT_TRUE(h.done_task.done());
    EXPECT_EQ(h.done_task.result(), 7);
    EXPECT_FALSE(h.done_task.exception());
}

TEST(EventLoopClosed, CallbackHandlesThatOutlivedTheLoopCanBeCancelled) {
    // Python: Handle.cancel() after close is harmless.
    Handle handle;
    TimerHandle timer;
    {
        EventLoop loop;
        handle = loop.call_soon([] {});
        timer = loop.call_later(10.0, [] {});
        loop.close();
    }
    EXPECT_NO_THROW(handle.cancel());
    EXPECT_NO_THROW(timer.cancel());
    EXPECT_TRUE(handle.cancelled());
    EXPECT_TRUE(timer.cancelled());
}

TEST(EventLoopClosed, FutureOfAClosedRunAwaitedFromANewRunThrows) {
    ClosedLoopHandles h;
    auto main = [](Future<int> fut) -> Coro<std::string> {
        try {
            co_await fut;
        } catch (const RuntimeError& e) {
            co_return e.what();
        }
        co_return "no exception";
    };
    EXPECT_EQ(asyncio::run(main(*h.fut)), kClosed);
}

TEST(EventLoopClosed, TaskOfAClosedRunAwaitedFromANewRunThrows) {
    ClosedLoopHandles h;
    auto main = [](Task<int> task) -> Coro<std::string> {
        try {
            co_await task;
        } catch (const RuntimeError& e) {
            co_return e.what();
        }
        co_return "no exception";
    };
    EXPECT_EQ(asyncio::run(main(h.task)), kClosed);
}

TEST(EventLoopClosed, TaskOfAClosedLoopPassedToRunUntilCompleteOfAnotherLoopThrows) {
    ClosedLoopHandles h;
    EventLoop other;
    EXPECT_THROW(other.run_until_complete(h.task), std::invalid_argument);
}

TEST(EventLoopClosed, FutureOfAnotherOpenLoopAwaitedThrows) {
    // Not closed, but foreign: Python's "attached to a different loop".
    EventLoop other;
    Future<int> foreign = other.create_future<int>();
    auto main = [](Future<int> fut) -> Coro<std::string> {
        try {
            co_await fut;
        } catch (const RuntimeError& e) {
            co_return e.what();
        }
        co_return "no exception";
    };
    EXPECT_THAT(asyncio::run(main(foreign)), HasSubstr("attached to a different loop"));
}

TEST(EventLoopClosed, RunnerHandlesAfterCloseThrow) {
    asyncio::Runner runner;
    Task<int> task;
    auto main = [](Task<int>& task) -> Coro<> {
        task = create_task(answer());
        co_return;
    };
    runner.run(main(task));
    Future<int> fut = runner.get_loop().create_future<int>();
    runner.close();
    EXPECT_EQ(runtime_error_message([&] { fut.set_result(1); }), kClosed);
    EXPECT_EQ(runtime_error_message([&] { task.add_done_callback([] {}); }), kClosed);
}

// (global Lock across several asyncio::run: locks are a later issue, not tested here.)

// ============================================================================================
// Awaiting a task from itself
// ============================================================================================

TEST(AwaitSelf, AwaitingCurrentTaskThrowsRuntimeError) {
    auto main = []() -> Coro<std::string> {
        try {
            co_await current_task();
        } catch (const RuntimeError& e) {
            co_return e.what();
        }
        co_return "no exception";
    };
    EXPECT_THAT(asyncio::run(main()), HasSubstr("cannot await on itself"));
}

TEST(AwaitSelf, AwaitingItsOwnTypedHandleThrowsAndTheTaskGoesOn) {
    auto main = []() -> Coro<int> {
        auto self = std::make_shared<Task<int>>();
        *self = create_task([](std::shared_ptr<Task<int>> self) -> Coro<int> {
            co_await asyncio::sleep(0);  // *self is assigned by now
            try {
                co_return co_await *self;
            } catch (const RuntimeError&) {
            }
            co_await asyncio::sleep(1);
            co_return 5;
        }(self));
        co_return co_await *self;  // (the finished task's frame, and its handle copy, are gone)
    };
    EXPECT_EQ(run_virtual(main()), 5);
}

// ============================================================================================
// result() before done -> InvalidStateError
// ============================================================================================

TEST(InvalidState, TaskResultBeforeDone) {
    auto main = []() -> Coro<> {
        auto t = create_task(answer());
        EXPECT_THROW((void)t.result(), InvalidStateError);
        EXPECT_THROW((void)t.exception(), InvalidStateError);
        EXPECT_EQ(co_await t, 42);
        EXPECT_EQ(t.result(), 42);
    };
    asyncio::run(main());
}

TEST(InvalidState, FutureResultBeforeDone) {
    auto main = []() -> Coro<> {
        Future<int> f;
        EXPECT_THROW((void)f.result(), InvalidStateError);
        EXPECT_THROW((void)f.exception(), InvalidStateError);
        f.set_result(3);
        EXPECT_EQ(f.result(), 3);
        co_return;
    };
    asyncio::run(main());
}

TEST(InvalidState, InvalidStateErrorIsAStdException) {
    auto main = []() -> Coro<bool> {
        Future<int> f;
        try {
            (void)f.result();
        } catch (const std::exception&) {
            co_return true;
        }
        co_return false;
    };
    EXPECT_TRUE(asyncio::run(main()));
}

TEST(InvalidState, SettingADoneFutureAgain) {
    auto main = []() -> Coro<> {
        Future<int> f;
        f.set_result(1);
        EXPECT_THROW(f.set_result(2), InvalidStateError);
        EXPECT_THROW(f.set_exception(std::runtime_error("x")), InvalidStateError);
        EXPECT_EQ(f.result(), 1);
        Future<int> g;
        g.cancel();
        EXPECT_THROW(g.set_result(1), InvalidStateError);
        co_return;
    };
    asyncio::run(main());
}

TEST(InvalidState, ResultOfACancelledTaskIsCancelledError) {
    auto main = []() -> Coro<> {
        auto t = create_task(answer());
        t.cancel("why");
        co_await asyncio::sleep(0);
        EXPECT_TRUE(t.cancelled());
        try {
            (void)t.result();
            ADD_FAILURE() << "expected CancelledError";
        } catch (const CancelledError& e) {
            EXPECT_EQ(e.message(), "why");
        }
    };
    asyncio::run(main());
}

// ============================================================================================
// A Coro awaited twice
// ============================================================================================

TEST(CoroReuse, AwaitingACoroTwiceThrowsRuntimeError) {
    auto main = []() -> Coro<std::string> {
        auto c = answer();
        EXPECT_EQ(co_await c, 42);
        try {
            (void)co_await c;
        } catch (const RuntimeError& e) {
            co_return e.what();
        }
        co_return "no exception";
    };
    EXPECT_THAT(asyncio::run(main()), HasSubstr("cannot reuse already awaited coroutine"));
}

TEST(CoroReuse, AwaitingACoroThatThrewAgainThrowsRuntimeError) {
    auto main = []() -> Coro<> {
        auto c = []() -> Coro<int> {
            co_await asyncio::sleep(0);
            throw std::invalid_argument("first");
        }();
        EXPECT_THROW(co_await c, std::invalid_argument);
        EXPECT_THROW(co_await c, RuntimeError);
    };
    asyncio::run(main());
}

TEST(CoroReuse, CreateTaskOfAnAwaitedCoroThrows) {
    auto main = []() -> Coro<> {
        auto c = answer();
        (void)co_await c;
        EXPECT_THROW((void)create_task(std::move(c)), RuntimeError);
    };
    asyncio::run(main());
}

TEST(CoroReuse, AwaitingAMovedFromCoroThrows) {
    auto main = []() -> Coro<> {
        auto c = answer();
        auto t = create_task(std::move(c));
        EXPECT_THROW(co_await c, RuntimeError);  // NOLINT(bugprone-use-after-move)
        EXPECT_THROW((void)create_task(std::move(c)), RuntimeError);
        EXPECT_EQ(co_await t, 42);
    };
    asyncio::run(main());
}

TEST(CoroReuse, ATaskCanBeAwaitedManyTimes) {
    // The fix the error message suggests: wrap it in a task.
    auto main = []() -> Coro<int> {
        auto t = create_task(answer());
        int a = co_await t;
        int b = co_await t;
        co_return a + b;
    };
    EXPECT_EQ(asyncio::run(main()), 84);
}

// ============================================================================================
// CancelledError is not caught by catch (const std::exception&)
// ============================================================================================

TEST(CancelledErrorCatch, NotDerivedFromStdException) {
    EXPECT_FALSE((std::is_base_of_v<std::exception, CancelledError>));
}

TEST(CancelledErrorCatch, CatchStdExceptionDoesNotSwallowCancellation) {
    auto main = []() -> Coro<> {
        bool swallowed = false;
        auto t = create_task([](bool& swallowed) -> Coro<> {
            try {
                co_await asyncio::sleep(10);
            } catch (const std::exception&) {
                swallowed = true;
            }
        }(swallowed));
        co_await asyncio::sleep(1);
        t.cancel();
        try {
            co_await t;
        } catch (const CancelledError&) {
        }
        EXPECT_FALSE(swallowed);
        EXPECT_TRUE(t.cancelled());
    };
    run_virtual(main());
}

TEST(CancelledErrorCatch, CatchStdExceptionStillCatchesTimeoutError) {
    auto main = []() -> Coro<bool> {
        try {
            co_await wait_for(asyncio::sleep(10), 1.0);
        } catch (const std::exception&) {
            co_return true;
        }
        co_return false;
    };
    EXPECT_TRUE(run_virtual(main()));
}

TEST(CancelledErrorCatch, CatchAllSwallowsItLikeABareExcept) {
    // catch (...) is Python's bare `except:` - it does catch the cancellation, and the task
    // then completes normally.
    auto main = []() -> Coro<> {
        auto t = create_task([]() -> Coro<int> {
            try {
                co_await asyncio::sleep(10);
            } catch (...) {
                co_return 1;
            }
            co_return 0;
        }());
        co_await asyncio::sleep(1);
        t.cancel();
        EXPECT_EQ(co_await t, 1);
        EXPECT_FALSE(t.cancelled());
    };
    run_virtual(main());
}

// ============================================================================================
// "Task exception was never retrieved"
// ============================================================================================

namespace {
Coro<> fail_after(double delay, std::string what) {
    co_await asyncio::sleep(delay);
    throw std::runtime_error(what);
}

bool has_runtime_error(const HandlerCapture& h, const std::string& what) {
    for (auto& c : h.contexts) {
        if (!c.exception) continue;
        try {
            std::rethrow_exception(c.exception);
        } catch (const std::runtime_error& e) {
            if (e.what() == what) return true;
        } catch (...) {
        }
    }
    return false;
}
}  // namespace

TEST(NeverRetrieved, FailedTaskWithoutHandlesIsReported) {
    HandlerCapture handler;
    auto main = [&]() -> Coro<> {
        handler.install(get_running_loop());
        (void)create_task(fail_after(1, "orphan failure"), "orphan");
        co_await asyncio::sleep(2);
    };
    run_virtual(main());
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_THAT(handler.contexts[0].message, HasSubstr("Task exception was never retrieved"));
    EXPECT_THAT(handler.contexts[0].future, HasSubstr("orphan"));
    EXPECT_TRUE(has_runtime_error(handler, "orphan failure"));
}

TEST(NeverRetrieved, ReportedWhenTheLastHandleIsDropped) {
    HandlerCapture handler;
    auto main = [&]() -> Coro<> {
        handler.install(get_running_loop());
        auto t = create_task(fail_after(1, "late drop"));
        auto copy = t;
        co_await asyncio::sleep(2);
        EXPECT_TRUE(t.done());
        EXPECT_TRUE(handler.contexts.empty());  // handles still alive: not yet
        t = Task<>();
        EXPECT_TRUE(handler.contexts.empty());  // one handle left
        copy = Task<>();
        EXPECT_EQ(handler.contexts.size(), 1u);
    };
    run_virtual(main());
    EXPECT_TRUE(handler.contains("Task exception was never retrieved"));
    EXPECT_TRUE(has_runtime_error(handler, "late drop"));
}

TEST(NeverRetrieved, NotReportedOnceTheExceptionWasRetrieved) {
    HandlerCapture handler;
    auto main = [&]() -> Coro<> {
        handler.install(get_running_loop());
        auto a = create_task(fail_after(1, "a"));
        auto b = create_task(fail_after(1, "b"));
        auto c = create_task(fail_after(1, "c"));
        co_await asyncio::sleep(2);
        (void)a.exception();
        EXPECT_THROW((void)b.result(), std::runtime_error);
        EXPECT_THROW(co_await c, std::runtime_error);
    };
    run_virtual(main());
    EXPECT_TRUE(handler.contexts.empty());
}

TEST(NeverRetrieved, NotReportedForCancelledTasks) {
    HandlerCapture handler;
    auto main = [&]() -> Coro<> {
        handler.install(get_running_loop());
        {
            auto t = create_task(fail_after(10, "never"));
            co_await asyncio::sleep(1);
            t.cancel();
        }
        co_await asyncio::sleep(1);
    };
    run_virtual(main());
    EXPECT_TRUE(handler.contexts.empty());
}

TEST(NeverRetrieved, NotReportedWhenGatherConsumedIt) {
    HandlerCapture handler;
    auto main = [&]() -> Coro<> {
        handler.install(get_running_loop());
        EXPECT_THROW(co_await gather(fail_after(1, "via gather"), answer()), std::runtime_error);
    };
    run_virtual(main());
    EXPECT_TRUE(handler.contexts.empty());
}

TEST(NeverRetrieved, FutureExceptionNeverRetrievedIsReported) {
    HandlerCapture handler;
    auto main = [&]() -> Coro<> {
        handler.install(get_running_loop());
        {
            Future<int> f;
            f.set_exception(std::runtime_error("future failure"));
        }
        co_await asyncio::sleep(0);
    };
    run_virtual(main());
    EXPECT_TRUE(handler.contains("Future exception was never retrieved"));
    EXPECT_TRUE(has_runtime_error(handler, "future failure"));
}

TEST(NeverRetrieved, WithoutAHandlerItIsLogged) {
    LogCapture log;
    auto main = []() -> Coro<> {
        (void)create_task(fail_after(1, "logged failure"));
        co_await asyncio::sleep(2);
    };
    run_virtual(main());
    EXPECT_TRUE(log.contains("Task exception was never retrieved")) << log.joined();
    EXPECT_TRUE(log.contains("logged failure")) << log.joined();
}

TEST(NeverRetrieved, HandleOutlivingTheLoopIsReportedToTheLogWhenDropped) {
    LogCapture log;
    std::optional<Task<>> t;
    auto main = [](std::optional<Task<>>& t) -> Coro<> {
        t = create_task(fail_after(1, "outlived"));
        co_await asyncio::sleep(2);
    };
    run_virtual(main(t));
    EXPECT_FALSE(log.contains("never retrieved"));
    t.reset();
    EXPECT_TRUE(log.contains("Task exception was never retrieved")) << log.joined();
    EXPECT_TRUE(log.contains("outlived")) << log.joined();
}
