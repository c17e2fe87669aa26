// tests/runtime/test_tasks.cpp - Task semantics, ported from the scenarios of CPython's
// Lib/test/test_asyncio/test_tasks.py (the parts about Task itself: creation, results and
// exceptions, names, done callbacks, cancellation, current_task/all_tasks, sleep, ordering).
// gather/wait/as_completed/shield/wait_for have their own test files.
//
// Coroutine lambdas invoked on the spot never capture (the closure would die before the
// coroutine); state is passed to free coroutine functions by pointer instead. Inside
// coroutines only EXPECT_* is used (ASSERT_* would `return`).
#include "support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

using namespace asyncio;
using namespace std::chrono_literals;
using asyncio_test::Boom;
using asyncio_test::run_virtual;
using asyncio_test::value_after;

namespace {

// ---- small coroutines ----------------------------------------------------------------------
Coro<> noop() { co_return; }
Coro<int> immediate(int v) { co_return v; }
Coro<> sleep_for(double delay) { co_await sleep(delay); }
Coro<int> fail_now(std::string msg) {
    if (!msg.empty()) throw Boom(msg);
    co_return 0;
}
Coro<int> fail_after(double delay, std::string msg) {
    co_await sleep(delay);
    if (!msg.empty()) throw Boom(msg);
    co_return 0;
}
Coro<> set_flag(bool* flag) {
    *flag = true;
    co_return;
}
Coro<> set_flag_after(double delay, bool* flag) {
    co_await sleep(delay);
    *flag = true;
}
Coro<> append(std::vector<int>* log, int v) {
    log->push_back(v);
    co_return;
}
Coro<int> await_fut(Future<int> f) { co_return co_await f; }
Coro<> await_void_fut(Future<> f) { co_await f; }
Coro<int> await_task(Task<int> t) { co_return co_await t; }
Coro<> await_void_task(Task<> t) { co_await t; }

/// Awaits `t` and returns the message of the CancelledError it must raise.
Coro<std::string> cancel_message_of(AnyTask t) {
    try {
        co_await t;
    } catch (const CancelledError& e) {
        co_return e.message();
    }
    ADD_FAILURE() << "expected CancelledError from co_await";
    co_return "<no CancelledError>";
}

/// Calls `f` and returns the message of the CancelledError it must throw.
template <class F>
std::string cancelled_message_from(F&& f) {
    try {
        f();
    } catch (const CancelledError& e) {
        return e.message();
    } catch (...) {
        ADD_FAILURE() << "expected CancelledError, got another exception";
        return "<other exception>";
    }
    ADD_FAILURE() << "expected CancelledError, nothing was thrown";
    return "<no exception>";
}

/// The message of the std::exception held by `e` ("" and a failure when none). Stricter than
/// asyncio_test::message_of, which also accepts a CancelledError: these checks want a std::exception.
std::string what_of(const std::exception_ptr& e) {
    if (!e) {
        ADD_FAILURE() << "null exception_ptr";
        return "";
    }
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        return ex.what();
    } catch (...) {
        ADD_FAILURE() << "not a std::exception";
    }
    return "";
}

bool contains(const std::vector<AnyTask>& tasks, const AnyTask& t) {
    return std::any_of(tasks.begin(), tasks.end(), [&](const AnyTask& x) { return x == t; });
}

}  // namespace

// =============================================================================================
// Creating and awaiting tasks
// =============================================================================================

TEST(TaskBasics, AwaitingTaskGivesTheCoroutinesResult) {
    auto main = []() -> Coro<> {
        auto t = create_task(immediate(42));
        int v = co_await t;
        EXPECT_EQ(v, 42);
        EXPECT_TRUE(t.done());
        EXPECT_FALSE(t.cancelled());
        EXPECT_EQ(t.result(), 42);
    };
    run_virtual(main());
}

TEST(TaskBasics, NestedCoroutinesReturnTheirValuesToTheCaller) {
    // test_task_basics: outer() awaits two inner coroutines and adds their results.
    auto inner1 = []() -> Coro<int> { co_return 42; };
    auto inner2 = []() -> Coro<int> { co_return 1000; };
    auto outer = [&]() -> Coro<int> {
        int a = co_await inner1();
        int b = co_await inner2();
        co_return a + b;
    };
    EXPECT_EQ(run_virtual(outer()), 1042);
}

TEST(TaskBasics, TaskDoesNotStartUntilItsCreatorYields) {
    auto main = []() -> Coro<> {
        bool started = false;
        auto t = create_task(set_flag(&started));
        EXPECT_FALSE(started);
        EXPECT_FALSE(t.done());
        co_await sleep(0);
        EXPECT_TRUE(started);
        EXPECT_TRUE(t.done());
    };
    run_virtual(main());
}

TEST(TaskBasics, TasksStartInCreationOrder) {
    auto main = []() -> Coro<> {
        std::vector<int> log;
        std::vector<Task<>> tasks;
        for (int i = 0; i < 5; ++i) tasks.push_back(create_task(append(&log, i)));
        EXPECT_TRUE(log.empty());
        co_await sleep(0);
        EXPECT_EQ(log, (std::vector<int>{0, 1, 2, 3, 4}));
    };
    run_virtual(main());
}

TEST(TaskBasics, LoopCreateTaskRunsWhenTheLoopRuns) {
    // test_task_class: a task made on a loop that is not running yet.
    EventLoop loop({.virtual_clock = true});
    bool started = false;
    Task<> t = loop.create_task(set_flag(&started));
    EXPECT_FALSE(started);
    EXPECT_FALSE(t.done());
    EXPECT_EQ(&t.get_loop(), &loop);
    loop.run_until_complete(t);
    EXPECT_TRUE(started);
    EXPECT_TRUE(t.done());

    Task<int> t2 = loop.create_task(immediate(7));
    EXPECT_EQ(loop.run_until_complete(t2), 7);
    EXPECT_EQ(t2.result(), 7);
}

TEST(TaskBasics, RunUntilCompleteWrapsACoroutineInATask) {
    EventLoop loop({.virtual_clock = true});
    EXPECT_EQ(loop.run_until_complete(value_after(1.0, 9)), 9);
    EXPECT_DOUBLE_EQ(loop.time(), 1.0);
    loop.run_until_complete(sleep_for(0.5));
    EXPECT_DOUBLE_EQ(loop.time(), 1.5);
}

TEST(TaskBasics, RunUntilCompleteRethrowsTheTasksException) {
    EventLoop loop({.virtual_clock = true});
    try {
        loop.run_until_complete(fail_after(1.0, "bad"));
        ADD_FAILURE() << "expected Boom";
    } catch (const Boom& e) {
        EXPECT_STREQ(e.what(), "bad");
    }
}

TEST(TaskBasics, ATaskCanBeAwaitedByManyAwaitersAndAgainAfterwards) {
    auto main = []() -> Coro<> {
        auto t = create_task(value_after(1.0, 7));
        auto a = create_task(await_task(t));
        auto b = create_task(await_task(t));
        int ra = co_await a;
        int rb = co_await b;
        int r1 = co_await t;
        int r2 = co_await t;
        EXPECT_EQ(ra, 7);
        EXPECT_EQ(rb, 7);
        EXPECT_EQ(r1, 7);
        EXPECT_EQ(r2, 7);
    };
    run_virtual(main());
}

TEST(TaskBasics, AwaitingADoneTaskDoesNotYieldToTheLoop) {
    auto main = []() -> Coro<> {
        auto t = create_task(immediate(3));
        co_await sleep(0);
        EXPECT_TRUE(t.done());
        bool callback_ran = false;
        get_running_loop().call_soon([&callback_ran] { callback_ran = true; });
        int v = co_await t;
        EXPECT_EQ(v, 3);
        EXPECT_FALSE(callback_ran);  // no loop iteration happened
        co_await sleep(0);
        EXPECT_TRUE(callback_ran);
    };
    run_virtual(main());
}

TEST(TaskBasics, VoidTask) {
    auto main = []() -> Coro<> {
        bool flag = false;
        Task<> t = create_task(set_flag_after(1.0, &flag));
        co_await t;
        EXPECT_TRUE(flag);
        EXPECT_TRUE(t.done());
        EXPECT_NO_THROW(t.result());
        EXPECT_EQ(t.exception(), nullptr);
    };
    run_virtual(main());
}

namespace {
Coro<std::unique_ptr<int>> make_ptr(int v) {
    co_await sleep(0);
    co_return std::make_unique<int>(v);
}
Coro<Future<int>> return_future(Future<int> f) { co_return f; }
}  // namespace

TEST(TaskBasics, MoveOnlyResult) {
    auto main = []() -> Coro<> {
        auto t = create_task(make_ptr(5));
        std::unique_ptr<int> p = co_await t;
        EXPECT_TRUE(p);
        if (p) {
            EXPECT_EQ(*p, 5);
        }
    };
    run_virtual(main());
}

TEST(TaskBasics, CoroutineReturningAFutureGivesTheFutureItselfNotItsResult) {
    // test_coroutine_non_gen_function_return_future
    auto main = []() -> Coro<> {
        Future<int> f;
        auto t = create_task(return_future(f));
        Future<int> got = co_await t;
        EXPECT_TRUE(got == f);
        EXPECT_FALSE(got.done());
        f.set_result(1);
    };
    run_virtual(main());
}

TEST(TaskBasics, TaskRunsToCompletionAfterEveryHandleIsDropped) {
    // Python's "Task was destroyed but it is pending!" cannot happen: the loop owns the task.
    auto main = []() -> Coro<> {
        bool done = false;
        (void)create_task(set_flag_after(1.0, &done));
        EXPECT_EQ(all_tasks().size(), 2u);
        co_await sleep(2.0);
        EXPECT_TRUE(done);
        EXPECT_EQ(all_tasks().size(), 1u);
    };
    run_virtual(main());
}

TEST(TaskBasics, CreateTaskOutsideARunningLoopThrowsRuntimeError) {
    try {
        (void)create_task(immediate(1));
        ADD_FAILURE() << "expected RuntimeError";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("no running event loop"), std::string::npos) << e.what();
    }
}

TEST(TaskBasics, CreateTaskWithAnEmptyOrMovedFromCoroThrowsRuntimeError) {
    auto main = []() -> Coro<> {
        Coro<int> empty;
        EXPECT_THROW((void)create_task(std::move(empty)), RuntimeError);
        Coro<int> c = immediate(1);
        Coro<int> d = std::move(c);
        EXPECT_THROW((void)create_task(std::move(c)), RuntimeError);  // NOLINT(bugprone-use-after-move)
        auto t = create_task(std::move(d));
        int v = co_await t;
        EXPECT_EQ(v, 1);
    };
    run_virtual(main());
}

TEST(TaskBasics, CoAwaitDirectlyOnCreateTask) {
    auto main = []() -> Coro<> {
        int v = co_await create_task(value_after(1.0, 11));
        EXPECT_EQ(v, 11);
        int w = co_await create_task(immediate(12));
        EXPECT_EQ(w, 12);
        EXPECT_EQ(co_await create_task(immediate(13), "named"), 13);
    };
    run_virtual(main());
}

TEST(TaskBasics, CreateTaskWithAnAlreadyAwaitedCoroThrowsRuntimeError) {
    auto main = []() -> Coro<> {
        Coro<int> c = immediate(2);
        int v = co_await c;
        EXPECT_EQ(v, 2);
        EXPECT_THROW((void)create_task(std::move(c)), RuntimeError);
    };
    run_virtual(main());
}

TEST(TaskBasics, EmptyTaskHandleThrowsInvalidStateError) {
    Task<int> t;
    EXPECT_FALSE(static_cast<bool>(t));
    EXPECT_THROW((void)t.done(), InvalidStateError);
    EXPECT_THROW((void)t.cancel(), InvalidStateError);
    EXPECT_THROW((void)t.result(), InvalidStateError);
}

TEST(TaskBasics, AwaitingAnAnyTaskWaitsForItAndRethrows) {
    auto main = []() -> Coro<> {
        AnyTask ok = create_task(value_after(1.0, 1));
        AnyTask bad = create_task(fail_after(2.0, "any"));
        co_await ok;
        EXPECT_TRUE(ok.done());
        try {
            co_await bad;
            ADD_FAILURE() << "expected Boom";
        } catch (const Boom& e) {
            EXPECT_STREQ(e.what(), "any");
        }
        EXPECT_DOUBLE_EQ(get_running_loop().time(), 2.0);
    };
    run_virtual(main());
}

// =============================================================================================
// result() / exception() and exceptions crossing co_await
// =============================================================================================

TEST(TaskResult, ResultAndExceptionOfAPendingTaskThrowInvalidStateError) {
    auto main = []() -> Coro<> {
        auto t = create_task(value_after(1.0, 1));
        EXPECT_THROW((void)t.result(), InvalidStateError);  // not started
        EXPECT_THROW((void)t.exception(), InvalidStateError);
        co_await sleep(0);
        EXPECT_THROW((void)t.result(), InvalidStateError);  // started, sleeping
        EXPECT_THROW((void)t.exception(), InvalidStateError);
        co_await t;
        EXPECT_EQ(t.result(), 1);
    };
    run_virtual(main());
}

TEST(TaskResult, ExceptionIsNullAfterSuccess) {
    auto main = []() -> Coro<> {
        auto t = create_task(immediate(1));
        co_await t;
        EXPECT_EQ(t.exception(), nullptr);
    };
    run_virtual(main());
}

TEST(TaskResult, ExceptionReturnsTheCoroutinesException) {
    auto main = []() -> Coro<> {
        auto t = create_task(fail_now("bad"));
        co_await sleep(0);
        EXPECT_TRUE(t.done());
        EXPECT_FALSE(t.cancelled());
        std::exception_ptr e = t.exception();
        EXPECT_TRUE(e);
        EXPECT_EQ(what_of(e), "bad");
        EXPECT_THROW(std::rethrow_exception(e), Boom);
    };
    run_virtual(main());
}

TEST(TaskResult, ResultRethrowsTheCoroutinesException) {
    auto main = []() -> Coro<> {
        auto t = create_task(fail_now("bad result"));
        co_await sleep(0);
        try {
            (void)t.result();
            ADD_FAILURE() << "expected Boom";
        } catch (const Boom& e) {
            EXPECT_STREQ(e.what(), "bad result");
        }
    };
    run_virtual(main());
}

TEST(TaskResult, AwaitAndResultRethrowTheSameExceptionObject) {
    // Python: task.exception() is the very exception the coroutine raised.
    auto main = []() -> Coro<> {
        auto t = create_task(fail_after(1.0, "same"));
        const void* from_await = nullptr;
        const void* from_result = nullptr;
        try {
            co_await t;
        } catch (const Boom& e) {
            from_await = &e;
        }
        try {
            (void)t.result();
        } catch (const Boom& e) {
            from_result = &e;
        }
        EXPECT_NE(from_await, nullptr);
        EXPECT_EQ(from_await, from_result);
    };
    run_virtual(main());
}

namespace {
Coro<> throw_int(int v) {
    co_await sleep(0);
    if (v) throw v;
}
}  // namespace

TEST(TaskResult, ANonStdExceptionTypeCrossesAwait) {
    auto main = []() -> Coro<> {
        auto t = create_task(throw_int(7));
        int caught = 0;
        try {
            co_await t;
        } catch (int x) {
            caught = x;
        }
        EXPECT_EQ(caught, 7);
        EXPECT_TRUE(t.done());
        EXPECT_FALSE(t.cancelled());
        EXPECT_TRUE(t.exception());
    };
    run_virtual(main());
}

namespace {
Coro<int> catch_nested_failure() {
    try {
        co_await fail_after(0.5, "nested");
    } catch (const Boom& e) {
        EXPECT_STREQ(e.what(), "nested");
        co_return -1;
    }
    co_return 0;
}
Coro<int> propagate_nested_failure() {
    int v = co_await fail_after(0.5, "nested uncaught");
    co_return v + 1;
}
}  // namespace

TEST(TaskResult, ExceptionInANestedCoroutineCanBeCaughtByItsCaller) {
    auto main = []() -> Coro<> {
        auto t = create_task(catch_nested_failure());
        int v = co_await t;
        EXPECT_EQ(v, -1);
        EXPECT_EQ(t.exception(), nullptr);
    };
    run_virtual(main());
}

TEST(TaskResult, UncaughtExceptionInANestedCoroutineFailsTheTask) {
    auto main = []() -> Coro<> {
        auto t = create_task(propagate_nested_failure());
        EXPECT_THROW(co_await t, Boom);
        EXPECT_EQ(what_of(t.exception()), "nested uncaught");
        EXPECT_DOUBLE_EQ(get_running_loop().time(), 0.5);
    };
    run_virtual(main());
}

TEST(TaskResult, ExceptionPropagatesThroughAChainOfAwaitingTasks) {
    auto main = []() -> Coro<> {
        auto inner = create_task(fail_after(1.0, "deep"));
        auto middle = create_task(await_task(inner));
        auto outer = create_task(await_task(middle));
        try {
            co_await outer;
            ADD_FAILURE() << "expected Boom";
        } catch (const Boom& e) {
            EXPECT_STREQ(e.what(), "deep");
        }
        EXPECT_EQ(what_of(inner.exception()), "deep");
        EXPECT_EQ(what_of(middle.exception()), "deep");
        EXPECT_EQ(what_of(outer.exception()), "deep");
        EXPECT_FALSE(outer.cancelled());
    };
    run_virtual(main());
}

TEST(TaskResult, ResultAndExceptionOfACancelledTaskThrowCancelledErrorWithTheMessage) {
    // test_cancel_with_message_then_future_result / _exception
    auto main = []() -> Coro<> {
        auto t = create_task(sleep_for(10));
        co_await sleep(0);
        EXPECT_TRUE(t.cancel("my message"));
        std::string from_await = co_await cancel_message_of(t);
        EXPECT_EQ(from_await, "my message");
        EXPECT_EQ(cancelled_message_from([&] { t.result(); }), "my message");
        EXPECT_EQ(cancelled_message_from([&] { (void)t.exception(); }), "my message");
        // Asking again gives the same answer.
        EXPECT_EQ(cancelled_message_from([&] { t.result(); }), "my message");
    };
    run_virtual(main());
}

// =============================================================================================
// Names
// =============================================================================================

TEST(TaskName, DefaultNameIsTaskDashNumber) {
    auto main = []() -> Coro<> {
        auto t = create_task(noop());
        EXPECT_TRUE(std::regex_match(t.get_name(), std::regex("Task-[0-9]+"))) << t.get_name();
        co_await t;
    };
    run_virtual(main());
}

TEST(TaskName, DefaultNumbersIncreaseWithCreationOrder) {
    // test_task_repr_autogenerated
    auto main = []() -> Coro<> {
        auto t1 = create_task(noop());
        auto t2 = create_task(noop());
        std::smatch m1, m2;
        std::string n1 = t1.get_name(), n2 = t2.get_name();
        EXPECT_NE(n1, n2);
        bool ok1 = std::regex_match(n1, m1, std::regex("Task-([0-9]+)"));
        bool ok2 = std::regex_match(n2, m2, std::regex("Task-([0-9]+)"));
        EXPECT_TRUE(ok1 && ok2) << n1 << " " << n2;
        if (ok1 && ok2) {
            EXPECT_LT(std::stoll(m1[1].str()), std::stoll(m2[1].str()));
        }
        co_await t1;
        co_await t2;
    };
    run_virtual(main());
}

TEST(TaskName, CreateTaskWithAName) {
    // test_bare_create_named_task
    auto main = []() -> Coro<> {
        auto t = create_task(noop(), "No-op");
        EXPECT_EQ(t.get_name(), "No-op");
        std::string name = "from string";
        auto t2 = create_task(noop(), name);
        EXPECT_EQ(t2.get_name(), "from string");
        auto t3 = create_task(noop(), TaskOptions{.name = "from options"});
        EXPECT_EQ(t3.get_name(), "from options");
        co_await t;
        co_await t2;
        co_await t3;
        EXPECT_EQ(t.get_name(), "No-op");  // completion keeps the name
    };
    run_virtual(main());
}

TEST(TaskName, LoopCreateTaskWithAName) {
    EventLoop loop({.virtual_clock = true});
    auto t = loop.create_task(noop(), "loop-task");
    EXPECT_EQ(t.get_name(), "loop-task");
    loop.run_until_complete(t);
    EXPECT_EQ(t.get_name(), "loop-task");
}

TEST(TaskName, SetNameRenamesTheTaskBeforeAndAfterCompletion) {
    auto main = []() -> Coro<> {
        auto t = create_task(noop());
        t.set_name("first");
        EXPECT_EQ(t.get_name(), "first");
        co_await t;
        t.set_name("second");
        EXPECT_EQ(t.get_name(), "second");
    };
    run_virtual(main());
}

namespace {
Coro<std::string> my_name() {
    co_await sleep(0);
    co_return current_task().get_name();
}
Coro<> rename_self(std::string name) {
    current_task().set_name(std::move(name));
    co_return;
}
}  // namespace

TEST(TaskName, ATaskSeesItsOwnNameThroughCurrentTask) {
    auto main = []() -> Coro<> {
        auto t = create_task(my_name(), "me");
        std::string n = co_await t;
        EXPECT_EQ(n, "me");
        auto r = create_task(rename_self("renamed"));
        co_await r;
        EXPECT_EQ(r.get_name(), "renamed");
    };
    run_virtual(main());
}

// =============================================================================================
// Done callbacks
// =============================================================================================

TEST(TaskDoneCallback, CallbackReceivesTheDoneTask) {
    auto main = []() -> Coro<> {
        auto t = create_task(value_after(1.0, 5));
        int seen = -1;
        bool was_done = false;
        t.add_done_callback([&](const Task<int>& task) {
            was_done = task.done();
            seen = task.result();
        });
        co_await t;
        co_await sleep(0);
        EXPECT_TRUE(was_done);
        EXPECT_EQ(seen, 5);
    };
    run_virtual(main());
}

namespace {
Coro<int> call_soon_then_return(std::vector<std::string>* log) {
    get_running_loop().call_soon([log] { log->push_back("call_soon"); });
    co_return 1;
}
}  // namespace

TEST(TaskDoneCallback, CallbacksAreScheduledWithCallSoonSemantics) {
    // Completing the task queues its callbacks behind what is already in the ready queue.
    auto main = []() -> Coro<> {
        std::vector<std::string> log;
        auto t = create_task(call_soon_then_return(&log));
        t.add_done_callback([&] { log.push_back("done callback"); });
        co_await t;
        co_await sleep(0);
        EXPECT_EQ(log, (std::vector<std::string>{"call_soon", "done callback"}));
    };
    run_virtual(main());
}

TEST(TaskDoneCallback, CallbackAddedToADoneTaskRunsSoonNotInline) {
    auto main = []() -> Coro<> {
        auto t = create_task(immediate(1));
        co_await t;
        bool ran = false;
        t.add_done_callback([&] { ran = true; });
        EXPECT_FALSE(ran);
        co_await sleep(0);
        EXPECT_TRUE(ran);
    };
    run_virtual(main());
}

TEST(TaskDoneCallback, CallbacksRunInRegistrationOrder) {
    auto main = []() -> Coro<> {
        std::vector<int> order;
        auto t = create_task(value_after(1.0, 0));
        for (int i = 0; i < 4; ++i) t.add_done_callback([&order, i] { order.push_back(i); });
        co_await t;
        co_await sleep(0);
        EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3}));
        // After completion, new callbacks still run in the order they are added.
        t.add_done_callback([&order] { order.push_back(10); });
        t.add_done_callback([&order] { order.push_back(11); });
        co_await sleep(0);
        EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 10, 11}));
    };
    run_virtual(main());
}

TEST(TaskDoneCallback, CallbackRegisteredBeforeAnAwaiterRunsBeforeTheAwaiterResumes) {
    auto main = []() -> Coro<> {
        std::vector<std::string> log;
        auto t = create_task(value_after(1.0, 0));
        t.add_done_callback([&] { log.push_back("callback"); });
        co_await t;
        log.push_back("awaiter");
        EXPECT_EQ(log, (std::vector<std::string>{"callback", "awaiter"}));
    };
    run_virtual(main());
}

TEST(TaskDoneCallback, RemoveDoneCallbackByIdUnregistersIt) {
    auto main = []() -> Coro<> {
        std::vector<int> order;
        auto t = create_task(value_after(1.0, 0));
        t.add_done_callback([&] { order.push_back(1); });
        CallbackId id = t.add_done_callback([&] { order.push_back(2); });
        t.add_done_callback([&] { order.push_back(3); });
        EXPECT_EQ(t.remove_done_callback(id), 1u);
        EXPECT_EQ(t.remove_done_callback(id), 0u);  // already gone
        co_await t;
        co_await sleep(0);
        EXPECT_EQ(order, (std::vector<int>{1, 3}));
    };
    run_virtual(main());
}

namespace {
int g_fp_calls = 0;
void count_call(const Task<int>&) { ++g_fp_calls; }
void other_call(const Task<int>&) { g_fp_calls += 100; }
}  // namespace

TEST(TaskDoneCallback, RemoveDoneCallbackByFunctionRemovesEveryRegistrationOfIt) {
    g_fp_calls = 0;
    auto main = []() -> Coro<> {
        auto t = create_task(value_after(1.0, 0));
        t.add_done_callback(&count_call);
        t.add_done_callback(&other_call);
        t.add_done_callback(&count_call);
        EXPECT_EQ(t.remove_done_callback(&count_call), 2u);
        EXPECT_EQ(t.remove_done_callback(&count_call), 0u);
        co_await t;
        co_await sleep(0);
    };
    run_virtual(main());
    EXPECT_EQ(g_fp_calls, 100);
}

TEST(TaskDoneCallback, RemovingACallbackAlreadyScheduledReturnsZeroAndItStillRuns) {
    auto main = []() -> Coro<> {
        auto t = create_task(immediate(0));
        co_await t;
        bool ran = false;
        CallbackId id = t.add_done_callback([&] { ran = true; });
        EXPECT_EQ(t.remove_done_callback(id), 0u);
        co_await sleep(0);
        EXPECT_TRUE(ran);
    };
    run_virtual(main());
}

TEST(TaskDoneCallback, AnExceptionInACallbackGoesToTheLoopsExceptionHandler) {
    asyncio_test::HandlerCapture cap;
    auto main = [&]() -> Coro<> {
        cap.install(get_running_loop());
        auto t = create_task(value_after(1.0, 0));
        t.add_done_callback([] { throw std::runtime_error("callback failed"); });
        bool second_ran = false;
        t.add_done_callback([&] { second_ran = true; });
        co_await t;
        co_await sleep(0);
        EXPECT_TRUE(second_ran);
        EXPECT_EQ(cap.contexts.size(), 1u);
        if (!cap.contexts.empty()) {
            EXPECT_EQ(what_of(cap.contexts[0].exception), "callback failed");
        }
        get_running_loop().set_exception_handler(nullptr);
    };
    run_virtual(main());
}

TEST(TaskDoneCallback, CallbackSeesACancelledTaskAsCancelled) {
    auto main = []() -> Coro<> {
        auto t = create_task(sleep_for(10));
        bool saw_cancelled = false;
        std::string msg;
        t.add_done_callback([&](const Task<>& task) {
            saw_cancelled = task.cancelled();
            msg = cancelled_message_from([&] { task.result(); });
        });
        co_await sleep(0);
        t.cancel("bye");
        co_await cancel_message_of(t);
        co_await sleep(0);
        EXPECT_TRUE(saw_cancelled);
        EXPECT_EQ(msg, "bye");
    };
    run_virtual(main());
}

TEST(TaskDoneCallback, CallbacksRunOutsideAnyTask) {
    auto main = []() -> Coro<> {
        auto t = create_task(immediate(0));
        bool called = false;
        bool no_current_task = false;
        t.add_done_callback([&] {
            called = true;
            no_current_task = !current_task();
        });
        co_await t;
        co_await sleep(0);
        EXPECT_TRUE(called);
        EXPECT_TRUE(no_current_task);
    };
    run_virtual(main());
}

// =============================================================================================
// Cancellation
// =============================================================================================

TEST(TaskCancel, CancelBeforeStartMeansTheBodyNeverRuns) {
    auto main = []() -> Coro<> {
        bool started = false;
        auto t = create_task(set_flag(&started));
        EXPECT_TRUE(t.cancel());
        EXPECT_FALSE(t.done());  // takes effect when the task's first step runs
        std::string msg = co_await cancel_message_of(t);
        EXPECT_EQ(msg, "");
        EXPECT_FALSE(started);
        EXPECT_TRUE(t.cancelled());
        EXPECT_FALSE(t.cancel());
    };
    run_virtual(main());
}

TEST(TaskCancel, CancelBeforeStartCarriesTheMessage) {
    // test_cancel_with_message_before_starting_task
    auto main = []() -> Coro<> {
        auto t = create_task(sleep_for(10));
        EXPECT_TRUE(t.cancel("my message"));
        std::string msg = co_await cancel_message_of(t);
        EXPECT_EQ(msg, "my message");
        EXPECT_EQ(cancelled_message_from([&] { (void)t.exception(); }), "my message");
        EXPECT_DOUBLE_EQ(get_running_loop().time(), 0.0);
    };
    run_virtual(main());
}

TEST(TaskCancel, CancelScheduledWithCallSoonCancelsASleepingTask) {
    // test_cancel
    EventLoop loop({.virtual_clock = true});
    const double t0 = loop.time();
    Task<int> t = loop.create_task(value_after(10.0, 12));
    loop.call_soon([t]() mutable { t.cancel(); });
    EXPECT_THROW(loop.run_until_complete(t), CancelledError);
    EXPECT_TRUE(t.done());
    EXPECT_TRUE(t.cancelled());
    EXPECT_FALSE(t.cancel());
    EXPECT_DOUBLE_EQ(loop.time() - t0, 0.0);  // the 10 s sleep never ran out
}

TEST(TaskCancel, CancellingASleepingTaskWakesItAtOnce) {
    auto main = []() -> Coro<> {
        auto& loop = get_running_loop();
        const double t0 = loop.time();
        auto t = create_task(value_after(10.0, 1));
        co_await sleep(3.0);
        EXPECT_TRUE(t.cancel());
        co_await cancel_message_of(t);
        EXPECT_DOUBLE_EQ(loop.time() - t0, 3.0);
        EXPECT_TRUE(t.cancelled());
    };
    run_virtual(main());
}

TEST(TaskCancel, CancellingASleepCancelsItsTimer) {
    // test_sleep_cancel: the sleep's timer handle is cancelled.
    auto main = []() -> Coro<> {
        auto& loop = get_running_loop();
        auto t = create_task(sleep_for(10.0));
        co_await sleep(0);
        EXPECT_EQ(asyncio_test::timer_count(loop), 1u);
        t.cancel();
        co_await sleep(0);
        EXPECT_EQ(asyncio_test::timer_count(loop), 0u);
        EXPECT_TRUE(t.cancelled());
    };
    run_virtual(main());
}

namespace {
Coro<std::string> cancel_sleeper_later() {
    auto sleeper = create_task(sleep_for(5000));
    get_running_loop().call_later(0.1, [sleeper]() mutable { sleeper.cancel(); });
    try {
        co_await sleeper;
    } catch (const CancelledError&) {
        co_return "cancelled";
    }
    co_return "slept in";
}
}  // namespace

TEST(TaskCancel, AwaiterOfASleeperCancelledByCallLaterSeesCancelledError) {
    // test_task_cancel_sleeping_task
    auto main = []() -> Coro<> {
        auto& loop = get_running_loop();
        const double t0 = loop.time();
        std::string r = co_await cancel_sleeper_later();
        EXPECT_EQ(r, "cancelled");
        EXPECT_DOUBLE_EQ(loop.time() - t0, 0.1);
    };
    run_virtual(main());
}

namespace {
Coro<int> two_yields(int* steps) {
    co_await sleep(0);
    ++*steps;
    co_await sleep(0);
    ++*steps;
    co_return 12;
}
}  // namespace

TEST(TaskCancel, CancelATaskThatIsYieldingWithSleepZero) {
    // test_cancel_yield
    auto main = []() -> Coro<> {
        int steps = 0;
        auto t = create_task(two_yields(&steps));
        co_await sleep(0);  // t has started and is parked in its first sleep(0)
        EXPECT_TRUE(t.cancel());
        co_await cancel_message_of(t);
        EXPECT_EQ(steps, 0);
        EXPECT_TRUE(t.done());
        EXPECT_TRUE(t.cancelled());
        EXPECT_FALSE(t.cancel());
    };
    run_virtual(main());
}

TEST(TaskCancel, CancelWhileAwaitingAFutureCancelsTheFutureAtOnce) {
    // test_task_cancel_waiter_future
    auto main = []() -> Coro<> {
        Future<int> f;
        auto t = create_task(await_fut(f));
        co_await sleep(0);
        EXPECT_TRUE(t.cancel("stop"));
        EXPECT_TRUE(f.cancelled());  // synchronously
        EXPECT_FALSE(t.done());
        EXPECT_EQ(cancelled_message_from([&] { (void)f.result(); }), "stop");
        std::string msg = co_await cancel_message_of(t);
        EXPECT_EQ(msg, "stop");
        EXPECT_TRUE(t.cancelled());
    };
    run_virtual(main());
}

TEST(TaskCancel, CancellingTheAwaitedFutureCancelsTheTask) {
    // test_cancel_inner_future
    auto main = []() -> Coro<> {
        Future<int> f;
        auto t = create_task(await_fut(f));
        co_await sleep(0);
        f.cancel();
        co_await cancel_message_of(t);
        EXPECT_TRUE(f.cancelled());
        EXPECT_TRUE(t.cancelled());
    };
    run_virtual(main());
}

TEST(TaskCancel, CancelBothTheTaskAndItsInnerFuture) {
    // test_cancel_both_task_and_inner_future
    auto main = []() -> Coro<> {
        Future<int> f;
        auto t = create_task(await_fut(f));
        co_await sleep(0);
        f.cancel();
        EXPECT_TRUE(t.cancel());
        co_await cancel_message_of(t);
        EXPECT_TRUE(t.done());
        EXPECT_TRUE(f.cancelled());
        EXPECT_TRUE(t.cancelled());
    };
    run_virtual(main());
}

namespace {
Coro<int> catch_cancel_on_second(Future<> f1, Future<> f2) {
    co_await f1;
    try {
        co_await f2;
    } catch (const CancelledError&) {
        co_return 42;
    }
    co_return 0;
}
Coro<int> ignore_cancel_on_second(Future<> f1, Future<> f2, Future<int> f3) {
    co_await f1;
    try {
        co_await f2;
    } catch (const CancelledError&) {
    }
    int r = co_await f3;
    co_return r;
}
}  // namespace

TEST(TaskCancel, TaskThatCatchesCancellationAndReturnsIsNotCancelled) {
    // test_cancel_task_catching
    auto main = []() -> Coro<> {
        Future<> f1, f2;
        auto t = create_task(catch_cancel_on_second(f1, f2));
        co_await sleep(0);
        f1.set_result();
        co_await sleep(0);  // t now waits on f2
        EXPECT_TRUE(t.cancel());
        EXPECT_TRUE(f2.cancelled());
        int r = co_await t;
        EXPECT_EQ(r, 42);
        EXPECT_FALSE(t.cancelled());
        EXPECT_EQ(t.cancelling(), 1);  // nobody uncancelled it
    };
    run_virtual(main());
}

TEST(TaskCancel, TaskThatIgnoresCancellationKeepsRunning) {
    // test_cancel_task_ignoring
    auto main = []() -> Coro<> {
        Future<> f1, f2;
        Future<int> f3;
        auto t = create_task(ignore_cancel_on_second(f1, f2, f3));
        co_await sleep(0);
        f1.set_result();
        co_await sleep(0);
        EXPECT_TRUE(t.cancel());
        EXPECT_TRUE(f2.cancelled());
        co_await sleep(0);  // t swallowed it and now waits on f3
        EXPECT_FALSE(t.done());
        f3.set_result(42);
        int r = co_await t;
        EXPECT_EQ(r, 42);
        EXPECT_FALSE(f3.cancelled());
        EXPECT_FALSE(t.cancelled());
    };
    run_virtual(main());
}

namespace {
Coro<int> cancel_self_then_sleep(int* after) {
    EXPECT_TRUE(current_task().cancel());
    co_await sleep(100);  // cancelled immediately
    ++*after;
    co_return 12;
}
Coro<int> cancel_self_then_return() {
    EXPECT_TRUE(current_task().cancel("self"));
    co_return 12;
}
}  // namespace

TEST(TaskCancel, CancelFromInsideItselfCancelsTheNextAwait) {
    // test_cancel_current_task
    auto main = []() -> Coro<> {
        auto& loop = get_running_loop();
        const double t0 = loop.time();
        int after = 0;
        auto t = create_task(cancel_self_then_sleep(&after));
        co_await cancel_message_of(t);
        EXPECT_EQ(after, 0);
        EXPECT_DOUBLE_EQ(loop.time() - t0, 0.0);  // the 100 s sleep was cancelled at once
        EXPECT_TRUE(t.cancelled());
        EXPECT_FALSE(t.cancel());
        EXPECT_EQ(asyncio_test::timer_count(loop), 0u);
    };
    run_virtual(main());
}

TEST(TaskCancel, CancelFromInsideItselfThenReturningEndsCancelled) {
    // test_cancel_at_end
    auto main = []() -> Coro<> {
        auto t = create_task(cancel_self_then_return());
        std::string msg = co_await cancel_message_of(t);
        EXPECT_EQ(msg, "self");
        EXPECT_TRUE(t.done());
        EXPECT_TRUE(t.cancelled());
        EXPECT_FALSE(t.cancel());
    };
    run_virtual(main());
}

namespace {
Coro<> cancel_self_then_await_nested(Future<> fut, Task<>* nested_out) {
    auto nested = create_task(await_void_fut(fut));
    *nested_out = nested;
    co_await sleep(0);
    current_task().cancel();
    co_await nested;  // must cancel `nested` immediately
}
}  // namespace

TEST(TaskCancel, SelfCancelThenAwaitingAnotherTaskCancelsThatTask) {
    // test_cancel_awaited_task (bpo-34872)
    auto main = []() -> Coro<> {
        Future<> fut;
        Task<> nested;
        auto t = create_task(cancel_self_then_await_nested(fut, &nested));
        co_await cancel_message_of(t);
        EXPECT_TRUE(t.cancelled());
        EXPECT_TRUE(static_cast<bool>(nested));
        if (nested) {
            EXPECT_TRUE(nested.cancelled());
        }
        EXPECT_TRUE(fut.cancelled());
    };
    run_virtual(main());
}

TEST(TaskCancel, CancelWhileAwaitingAnotherTaskCancelsThatTaskWithTheMessage) {
    auto main = []() -> Coro<> {
        auto inner = create_task(sleep_for(100));
        auto outer = create_task(await_void_task(inner));
        co_await sleep(0);
        EXPECT_TRUE(outer.cancel("m"));
        EXPECT_EQ(outer.cancelling(), 1);
        EXPECT_EQ(inner.cancelling(), 1);  // outer.cancel() called inner.cancel()
        std::string msg = co_await cancel_message_of(outer);
        EXPECT_EQ(msg, "m");
        EXPECT_TRUE(inner.cancelled());
        EXPECT_TRUE(outer.cancelled());
        EXPECT_EQ(cancelled_message_from([&] { inner.result(); }), "m");
        EXPECT_DOUBLE_EQ(get_running_loop().time(), 0.0);
    };
    run_virtual(main());
}

namespace {
Coro<int> sleep_catch_return(double delay, int v) {
    try {
        co_await sleep(delay);
    } catch (const CancelledError&) {
        co_return v;
    }
    co_return -1;
}
}  // namespace

TEST(TaskCancel, AwaiterContinuesWhenTheAwaitedTaskSwallowsTheCancellation) {
    // Task.cancel() forwards to the awaited task; if that one catches it and returns, the
    // awaiter gets the value and is not cancelled (Python: _must_cancel is not set).
    auto main = []() -> Coro<> {
        auto inner = create_task(sleep_catch_return(100, 5));
        auto outer = create_task(await_task(inner));
        co_await sleep(0);
        EXPECT_TRUE(outer.cancel());
        int r = co_await outer;
        EXPECT_EQ(r, 5);
        EXPECT_FALSE(outer.cancelled());
        EXPECT_EQ(outer.cancelling(), 1);
        EXPECT_FALSE(inner.cancelled());
        EXPECT_EQ(inner.result(), 5);
    };
    run_virtual(main());
}

namespace {
Coro<> inner_waits(Future<> waiter, int* proof) {
    try {
        co_await waiter;
    } catch (const CancelledError&) {
        *proof += 1;
        throw;
    }
    ADD_FAILURE() << "got past the waiter in inner_waits()";
}
Coro<> outer_calls_inner(Future<> waiter, int* proof) {
    try {
        co_await inner_waits(waiter, proof);
    } catch (const CancelledError&) {
        *proof += 100;  // expected path
        co_return;
    }
    *proof += 10;
}
}  // namespace

TEST(TaskCancel, CancellationPassesThroughNestedCoroutines) {
    // test_yield_future_passes_cancel: cancelling outer() cancels inner() cancels the waiter.
    auto main = []() -> Coro<> {
        Future<> waiter;
        int proof = 0;
        auto t = create_task(outer_calls_inner(waiter, &proof));
        co_await sleep(0);
        EXPECT_TRUE(t.cancel());
        co_await t;  // outer caught it: the task completes normally
        EXPECT_EQ(proof, 101);
        EXPECT_TRUE(waiter.cancelled());
        EXPECT_FALSE(t.cancelled());
    };
    run_virtual(main());
}

TEST(TaskCancel, CancelReturnsFalseOnceTheTaskIsDone) {
    auto main = []() -> Coro<> {
        auto ok = create_task(immediate(1));
        auto bad = create_task(fail_now("x"));
        auto gone = create_task(sleep_for(1));
        co_await sleep(0);
        EXPECT_TRUE(gone.cancel());
        co_await cancel_message_of(gone);
        EXPECT_TRUE(ok.done());
        EXPECT_TRUE(bad.done());
        EXPECT_FALSE(ok.cancel());
        EXPECT_FALSE(bad.cancel());
        EXPECT_FALSE(gone.cancel());
        EXPECT_FALSE(ok.cancelled());
        EXPECT_FALSE(bad.cancelled());
        EXPECT_EQ(ok.result(), 1);
        EXPECT_EQ(ok.cancelling(), 0);  // a refused cancel is not counted
        EXPECT_THROW((void)bad.result(), Boom);
    };
    run_virtual(main());
}

TEST(TaskCancel, EveryCancelWhilePendingReturnsTrueAndIsCounted) {
    // test_cancelling
    EventLoop loop({.virtual_clock = true});
    auto t = loop.create_task(sleep_for(10));
    EXPECT_EQ(t.cancelling(), 0);
    EXPECT_TRUE(t.cancel());
    EXPECT_EQ(t.cancelling(), 1);
    EXPECT_TRUE(t.cancel());
    EXPECT_EQ(t.cancelling(), 2);
    EXPECT_THROW(loop.run_until_complete(t), CancelledError);
    EXPECT_TRUE(t.cancelled());
    EXPECT_EQ(t.cancelling(), 2);
}

TEST(TaskCancel, RepeatedCancelOfASleepingTaskCompletesItOnce) {
    auto main = []() -> Coro<> {
        auto t = create_task(sleep_for(10));
        int callbacks = 0;
        t.add_done_callback([&] { ++callbacks; });
        co_await sleep(0);
        EXPECT_TRUE(t.cancel("one"));
        EXPECT_TRUE(t.cancel("two"));
        EXPECT_TRUE(t.cancel("three"));
        EXPECT_EQ(t.cancelling(), 3);
        co_await cancel_message_of(t);
        co_await sleep(0);
        EXPECT_TRUE(t.cancelled());
        EXPECT_EQ(callbacks, 1);
        EXPECT_FALSE(t.cancel());
        EXPECT_EQ(t.cancelling(), 3);
    };
    run_virtual(main());
}

TEST(TaskCancel, RepeatedCancelDeliversTheFirstMessage) {
    // Python: the first cancel("one") cancels the sleep's future with "one"; later cancels
    // find that future done and only set _must_cancel. When the task wakes, __step gets the
    // future's CancelledError("one") and, since it already is a CancelledError, throws it
    // as is: the coroutine (and the task) see "one", not the last message.
    auto main = []() -> Coro<> {
        auto t = create_task(sleep_for(10));
        co_await sleep(0);
        EXPECT_TRUE(t.cancel("one"));
        EXPECT_TRUE(t.cancel("two"));
        EXPECT_TRUE(t.cancel("three"));
        std::string msg = co_await cancel_message_of(t);
        EXPECT_EQ(msg, "one");
    };
    run_virtual(main());
}

TEST(TaskCancel, CancelAfterTheAwaitedFutureWasCancelledDeliversTheFuturesError) {
    // Python: f.cancel("from future") then t.cancel("from task"): t._fut_waiter (f) is done,
    // so t only sets _must_cancel; t wakes with f's CancelledError("from future"), which
    // __step keeps because it is already a CancelledError.
    auto main = []() -> Coro<> {
        Future<int> f;
        auto t = create_task(await_fut(f));
        co_await sleep(0);
        f.cancel("from future");
        EXPECT_TRUE(t.cancel("from task"));
        std::string msg = co_await cancel_message_of(t);
        EXPECT_EQ(msg, "from future");
        EXPECT_TRUE(t.cancelled());
    };
    run_virtual(main());
}

TEST(TaskCancel, CancelAfterTheAwaitedFutureCompletedDeliversTheTasksMessage) {
    // The future completed normally, so the CancelledError is made from the task's message.
    auto main = []() -> Coro<> {
        Future<int> f;
        auto t = create_task(await_fut(f));
        co_await sleep(0);
        f.set_result(1);
        EXPECT_TRUE(t.cancel("late"));
        std::string msg = co_await cancel_message_of(t);
        EXPECT_EQ(msg, "late");
    };
    run_virtual(main());
}

namespace {
Coro<> sleep_uncancel_sleep(int* remaining) {
    try {
        co_await sleep(10);
    } catch (const CancelledError&) {
        *remaining = current_task().uncancel();
    }
    co_await sleep(10);
}
}  // namespace

TEST(TaskCancel, UncancelLetsATaskCarryOnAfterHandlingACancel) {
    // test_uncancel
    auto main = []() -> Coro<> {
        int remaining = -1;
        auto t = create_task(sleep_uncancel_sleep(&remaining));
        co_await sleep(0.01);
        EXPECT_TRUE(t.cancel());  // cancels the first sleep
        EXPECT_EQ(t.cancelling(), 1);
        co_await sleep(0.01);
        EXPECT_EQ(remaining, 0);
        EXPECT_EQ(t.cancelling(), 0);
        EXPECT_FALSE(t.done());
        EXPECT_TRUE(t.cancel());  // cancels the second sleep
        co_await cancel_message_of(t);
        EXPECT_TRUE(t.cancelled());
        EXPECT_DOUBLE_EQ(get_running_loop().time(), 0.02);
    };
    run_virtual(main());
}

TEST(TaskCancel, UncancelNeverGoesBelowZero) {
    auto main = []() -> Coro<> {
        auto t = create_task(immediate(3));
        EXPECT_EQ(t.uncancel(), 0);
        EXPECT_EQ(t.cancelling(), 0);
        int v = co_await t;
        EXPECT_EQ(v, 3);
        EXPECT_FALSE(t.cancelled());
    };
    run_virtual(main());
}

TEST(TaskCancel, UncancelOfOneOfTwoRequestsStillCancels) {
    auto main = []() -> Coro<> {
        auto t = create_task(immediate(3));
        EXPECT_TRUE(t.cancel());
        EXPECT_TRUE(t.cancel());
        EXPECT_EQ(t.uncancel(), 1);
        co_await cancel_message_of(t);
        EXPECT_TRUE(t.cancelled());
    };
    run_virtual(main());
}

TEST(TaskCancel, UncancelToZeroWithdrawsACancelNotYetDelivered) {
    // Python 3.13: uncancel() reaching zero clears the pending cancel (_must_cancel).
    auto main = []() -> Coro<> {
        bool started = false;
        auto t = create_task(set_flag(&started));
        EXPECT_TRUE(t.cancel());
        EXPECT_EQ(t.uncancel(), 0);
        co_await t;
        EXPECT_TRUE(started);
        EXPECT_FALSE(t.cancelled());
    };
    run_virtual(main());
}

TEST(TaskCancel, CancelWithoutAMessageGivesAnEmptyMessage) {
    auto main = []() -> Coro<> {
        auto t = create_task(sleep_for(10));
        co_await sleep(0);
        t.cancel();
        std::string msg = co_await cancel_message_of(t);
        EXPECT_EQ(msg, "");
    };
    run_virtual(main());
}

namespace {
Coro<> convert_cancel_of(Task<> inner, std::string* seen) {
    try {
        co_await inner;
    } catch (const CancelledError& e) {
        *seen = e.message();
        throw std::invalid_argument("cancelled");
    }
}
}  // namespace

TEST(TaskCancel, CatchingCancellationAndThrowingAnotherExceptionFailsTheTask) {
    // test_cancellation_exception_context / test_baseexception_during_cancel
    auto main = []() -> Coro<> {
        std::string seen;
        auto inner = create_task(sleep_for(10));
        auto outer = create_task(convert_cancel_of(inner, &seen));
        co_await sleep(0);
        get_running_loop().call_soon([inner]() mutable { inner.cancel("msg"); });
        try {
            co_await outer;
            ADD_FAILURE() << "expected std::invalid_argument";
        } catch (const std::invalid_argument& e) {
            EXPECT_STREQ(e.what(), "cancelled");
        }
        EXPECT_EQ(seen, "msg");
        EXPECT_TRUE(inner.cancelled());
        EXPECT_TRUE(outer.done());
        EXPECT_FALSE(outer.cancelled());
        EXPECT_EQ(what_of(outer.exception()), "cancelled");
    };
    run_virtual(main());
}

namespace {
Coro<> catch_std_exceptions(bool* swallowed) {
    try {
        co_await sleep(10);
    } catch (const std::exception&) {
        *swallowed = true;
    }
}
}  // namespace

TEST(TaskCancel, CatchingStdExceptionDoesNotSwallowCancellation) {
    auto main = []() -> Coro<> {
        bool swallowed = false;
        auto t = create_task(catch_std_exceptions(&swallowed));
        co_await sleep(1);
        t.cancel();
        co_await cancel_message_of(t);
        EXPECT_FALSE(swallowed);
        EXPECT_TRUE(t.cancelled());
    };
    run_virtual(main());
}

namespace {
Coro<> sleep_then_mark(double delay, bool* after) {
    co_await sleep(delay);
    *after = true;
}
Coro<int> await_fut_then_mark(Future<int> f, bool* after) {
    int v = co_await f;
    *after = true;
    co_return v;
}
}  // namespace

TEST(TaskCancel, CancelAfterTheSleepTimerFiredButBeforeTheTaskResumedStillCancels) {
    auto main = []() -> Coro<> {
        bool after = false;
        auto t = create_task(sleep_then_mark(1.0, &after));
        co_await sleep(1.0);  // our timer was armed first: we run first at t=1, t's step is queued
        EXPECT_FALSE(t.done());
        EXPECT_TRUE(t.cancel());
        co_await cancel_message_of(t);
        EXPECT_FALSE(after);
        EXPECT_TRUE(t.cancelled());
    };
    run_virtual(main());
}

TEST(TaskCancel, CancelAfterTheAwaitedFutureCompletedButBeforeTheTaskResumedStillCancels) {
    auto main = []() -> Coro<> {
        bool after = false;
        Future<int> f;
        auto t = create_task(await_fut_then_mark(f, &after));
        co_await sleep(0);
        f.set_result(1);
        EXPECT_TRUE(t.cancel());  // the future is done: the task itself must cancel
        co_await cancel_message_of(t);
        EXPECT_FALSE(after);
        EXPECT_TRUE(t.cancelled());
        EXPECT_FALSE(f.cancelled());
        EXPECT_EQ(f.result(), 1);
    };
    run_virtual(main());
}

namespace {
Coro<> count_ticks(int* x, EventLoop* loop) {
    while (*x < 10) {
        co_await sleep(0.1);
        ++*x;
        if (*x == 2) loop->stop();
    }
}
}  // namespace

TEST(TaskCancel, StopDuringRunUntilCompleteLeavesTheTaskPendingUntilCancelled) {
    // test_stop_while_run_in_complete
    EventLoop loop({.virtual_clock = true});
    int x = 0;
    auto t = loop.create_task(count_ticks(&x, &loop));
    try {
        loop.run_until_complete(t);
        ADD_FAILURE() << "expected RuntimeError";
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "Event loop stopped before Future completed.");
    }
    EXPECT_FALSE(t.done());
    EXPECT_EQ(x, 2);
    EXPECT_DOUBLE_EQ(loop.time(), 0.2);

    EXPECT_TRUE(t.cancel());
    EXPECT_THROW(loop.run_until_complete(t), CancelledError);
    EXPECT_EQ(x, 2);
    EXPECT_DOUBLE_EQ(loop.time(), 0.2);
}

TEST(TaskCancel, ReprSaysCancellingWhileACancelIsRequested) {
    // Python 3.12's _task_repr_info: "cancelling" whenever cancelling() > 0 and not done,
    // including a task whose sleep was already cancelled (test_uncancel's repr checks).
    auto main = []() -> Coro<> {
        int remaining = -1;
        auto t = create_task(sleep_uncancel_sleep(&remaining));
        EXPECT_EQ(t.repr().find("cancelling"), std::string::npos) << t.repr();
        co_await sleep(0.01);
        t.cancel();
        EXPECT_NE(t.repr().find("cancelling"), std::string::npos) << t.repr();
        co_await sleep(0.01);
        EXPECT_EQ(remaining, 0);
        EXPECT_EQ(t.repr().find("cancelling"), std::string::npos) << t.repr();  // after uncancel()
        t.cancel();
        co_await cancel_message_of(t);
        EXPECT_NE(t.repr().find("cancelled"), std::string::npos) << t.repr();
    };
    run_virtual(main());
}

TEST(TaskCancel, ReprSaysCancellingForATaskCancelledBeforeStart) {
    auto main = []() -> Coro<> {
        auto t = create_task(noop(), "TestTask");
        t.cancel();
        EXPECT_NE(t.repr().find("cancelling"), std::string::npos) << t.repr();
        EXPECT_NE(t.repr().find("TestTask"), std::string::npos) << t.repr();
        co_await cancel_message_of(t);
        EXPECT_NE(t.repr().find("cancelled"), std::string::npos) << t.repr();
    };
    run_virtual(main());
}

// =============================================================================================
// current_task() and all_tasks()
// =============================================================================================

namespace {
Coro<> record_current(AnyTask* out) {
    *out = current_task();
    co_return;
}
}  // namespace

TEST(CurrentTask, InsideATaskItIsThatTask) {
    // test_current_task
    auto main = []() -> Coro<> {
        AnyTask seen;
        auto t = create_task(record_current(&seen));
        co_await t;
        EXPECT_TRUE(static_cast<bool>(seen));
        EXPECT_TRUE(seen == t);
        AnyTask me = current_task();
        EXPECT_TRUE(static_cast<bool>(me));
        EXPECT_FALSE(me == t);
    };
    run_virtual(main());
}

TEST(CurrentTask, OutsideARunningLoopThrowsRuntimeError) {
    // test_current_task_no_running_loop_implicit
    EXPECT_THROW((void)current_task(), RuntimeError);
}

TEST(CurrentTask, InACallSoonCallbackThereIsNoCurrentTask) {
    auto main = []() -> Coro<> {
        bool called = false;
        bool empty = false;
        get_running_loop().call_soon([&] {
            called = true;
            empty = !current_task();
        });
        co_await sleep(0);
        EXPECT_TRUE(called);
        EXPECT_TRUE(empty);
    };
    run_virtual(main());
}

TEST(CurrentTask, AfterRunUntilCompleteThereIsNoCurrentTask) {
    EventLoop loop({.virtual_clock = true});
    AnyTask seen;
    auto t = loop.create_task(record_current(&seen));
    loop.run_until_complete(t);
    EXPECT_TRUE(seen == t);
    bool empty = false;
    loop.call_soon([&] {
        empty = !current_task();
        loop.stop();
    });
    loop.run_forever();
    EXPECT_TRUE(empty);
}

namespace {
Coro<> interleave1(Future<> f1, Future<> f2, std::vector<AnyTask>* seen) {
    seen->push_back(current_task());
    co_await f1;
    seen->push_back(current_task());
    f2.set_result();
}
Coro<> interleave2(Future<> f1, Future<> f2, std::vector<AnyTask>* seen) {
    seen->push_back(current_task());
    f1.set_result();
    co_await f2;
    seen->push_back(current_task());
}
}  // namespace

TEST(CurrentTask, FollowsInterleavingTasks) {
    // test_current_task_with_interleaving_tasks
    auto main = []() -> Coro<> {
        Future<> f1, f2;
        std::vector<AnyTask> seen1, seen2;
        auto t1 = create_task(interleave1(f1, f2, &seen1));
        auto t2 = create_task(interleave2(f1, f2, &seen2));
        AnyTask me = current_task();
        co_await t1;
        co_await t2;
        EXPECT_EQ(seen1.size(), 2u);
        EXPECT_EQ(seen2.size(), 2u);
        for (auto& s : seen1) EXPECT_TRUE(s == t1);
        for (auto& s : seen2) EXPECT_TRUE(s == t2);
        EXPECT_TRUE(current_task() == me);
    };
    run_virtual(main());
}

namespace {
Coro<std::size_t> nested_probe(AnyTask* current, bool* callback_ran) {
    *current = current_task();
    EXPECT_FALSE(*callback_ran);
    co_return all_tasks().size();
}
}  // namespace

TEST(CurrentTask, ANestedCoroutineRunsInlineInTheAwaitingTask) {
    // co_await of a Coro makes no new task and does not go through the loop.
    auto main = []() -> Coro<> {
        AnyTask me = current_task();
        std::size_t before = all_tasks().size();
        bool callback_ran = false;
        get_running_loop().call_soon([&] { callback_ran = true; });
        AnyTask inside;
        std::size_t during = co_await nested_probe(&inside, &callback_ran);
        EXPECT_FALSE(callback_ran);
        EXPECT_TRUE(inside == me);
        EXPECT_EQ(during, before);
        co_await sleep(0);
        EXPECT_TRUE(callback_ran);
    };
    run_virtual(main());
}

TEST(AllTasks, HoldsTheCurrentTaskAndEveryPendingTask) {
    auto main = []() -> Coro<> {
        auto all = all_tasks();
        EXPECT_EQ(all.size(), 1u);
        EXPECT_TRUE(contains(all, current_task()));
        auto t1 = create_task(sleep_for(1));
        auto t2 = create_task(sleep_for(2));
        all = all_tasks();  // not-yet-started tasks count
        EXPECT_EQ(all.size(), 3u);
        EXPECT_TRUE(contains(all, t1));
        EXPECT_TRUE(contains(all, t2));
        co_await t1;
        all = all_tasks();
        EXPECT_EQ(all.size(), 2u);
        EXPECT_FALSE(contains(all, t1));
        EXPECT_TRUE(contains(all, t2));
        co_await t2;
        EXPECT_EQ(all_tasks().size(), 1u);
    };
    run_virtual(main());
}

TEST(AllTasks, ExcludesFailedAndCancelledTasks) {
    auto main = []() -> Coro<> {
        auto bad = create_task(fail_now("x"));
        auto gone = create_task(sleep_for(5));
        gone.cancel();
        co_await sleep(0);
        EXPECT_TRUE(bad.done());
        EXPECT_TRUE(gone.cancelled());
        auto all = all_tasks();
        EXPECT_EQ(all.size(), 1u);
        EXPECT_FALSE(contains(all, bad));
        EXPECT_FALSE(contains(all, gone));
        (void)bad.exception();
    };
    run_virtual(main());
}

TEST(AllTasks, OfALoopThatIsNotRunning) {
    EventLoop loop({.virtual_clock = true});
    EXPECT_TRUE(all_tasks(loop).empty());
    auto t = loop.create_task(sleep_for(1));
    auto all = all_tasks(loop);
    EXPECT_EQ(all.size(), 1u);
    EXPECT_TRUE(contains(all, t));
    loop.run_until_complete(t);
    EXPECT_TRUE(all_tasks(loop).empty());
}

TEST(AllTasks, WithoutARunningLoopThrowsRuntimeError) { EXPECT_THROW((void)all_tasks(), RuntimeError); }

// =============================================================================================
// sleep()
// =============================================================================================

namespace {
Coro<int> sleep_in_halves(double dt, int v) {
    co_await sleep(dt / 2);
    co_await sleep(dt / 2);
    co_return v;
}
}  // namespace

TEST(TaskSleep, SleepAdvancesTheVirtualClockExactly) {
    // test_sleep
    EventLoop loop({.virtual_clock = true});
    const double t0 = loop.time();
    auto t = loop.create_task(sleep_in_halves(0.1, 7));
    EXPECT_EQ(loop.run_until_complete(t), 7);
    EXPECT_TRUE(t.done());
    EXPECT_DOUBLE_EQ(loop.time() - t0, 0.1);
}

TEST(TaskSleep, SleepAcceptsChronoDurations) {
    auto main = []() -> Coro<> {
        auto& loop = get_running_loop();
        const double t0 = loop.time();
        co_await sleep(500ms);
        EXPECT_DOUBLE_EQ(loop.time() - t0, 0.5);
        co_await sleep(2s);
        EXPECT_DOUBLE_EQ(loop.time() - t0, 2.5);
        co_await sleep(std::chrono::microseconds(250000));
        EXPECT_DOUBLE_EQ(loop.time() - t0, 2.75);
        co_await sleep(std::chrono::minutes(1));
        EXPECT_DOUBLE_EQ(loop.time() - t0, 62.75);
        co_await sleep(std::chrono::duration<double>(0.25));
        EXPECT_DOUBLE_EQ(loop.time() - t0, 63.0);
        co_await sleep(1);  // an int is seconds too
        EXPECT_DOUBLE_EQ(loop.time() - t0, 64.0);
    };
    run_virtual(main());
}

TEST(TaskSleep, SleepZeroLetsCallbacksScheduledBeforeItRun) {
    // test_sleep_zero
    auto main = []() -> Coro<> {
        int result = 0;
        get_running_loop().call_soon([&] { result += 1; });
        EXPECT_EQ(result, 0);
        co_await sleep(0);
        EXPECT_EQ(result, 1);
    };
    run_virtual(main());
}

TEST(TaskSleep, SleepZeroDoesNotAdvanceTheClockOrArmATimer) {
    auto main = []() -> Coro<> {
        auto& loop = get_running_loop();
        const double t0 = loop.time();
        get_running_loop().call_soon([&loop] { EXPECT_EQ(asyncio_test::timer_count(loop), 0u); });
        co_await sleep(0);
        co_await sleep(0.0);
        co_await sleep(0ms);
        EXPECT_DOUBLE_EQ(loop.time(), t0);
    };
    run_virtual(main());
}

TEST(TaskSleep, NegativeSleepJustYields) {
    auto main = []() -> Coro<> {
        auto& loop = get_running_loop();
        const double t0 = loop.time();
        bool ran = false;
        loop.call_soon([&] { ran = true; });
        co_await sleep(-1.0);
        EXPECT_TRUE(ran);
        co_await sleep(-5s);
        EXPECT_DOUBLE_EQ(loop.time(), t0);
    };
    run_virtual(main());
}

namespace {
Coro<> ping(std::vector<std::string>* log, std::string who, int n) {
    for (int i = 0; i < n; ++i) {
        log->push_back(who + std::to_string(i));
        co_await sleep(0);
    }
}
}  // namespace

TEST(TaskSleep, SleepZeroInterleavesTasksRoundRobin) {
    auto main = []() -> Coro<> {
        std::vector<std::string> log;
        auto a = create_task(ping(&log, "a", 3));
        auto b = create_task(ping(&log, "b", 3));
        co_await a;
        co_await b;
        EXPECT_EQ(log, (std::vector<std::string>{"a0", "b0", "a1", "b1", "a2", "b2"}));
    };
    run_virtual(main());
}

namespace {
Coro<> sleep_and_log(double delay, int id, std::vector<std::pair<int, double>>* log) {
    co_await sleep(delay);
    log->emplace_back(id, get_running_loop().time());
}
}  // namespace

TEST(TaskSleep, ConcurrentSleepsOverlap) {
    auto main = []() -> Coro<> {
        auto& loop = get_running_loop();
        const double t0 = loop.time();
        std::vector<std::pair<int, double>> log;
        auto a = create_task(sleep_and_log(1.0, 1, &log));
        auto b = create_task(sleep_and_log(2.0, 2, &log));
        auto c = create_task(sleep_and_log(3.0, 3, &log));
        co_await a;
        co_await b;
        co_await c;
        EXPECT_DOUBLE_EQ(loop.time() - t0, 3.0);  // not 6
    };
    run_virtual(main());
}

TEST(TaskSleep, SleepersWakeInDeadlineOrderAtTheirExactTimes) {
    auto main = []() -> Coro<> {
        std::vector<std::pair<int, double>> log;
        std::vector<Task<>> tasks;
        tasks.push_back(create_task(sleep_and_log(3.0, 3, &log)));
        tasks.push_back(create_task(sleep_and_log(1.0, 1, &log)));
        tasks.push_back(create_task(sleep_and_log(2.5, 2, &log)));
        for (auto& t : tasks) co_await t;
        EXPECT_EQ(log.size(), 3u);
        if (log.size() == 3) {
            EXPECT_EQ(log[0].first, 1);
            EXPECT_DOUBLE_EQ(log[0].second, 1.0);
            EXPECT_EQ(log[1].first, 2);
            EXPECT_DOUBLE_EQ(log[1].second, 2.5);
            EXPECT_EQ(log[2].first, 3);
            EXPECT_DOUBLE_EQ(log[2].second, 3.0);
        }
    };
    run_virtual(main());
}

TEST(TaskSleep, EqualDeadlinesWakeInFifoOrder) {
    auto main = []() -> Coro<> {
        std::vector<std::pair<int, double>> log;
        std::vector<Task<>> tasks;
        for (int i = 0; i < 6; ++i) tasks.push_back(create_task(sleep_and_log(1.0, i, &log)));
        for (auto& t : tasks) co_await t;
        std::vector<int> ids;
        for (auto& [id, when] : log) {
            ids.push_back(id);
            EXPECT_DOUBLE_EQ(when, 1.0);
        }
        EXPECT_EQ(ids, (std::vector<int>{0, 1, 2, 3, 4, 5}));
    };
    run_virtual(main());
}

TEST(TaskSleep, SleepInANestedCoroutineSuspendsTheAwaitingTask) {
    auto main = []() -> Coro<> {
        auto& loop = get_running_loop();
        const double t0 = loop.time();
        int v = co_await sleep_in_halves(3.0, 4);
        EXPECT_EQ(v, 4);
        EXPECT_DOUBLE_EQ(loop.time() - t0, 3.0);
    };
    run_virtual(main());
}

// =============================================================================================
// FIFO wake-up order
// =============================================================================================

namespace {
Coro<> await_fut_and_log(Future<int> f, int id, std::vector<int>* log) {
    int v = co_await f;
    log->push_back(id * 100 + v);
}
Coro<> await_task_and_log(Task<int> t, int id, std::vector<int>* log) {
    int v = co_await t;
    log->push_back(id * 100 + v);
}
}  // namespace

TEST(TaskOrder, TasksAwaitingTheSameFutureWakeInTheOrderTheyAwaited) {
    auto main = []() -> Coro<> {
        Future<int> f;
        std::vector<int> log;
        std::vector<Task<>> tasks;
        for (int i = 0; i < 5; ++i) tasks.push_back(create_task(await_fut_and_log(f, i, &log)));
        co_await sleep(0);
        EXPECT_TRUE(log.empty());
        f.set_result(7);
        for (auto& t : tasks) co_await t;
        EXPECT_EQ(log, (std::vector<int>{7, 107, 207, 307, 407}));
    };
    run_virtual(main());
}

TEST(TaskOrder, TasksAwaitingTheSameTaskWakeInTheOrderTheyAwaited) {
    auto main = []() -> Coro<> {
        auto target = create_task(value_after(1.0, 3));
        std::vector<int> log;
        std::vector<Task<>> tasks;
        for (int i = 0; i < 5; ++i) tasks.push_back(create_task(await_task_and_log(target, i, &log)));
        for (auto& t : tasks) co_await t;
        EXPECT_EQ(log, (std::vector<int>{3, 103, 203, 303, 403}));
    };
    run_virtual(main());
}

TEST(TaskOrder, TasksWokenByOneEventRunInWakeOrderInOneIteration) {
    // Waking several tasks schedules their steps in order, behind already-queued callbacks.
    auto main = []() -> Coro<> {
        Future<int> f;
        std::vector<int> log;
        auto a = create_task(await_fut_and_log(f, 1, &log));
        auto b = create_task(await_fut_and_log(f, 2, &log));
        co_await sleep(0);
        get_running_loop().call_soon([&log] { log.push_back(-1); });
        f.set_result(0);
        co_await sleep(0);
        EXPECT_EQ(log, (std::vector<int>{-1, 100, 200}));
    };
    run_virtual(main());
}

// =============================================================================================
// Misuse: awaiting oneself, awaiting across loops, completing a task from outside
// =============================================================================================

namespace {
Coro<std::string> await_self_caught() {
    try {
        co_await current_task();
    } catch (const RuntimeError& e) {
        co_return e.what();
    }
    co_return "<no RuntimeError>";
}
Coro<> await_self_uncaught() { co_await current_task(); }
}  // namespace

TEST(TaskMisuse, ATaskAwaitingItselfGetsRuntimeErrorAtTheAwait) {
    // test_task_awaits_on_itself
    auto main = []() -> Coro<> {
        auto t = create_task(await_self_caught());
        std::string msg = co_await t;
        EXPECT_NE(msg.find("Task cannot await on itself"), std::string::npos) << msg;
        EXPECT_FALSE(t.cancelled());
    };
    run_virtual(main());

    EventLoop loop({.virtual_clock = true});
    try {
        loop.run_until_complete(await_self_uncaught());
        ADD_FAILURE() << "expected RuntimeError";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("Task cannot await on itself"), std::string::npos) << e.what();
    }
}

TEST(TaskMisuse, AwaitingAFutureOfAnotherLoopRaisesRuntimeError) {
    // test_other_loop_future
    EventLoop other;
    Future<int> fut(other);
    EventLoop loop({.virtual_clock = true});
    try {
        loop.run_until_complete(await_fut(fut));
        ADD_FAILURE() << "expected RuntimeError";
    } catch (const RuntimeError& e) {
        std::string what = e.what();
        EXPECT_TRUE(std::regex_search(what, std::regex("Task .* got Future .* attached"))) << what;
    }
    EXPECT_FALSE(fut.done());
}

TEST(TaskMisuse, AwaitingATaskOfAnotherLoopRaisesRuntimeErrorAndLeavesItAlone) {
    EventLoop other({.virtual_clock = true});
    Task<int> foreign = other.create_task(value_after(1.0, 3));
    {
        EventLoop loop({.virtual_clock = true});
        try {
            loop.run_until_complete(await_task(foreign));
            ADD_FAILURE() << "expected RuntimeError";
        } catch (const RuntimeError& e) {
            EXPECT_NE(std::string(e.what()).find("attached to a different loop"), std::string::npos) << e.what();
        }
    }
    EXPECT_FALSE(foreign.done());
    EXPECT_EQ(other.run_until_complete(foreign), 3);
}

TEST(TaskMisuse, RunUntilCompleteOfAnotherLoopsTaskRaisesValueError) {
    // Python: loop.run_until_complete(task_of_other_loop) -> ensure_future raises ValueError
    // ("The future belongs to a different loop than the one specified as the loop argument");
    // ValueError is std::invalid_argument here.
    EventLoop other({.virtual_clock = true});
    Task<int> foreign = other.create_task(immediate(3));
    EventLoop loop({.virtual_clock = true});
    EXPECT_THROW(loop.run_until_complete(foreign), std::invalid_argument);
    EXPECT_EQ(other.run_until_complete(foreign), 3);
}

TEST(TaskMisuse, SetExceptionOnATaskIsRejected) {
    // test_task_set_methods: Python's Task.set_exception() raises
    // RuntimeError("Task does not support set_exception()"); the coroutine keeps running.
    auto main = []() -> Coro<> {
        auto t = create_task(value_after(1.0, 5));
        co_await sleep(0);
        EXPECT_THROW(t.set_exception(std::make_exception_ptr(Boom("injected"))), RuntimeError);
        EXPECT_FALSE(t.done());
        int v = co_await t;
        EXPECT_EQ(v, 5);
    };
    run_virtual(main());
}

// =============================================================================================
// "Task exception was never retrieved"
// =============================================================================================

TEST(TaskLogging, AnUnretrievedTaskExceptionIsReportedWhenTheLastHandleGoes) {
    asyncio_test::HandlerCapture cap;
    auto main = [&]() -> Coro<> {
        cap.install(get_running_loop());
        {
            auto t = create_task(fail_now("lost"));
            co_await sleep(0.05);
            EXPECT_TRUE(t.done());
            EXPECT_TRUE(cap.contexts.empty());
        }
        EXPECT_TRUE(cap.contains("never retrieved")) << cap.contexts.size();
        if (!cap.contexts.empty()) {
            EXPECT_EQ(what_of(cap.contexts[0].exception), "lost");
        }
        get_running_loop().set_exception_handler(nullptr);
    };
    run_virtual(main());
}

TEST(TaskLogging, CancellingAFailedTaskSilencesTheNeverRetrievedReport) {
    // test_tb_logger_not_called_after_cancel
    asyncio_test::HandlerCapture cap;
    auto main = [&]() -> Coro<> {
        cap.install(get_running_loop());
        {
            auto t = create_task(fail_now("lost"));
            co_await sleep(0.05);
            EXPECT_TRUE(t.done());
            EXPECT_FALSE(t.cancel());
        }
        co_await sleep(0);
        EXPECT_TRUE(cap.contexts.empty()) << cap.contexts.size();
        get_running_loop().set_exception_handler(nullptr);
    };
    run_virtual(main());
}
