// tests/loop/test_events.cpp - the event loop: call_soon/call_later/call_at, handles, the thread-safe
// entry, run_forever/stop/run_until_complete, close, the exception handler, debug mode, signals.
// Ports the semantic scenarios of CPython's Lib/test/test_asyncio/test_base_events.py and
// test_events.py (the parts about the loop itself; sockets, pipes and subprocesses live
// elsewhere).
#include "support.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <future>
#include <memory>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <unistd.h>

using namespace asyncio;
using asyncio_test::HandlerCapture;
using asyncio_test::LogCapture;
using asyncio_test::message_of;
using asyncio_test::run_briefly;

namespace {

constexpr LoopOptions kVirtual{.debug = false, .virtual_clock = true};

void expect_loop_closed(const char* what, const std::function<void()>& fn) {
    try {
        fn();
        ADD_FAILURE() << what << ": expected RuntimeError(\"Event loop is closed\")";
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "Event loop is closed") << what;
    } catch (...) {
        ADD_FAILURE() << what << ": threw something else than RuntimeError";
    }
}

/// Spins (no sleeping) until `seconds` of real time have passed.
void busy_wait(double seconds) {
    auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < until) {
    }
}

Coro<> sleep_for(double d) { co_await sleep(d); }

}  // namespace

// ---- call_soon ------------------------------------------------------------------------------

TEST(CallSoon, RunsCallbacksInFifoOrder) {
    EventLoop loop(kVirtual);
    std::vector<int> order;
    for (int i = 0; i < 10; ++i) loop.call_soon([&order, i] { order.push_back(i); });
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(CallSoon, ReturnsALiveHandle) {
    EventLoop loop(kVirtual);
    Handle h = loop.call_soon([] {});
    EXPECT_TRUE(static_cast<bool>(h));
    EXPECT_FALSE(h.cancelled());
    EXPECT_EQ(asyncio_test::ready_count(loop), 1u);
    EXPECT_EQ(asyncio_test::timer_count(loop), 0u);
}

TEST(CallSoon, CallbacksScheduledDuringAnIterationRunInTheNextOne) {
    EventLoop loop(kVirtual);
    std::vector<std::string> order;
    loop.call_soon([&] {
        order.push_back("a");
        loop.call_soon([&] { order.push_back("a-child"); });
    });
    loop.call_soon([&] { order.push_back("b"); });
    run_briefly(loop);
    EXPECT_EQ(order, (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(asyncio_test::ready_count(loop), 1u);
    run_briefly(loop);
    EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "a-child"}));
}

// The after-batch phase (LoopAccess::schedule_after_batch, libuv's "check"): an item runs once
// the iteration's callbacks have run - after all of them, before the next iteration - in the
// order the items were added; one added by such an item waits for the next batch; a closing
// loop discards what is left.
namespace {
struct AfterBatchItem : asyncio::detail::ReadyItem {
    std::vector<std::string>* order = nullptr;
    std::string name;
    EventLoop* loop = nullptr;
    AfterBatchItem* then = nullptr;  // scheduled for after the batch when this one runs
    bool discarded = false;
    static const asyncio::detail::ReadyItemOps item_ops;
};
const asyncio::detail::ReadyItemOps AfterBatchItem::item_ops = {
    /*run=*/
    [](asyncio::detail::ReadyItem* i) {
        auto* self = static_cast<AfterBatchItem*>(i);
        self->order->push_back(self->name);
        if (self->then) asyncio::detail::LoopAccess::schedule_after_batch(*self->loop, self->then);
    },
    /*discard=*/[](asyncio::detail::ReadyItem* i) noexcept { static_cast<AfterBatchItem*>(i)->discarded = true; },
    /*drop=*/[](asyncio::detail::ReadyItem*) noexcept {},
    /*describe=*/[](const asyncio::detail::ReadyItem*) -> std::string { return "after-batch"; },
};
}  // namespace

TEST(AfterBatch, ItemsRunAfterTheIterationsCallbacksInOrder) {
    EventLoop loop(kVirtual);
    std::vector<std::string> order;
    AfterBatchItem first, second, third;
    for (auto [item, name] :
         {std::pair{&first, "flush-1"}, std::pair{&second, "flush-2"}, std::pair{&third, "flush-3"}}) {
        item->ops = &AfterBatchItem::item_ops;
        item->order = &order;
        item->name = name;
        item->loop = &loop;
    }
    second.then = &third;  // added while the after-batch items run: waits for the next batch
    loop.call_soon([&] {
        order.push_back("a");
        asyncio::detail::LoopAccess::schedule_after_batch(loop, &first);
        loop.call_soon([&] { order.push_back("a-child"); });
    });
    loop.call_soon([&] {
        order.push_back("b");
        asyncio::detail::LoopAccess::schedule_after_batch(loop, &second);
    });
    run_briefly(loop);
    EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "flush-1", "flush-2"}));
    run_briefly(loop);
    EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "flush-1", "flush-2", "a-child", "flush-3"}));
}

TEST(AfterBatch, AClosingLoopDiscardsWhatIsLeft) {
    std::vector<std::string> order;
    AfterBatchItem item;
    item.ops = &AfterBatchItem::item_ops;
    item.order = &order;
    item.name = "never";
    {
        EventLoop loop(kVirtual);
        item.loop = &loop;
        asyncio::detail::LoopAccess::schedule_after_batch(loop, &item);
        loop.close();
    }
    EXPECT_TRUE(item.discarded);
    EXPECT_TRUE(order.empty());
}

TEST(CallSoon, SelfReschedulingCallbackRunsOncePerIteration) {
    EventLoop loop(kVirtual);
    int runs = 0;
    std::function<void()> again = [&] {
        ++runs;
        loop.call_soon(again);
    };
    loop.call_soon(again);
    for (int i = 0; i < 5; ++i) run_briefly(loop);
    EXPECT_EQ(runs, 5);
}

TEST(CallSoon, ExceptionInOneCallbackDoesNotStopTheOthers) {
    EventLoop loop(kVirtual);
    HandlerCapture handler;
    handler.install(loop);
    std::vector<int> order;
    loop.call_soon([&] { order.push_back(1); });
    loop.call_soon([] { throw std::runtime_error("boom"); });
    loop.call_soon([&] { order.push_back(3); });
    run_briefly(loop);
    EXPECT_EQ(order, (std::vector<int>{1, 3}));
    EXPECT_EQ(handler.contexts.size(), 1u);
}

TEST(CallSoon, CallbackIsReleasedAfterItRuns) {
    EventLoop loop(kVirtual);
    auto token = std::make_shared<int>(7);
    int seen = 0;
    loop.call_soon([token, &seen] { seen = *token; });
    EXPECT_EQ(token.use_count(), 2);
    run_briefly(loop);
    EXPECT_EQ(seen, 7);
    EXPECT_EQ(token.use_count(), 1);
}

// ---- call_later / call_at on the virtual clock ----------------------------------------------

TEST(CallLater, FiresInTimeOrderAtExactTimes) {
    EventLoop loop(kVirtual);
    const double t0 = loop.time();
    std::vector<std::pair<std::string, double>> fired;
    auto rec = [&](std::string name) { return [&, name] { fired.emplace_back(name, loop.time() - t0); }; };
    loop.call_later(3.0, rec("c"));
    loop.call_later(1.0, rec("a"));
    loop.call_later(2.0, rec("b"));
    loop.call_later(3.5, [&] { loop.stop(); });
    loop.run_forever();
    ASSERT_EQ(fired.size(), 3u);
    EXPECT_EQ(fired[0].first, "a");
    EXPECT_DOUBLE_EQ(fired[0].second, 1.0);
    EXPECT_EQ(fired[1].first, "b");
    EXPECT_DOUBLE_EQ(fired[1].second, 2.0);
    EXPECT_EQ(fired[2].first, "c");
    EXPECT_DOUBLE_EQ(fired[2].second, 3.0);
    EXPECT_DOUBLE_EQ(loop.time() - t0, 3.5);
}

TEST(CallLater, ReturnsTimerHandleWithAbsoluteWhen) {
    EventLoop loop(kVirtual);
    TimerHandle h = loop.call_later(10.0, [] {});
    EXPECT_DOUBLE_EQ(h.when(), loop.time() + 10.0);
    EXPECT_EQ(asyncio_test::timer_count(loop), 1u);
    EXPECT_EQ(asyncio_test::ready_count(loop), 0u);  // a timer, not a ready callback
    EXPECT_FALSE(h.cancelled());
}

TEST(CallLater, AcceptsChronoDurations) {
    EventLoop loop(kVirtual);
    using namespace std::chrono_literals;
    const double t0 = loop.time();
    double at = -1;
    TimerHandle h = loop.call_later(1500ms, [&] {
        at = loop.time() - t0;
        loop.stop();
    });
    EXPECT_DOUBLE_EQ(h.when() - t0, 1.5);
    loop.run_forever();
    EXPECT_DOUBLE_EQ(at, 1.5);
}

TEST(CallLater, NegativeDelaysRunAtOnceOrderedByWhen) {
    EventLoop loop(kVirtual);
    const double t0 = loop.time();
    std::vector<std::string> calls;
    loop.call_later(-1, [&] { calls.push_back("a"); });
    loop.call_later(-2, [&] { calls.push_back("b"); });
    run_briefly(loop);
    EXPECT_EQ(calls, (std::vector<std::string>{"b", "a"}));
    EXPECT_DOUBLE_EQ(loop.time(), t0);
}

TEST(CallLater, ZeroDelayRunsAfterAlreadyReadyCallbacksInTheSameIteration) {
    // _run_once moves due timers to the end of the ready queue, then runs the whole batch.
    EventLoop loop(kVirtual);
    std::vector<std::string> order;
    loop.call_soon([&] { order.push_back("soon-1"); });
    loop.call_later(0, [&] { order.push_back("later-0"); });
    loop.call_soon([&] { order.push_back("soon-2"); });
    run_briefly(loop);
    EXPECT_EQ(order, (std::vector<std::string>{"soon-1", "soon-2", "later-0"}));
}

TEST(CallLater, EqualDeadlinesFireInSchedulingOrder) {
    EventLoop loop(kVirtual);
    std::vector<int> order;
    for (int i = 0; i < 20; ++i) loop.call_later(1.0, [&order, i] { order.push_back(i); });
    loop.call_later(2.0, [&] { loop.stop(); });
    loop.run_forever();
    ASSERT_EQ(order.size(), 20u);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);
}

TEST(CallLater, TimerCallbackSchedulingCallSoonRunsItNextIteration) {
    // test__run_once_schedule_handle
    EventLoop loop(kVirtual);
    bool processed = false, child_ran = false;
    loop.call_later(-1, [&] {
        processed = true;
        loop.call_soon([&] { child_ran = true; });
    });
    run_briefly(loop);
    EXPECT_TRUE(processed);
    EXPECT_FALSE(child_ran);
    EXPECT_EQ(asyncio_test::ready_count(loop), 1u);
    run_briefly(loop);
    EXPECT_TRUE(child_ran);
}

TEST(CallLater, VirtualClockJumpsStraightToTheNextTimer) {
    EventLoop loop(kVirtual);
    const double t0 = loop.time();
    std::vector<double> at;
    loop.call_later(100.0, [&] { at.push_back(loop.time() - t0); });
    loop.call_later(1000.0, [&] {
        at.push_back(loop.time() - t0);
        loop.stop();
    });
    loop.run_forever();
    ASSERT_EQ(at.size(), 2u);
    EXPECT_DOUBLE_EQ(at[0], 100.0);
    EXPECT_DOUBLE_EQ(at[1], 1000.0);
}

TEST(CallLater, VirtualTimeDoesNotMoveWhileCallbacksAreReady) {
    EventLoop loop(kVirtual);
    const double t0 = loop.time();
    loop.call_later(5.0, [] {});
    int hops = 0;
    std::function<void()> hop = [&] {
        if (++hops < 10) loop.call_soon(hop);
    };
    loop.call_soon(hop);
    for (int i = 0; i < 10; ++i) run_briefly(loop);
    EXPECT_EQ(hops, 10);
    EXPECT_DOUBLE_EQ(loop.time(), t0);
}

TEST(CallLater, ManyTimersWithCancellationsFireInTimeOrder) {
    EventLoop loop(kVirtual);
    std::vector<double> fired;
    std::vector<TimerHandle> handles;
    std::uint32_t seed = 12345;
    auto next = [&] {
        seed = seed * 1664525u + 1013904223u;
        return static_cast<double>(seed % 10000) / 10.0;
    };
    for (int i = 0; i < 1000; ++i) {
        double d = next();
        handles.push_back(loop.call_later(d, [&fired, &loop] { fired.push_back(loop.time()); }));
    }
    std::size_t cancelled = 0;
    for (std::size_t i = 0; i < handles.size(); i += 2) {
        handles[i].cancel();
        ++cancelled;
    }
    EXPECT_EQ(asyncio_test::timer_count(loop), handles.size() - cancelled);
    loop.call_later(2000.0, [&] { loop.stop(); });
    loop.run_forever();
    ASSERT_EQ(fired.size(), handles.size() - cancelled);
    for (std::size_t i = 1; i < fired.size(); ++i) EXPECT_LE(fired[i - 1], fired[i]);
    for (std::size_t i = 1; i < handles.size(); i += 2) {
        const double when = handles[i].when();
        EXPECT_TRUE(std::any_of(fired.begin(), fired.end(), [when](double t) { return std::abs(t - when) < 1e-9; }))
            << "live timer " << i << " did not fire";
    }
}

TEST(CallAt, FiresAtTheGivenAbsoluteTime) {
    EventLoop loop(kVirtual);
    const double when = loop.time() + 5.0;
    double at = -1;
    TimerHandle h = loop.call_at(when, [&] {
        at = loop.time();
        loop.stop();
    });
    EXPECT_DOUBLE_EQ(h.when(), when);
    loop.run_forever();
    EXPECT_DOUBLE_EQ(at, when);
}

TEST(CallAt, PastTimeRunsInTheNextIterationWithoutMovingTheClock) {
    EventLoop loop(kVirtual);
    loop.call_later(1.0, [] {});
    loop.call_later(1.0, [&] { loop.stop(); });
    loop.run_forever();  // moves the virtual clock to 1.0
    const double now = loop.time();
    bool ran = false;
    loop.call_at(now - 0.5, [&] { ran = true; });
    run_briefly(loop);
    EXPECT_TRUE(ran);
    EXPECT_DOUBLE_EQ(loop.time(), now);
}

TEST(CallAt, InterleavesWithCallLaterByDeadline) {
    EventLoop loop(kVirtual);
    const double t0 = loop.time();
    std::vector<std::string> order;
    loop.call_at(t0 + 2.0, [&] { order.push_back("at-2"); });
    loop.call_later(1.0, [&] { order.push_back("later-1"); });
    loop.call_later(3.0, [&] { order.push_back("later-3"); });
    loop.call_at(t0 + 2.5, [&] { order.push_back("at-2.5"); });
    loop.call_at(t0 + 4.0, [&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(order, (std::vector<std::string>{"later-1", "at-2", "at-2.5", "later-3"}));
}

TEST(TimerHandle, WhenIsTheAbsoluteDeadline) {
    EventLoop loop(kVirtual);
    TimerHandle a = loop.call_at(123.0, [] {});
    EXPECT_DOUBLE_EQ(a.when(), 123.0);
    TimerHandle b = loop.call_later(2.0, [] {});
    EXPECT_DOUBLE_EQ(b.when(), loop.time() + 2.0);
    a.cancel();
    EXPECT_DOUBLE_EQ(a.when(), 123.0);  // cancelling keeps when()
}

TEST(TimerHandle, DefaultConstructedIsEmpty) {
    TimerHandle h;
    EXPECT_FALSE(static_cast<bool>(h));
    EXPECT_FALSE(h.cancelled());
    EXPECT_DOUBLE_EQ(h.when(), 0.0);
    h.cancel();  // no-op
    EXPECT_FALSE(h.cancelled());
}

// ---- Handle.cancel --------------------------------------------------------------------------

TEST(HandleCancel, CancelledBeforeRunNeverRuns) {
    EventLoop loop(kVirtual);
    bool ran = false;
    Handle h = loop.call_soon([&] { ran = true; });
    EXPECT_FALSE(h.cancelled());
    h.cancel();
    EXPECT_TRUE(h.cancelled());
    h.cancel();  // twice is fine
    EXPECT_TRUE(h.cancelled());
    run_briefly(loop);
    EXPECT_FALSE(ran);
}

TEST(HandleCancel, CancellingATimerPreventsItAndRemovesIt) {
    EventLoop loop(kVirtual);
    const double t0 = loop.time();
    bool ran = false;
    TimerHandle h = loop.call_later(5.0, [&] { ran = true; });
    loop.call_later(10.0, [&] { loop.stop(); });
    EXPECT_EQ(asyncio_test::timer_count(loop), 2u);
    h.cancel();
    EXPECT_TRUE(h.cancelled());
    EXPECT_EQ(asyncio_test::timer_count(loop), 1u);
    loop.run_forever();
    EXPECT_FALSE(ran);
    EXPECT_DOUBLE_EQ(loop.time() - t0, 10.0);
}

TEST(HandleCancel, CancelFromAnEarlierCallbackInTheSameIteration) {
    EventLoop loop(kVirtual);
    bool ran = false;
    Handle victim;
    loop.call_soon([&] { victim.cancel(); });
    victim = loop.call_soon([&] { ran = true; });
    run_briefly(loop);
    EXPECT_FALSE(ran);
    EXPECT_TRUE(victim.cancelled());
}

TEST(HandleCancel, CancelADueTimerFromAnotherTimerDueAtTheSameTime) {
    EventLoop loop(kVirtual);
    bool ran = false;
    TimerHandle victim;
    loop.call_later(1.0, [&] { victim.cancel(); });
    victim = loop.call_later(1.0, [&] { ran = true; });
    loop.call_later(2.0, [&] { loop.stop(); });
    loop.run_forever();
    EXPECT_FALSE(ran);
}

TEST(HandleCancel, CancelAfterItRanIsHarmless) {
    EventLoop loop(kVirtual);
    int runs = 0;
    Handle h = loop.call_soon([&] { ++runs; });
    run_briefly(loop);
    h.cancel();
    EXPECT_TRUE(h.cancelled());
    run_briefly(loop);
    EXPECT_EQ(runs, 1);
}

TEST(HandleCancel, CancellingTheThreadsafeHandleBeforeTheLoopRunsIt) {
    EventLoop loop(kVirtual);
    bool ran = false;
    Handle h = loop.call_soon_threadsafe([&] { ran = true; });
    h.cancel();
    run_briefly(loop);
    EXPECT_FALSE(ran);
}

TEST(HandleCancel, HandleOutlivingTheLoopIsSafe) {
    Handle h;
    TimerHandle t;
    double when = 0;
    {
        EventLoop loop(kVirtual);
        h = loop.call_soon([] {});
        t = loop.call_later(5.0, [] {});
        when = t.when();
    }
    EXPECT_FALSE(h.cancelled());
    h.cancel();
    t.cancel();
    EXPECT_TRUE(h.cancelled());
    EXPECT_TRUE(t.cancelled());
    EXPECT_DOUBLE_EQ(t.when(), when);
}

TEST(HandleCancel, CancelReleasesTheCallbackAtOnce) {
    // Python's Handle.cancel() drops the callback and its arguments (_callback = None) so that a
    // cancelled handle kept somewhere does not keep its captures alive.
    EventLoop loop(kVirtual);
    auto token = std::make_shared<int>(0);
    Handle h = loop.call_soon([token] {});
    TimerHandle t = loop.call_later(100.0, [token] {});
    EXPECT_EQ(token.use_count(), 3);
    h.cancel();
    t.cancel();
    EXPECT_EQ(token.use_count(), 1);
}

// ---- call_soon_threadsafe -------------------------------------------------------------------

TEST(CallSoonThreadsafe, FromTheSameThreadKeepsCallOrderWithCallSoon) {
    // test_call_soon_threadsafe_same_thread
    EventLoop loop(kVirtual);
    std::vector<std::string> results;
    auto cb = [&](std::string s) {
        return [&, s] {
            results.push_back(s);
            if (results.size() >= 2) loop.stop();
        };
    };
    loop.call_soon_threadsafe(cb("hello"));
    loop.call_soon(cb("world"));
    loop.run_forever();
    EXPECT_EQ(results, (std::vector<std::string>{"hello", "world"}));
}

TEST(CallSoonThreadsafe, FromAnotherThreadBeforeRunKeepsCallOrder) {
    // test_call_soon_threadsafe: the thread's callback is scheduled first, so it runs first.
    EventLoop loop(kVirtual);
    std::vector<std::string> results;
    std::thread th([&] {
        loop.call_soon_threadsafe([&] {
            results.push_back("hello");
            if (results.size() >= 2) loop.stop();
        });
    });
    th.join();
    loop.call_soon([&] {
        results.push_back("world");
        if (results.size() >= 2) loop.stop();
    });
    loop.run_forever();
    EXPECT_EQ(results, (std::vector<std::string>{"hello", "world"}));
}

TEST(CallSoonThreadsafe, ScheduledBeforeRunRunsOnTheLoopThread) {
    EventLoop loop;
    std::thread::id ran_on;
    std::thread th([&] {
        loop.call_soon_threadsafe([&] {
            ran_on = std::this_thread::get_id();
            loop.stop();
        });
    });
    th.join();
    loop.run_forever();
    EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST(CallSoonThreadsafe, ManyThreadsManyCallbacksEachRunExactlyOnceInPerThreadOrder) {
    EventLoop loop;  // real clock: the loop blocks in poll between bursts
    constexpr int kThreads = 8;
    constexpr int kPerThread = 2000;
    std::vector<std::vector<int>> seen(kThreads);  // only touched on the loop thread
    int total = 0;
    bool watchdog_fired = false;
    std::thread::id loop_thread = std::this_thread::get_id();
    bool all_on_loop_thread = true;
    std::vector<std::thread> threads;
    loop.call_later(60.0, [&] {
        watchdog_fired = true;
        loop.stop();
    });
    loop.call_soon([&] {
        for (int t = 0; t < kThreads; ++t) {
            threads.emplace_back([&, t] {
                for (int i = 0; i < kPerThread; ++i) {
                    loop.call_soon_threadsafe([&, t, i] {
                        if (std::this_thread::get_id() != loop_thread) all_on_loop_thread = false;
                        seen[static_cast<std::size_t>(t)].push_back(i);
                        if (++total == kThreads * kPerThread) loop.stop();
                    });
                }
            });
        }
    });
    loop.run_forever();
    for (auto& th : threads) th.join();
    EXPECT_FALSE(watchdog_fired);
    EXPECT_EQ(total, kThreads * kPerThread);
    EXPECT_TRUE(all_on_loop_thread);
    for (int t = 0; t < kThreads; ++t) {
        const auto& v = seen[static_cast<std::size_t>(t)];
        ASSERT_EQ(v.size(), static_cast<std::size_t>(kPerThread)) << "thread " << t;
        for (int i = 0; i < kPerThread; ++i) ASSERT_EQ(v[static_cast<std::size_t>(i)], i) << "thread " << t;
    }
    // Nothing is left over to run twice.
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(total, kThreads * kPerThread);
}

TEST(CallSoonThreadsafe, WakesALoopBlockedInPoll) {
    EventLoop loop;  // real clock
    bool watchdog_fired = false;
    loop.call_later(60.0, [&] {
        watchdog_fired = true;
        loop.stop();
    });
    std::promise<void> loop_is_running;
    std::thread th;
    loop.call_soon([&] {
        th = std::thread([&, started = loop_is_running.get_future()]() mutable {
            started.wait();
            loop.call_soon_threadsafe([&] { loop.stop(); });
        });
        loop_is_running.set_value();
    });
    const double t0 = loop.time();
    loop.run_forever();
    th.join();
    EXPECT_FALSE(watchdog_fired) << "the loop slept through call_soon_threadsafe";
    EXPECT_LT(loop.time() - t0, 30.0);
}

TEST(CallSoonThreadsafe, WakesAVirtualClockLoopBeforeItJumpsToATimer) {
    // A callback handed over by another thread before run_forever() runs before the virtual
    // clock jumps to the next timer.
    EventLoop loop(kVirtual);
    const double t0 = loop.time();
    double at = -1;
    loop.call_later(50.0, [&] { loop.stop(); });
    std::thread th([&] { loop.call_soon_threadsafe([&] { at = loop.time() - t0; }); });
    th.join();
    loop.run_forever();
    EXPECT_DOUBLE_EQ(at, 0.0);
}

// ---- run_forever / stop ---------------------------------------------------------------------

TEST(RunForever, StopBeforeRunForeverRunsExactlyOneIteration) {
    EventLoop loop(kVirtual);
    std::vector<std::string> order;
    loop.call_soon([&] {
        order.push_back("first");
        loop.call_soon([&] { order.push_back("second"); });
    });
    loop.stop();
    loop.run_forever();
    EXPECT_EQ(order, (std::vector<std::string>{"first"}));
    EXPECT_FALSE(loop.is_running());
}

TEST(RunForever, PreStoppedLoopDoesNotWaitForTimers) {
    // test_run_forever_pre_stopped: the one iteration polls with timeout 0.
    EventLoop loop(kVirtual);
    const double t0 = loop.time();
    bool ran = false;
    loop.call_later(100.0, [&] { ran = true; });
    loop.stop();
    loop.run_forever();
    EXPECT_FALSE(ran);
    EXPECT_DOUBLE_EQ(loop.time(), t0);
}

TEST(RunForever, PreStoppedLoopWithNothingToDoReturns) {
    EventLoop loop;  // real clock: blocking here would hang the test
    loop.stop();
    loop.run_forever();
    EXPECT_FALSE(loop.is_running());
}

TEST(RunForever, StopInsideACallbackFinishesTheCurrentIteration) {
    EventLoop loop(kVirtual);
    std::vector<std::string> order;
    loop.call_soon([&] {
        order.push_back("stopper");
        loop.stop();
        loop.call_soon([&] { order.push_back("next-iteration"); });
    });
    loop.call_soon([&] { order.push_back("same-iteration"); });
    loop.run_forever();
    EXPECT_EQ(order, (std::vector<std::string>{"stopper", "same-iteration"}));
    EXPECT_EQ(asyncio_test::ready_count(loop), 1u);
}

TEST(RunForever, CanRunAgainAfterStopAndPendingWorkContinues) {
    EventLoop loop(kVirtual);
    int runs = 0;
    loop.call_soon([&] {
        ++runs;
        loop.stop();
    });
    loop.run_forever();
    loop.call_soon([&] {
        ++runs;
        loop.stop();
    });
    loop.run_forever();
    EXPECT_EQ(runs, 2);
}

TEST(RunForever, StopFlagIsClearedWhenRunForeverReturns) {
    EventLoop loop(kVirtual);
    loop.call_soon([&] {
        loop.stop();
        loop.stop();  // twice in one iteration: still one stop
    });
    loop.run_forever();
    const double t0 = loop.time();
    loop.call_later(1.0, [&] { loop.stop(); });
    loop.run_forever();  // must not return at once
    EXPECT_DOUBLE_EQ(loop.time() - t0, 1.0);
}

TEST(RunForever, IsRunningOnlyWhileRunning) {
    EventLoop loop(kVirtual);
    EXPECT_FALSE(loop.is_running());
    bool inside = false;
    loop.call_soon([&] {
        inside = loop.is_running();
        loop.stop();
    });
    loop.run_forever();
    EXPECT_TRUE(inside);
    EXPECT_FALSE(loop.is_running());
}

TEST(RunForever, NestedRunForeverThrowsRuntimeError) {
    EventLoop loop(kVirtual);
    std::string msg;
    loop.call_soon([&] {
        try {
            loop.run_forever();
        } catch (const RuntimeError& e) {
            msg = e.what();
        }
        loop.stop();
    });
    loop.run_forever();
    EXPECT_NE(msg.find("already running"), std::string::npos) << msg;
    EXPECT_FALSE(loop.is_running());
}

TEST(RunForever, RunningASecondLoopInsideAFirstThrowsRuntimeError) {
    EventLoop outer(kVirtual);
    EventLoop inner(kVirtual);
    std::string msg;
    outer.call_soon([&] {
        try {
            inner.run_forever();
        } catch (const RuntimeError& e) {
            msg = e.what();
        }
        outer.stop();
    });
    outer.run_forever();
    EXPECT_NE(msg.find("Cannot run the event loop while another loop is running"), std::string::npos) << msg;
    EXPECT_FALSE(inner.is_running());
    // The inner loop is still usable on its own afterwards.
    bool ran = false;
    inner.call_soon([&] { ran = true; });
    run_briefly(inner);
    EXPECT_TRUE(ran);
}

TEST(RunForever, LoopsOnTwoThreadsRunIndependently) {
    std::atomic<int> done{0};
    auto body = [&] {
        EventLoop loop(kVirtual);
        loop.call_later(10.0, [&] {
            EXPECT_EQ(get_running_loop_or_null(), &loop);
            loop.stop();
        });
        loop.run_forever();
        ++done;
    };
    std::thread a(body), b(body);
    a.join();
    b.join();
    EXPECT_EQ(done.load(), 2);
}

// ---- run_until_complete ---------------------------------------------------------------------

TEST(RunUntilComplete, ReturnsTheCoroutineResult) {
    EventLoop loop(kVirtual);
    auto coro = []() -> Coro<int> {
        co_await sleep(0.1);
        co_return 42;
    };
    const double t0 = loop.time();
    EXPECT_EQ(loop.run_until_complete(coro()), 42);
    EXPECT_DOUBLE_EQ(loop.time() - t0, 0.1);
    EXPECT_FALSE(loop.is_running());
}

TEST(RunUntilComplete, ReturnsTheTaskResult) {
    EventLoop loop(kVirtual);
    auto coro = []() -> Coro<std::string> { co_return "task"; };
    Task<std::string> t = loop.create_task(coro());
    EXPECT_EQ(loop.run_until_complete(t), "task");
    EXPECT_TRUE(t.done());
}

TEST(RunUntilComplete, ReturnsAMoveOnlyResult) {
    EventLoop loop(kVirtual);
    auto coro = []() -> Coro<std::unique_ptr<int>> { co_return std::make_unique<int>(9); };
    std::unique_ptr<int> p = loop.run_until_complete(coro());
    ASSERT_TRUE(p);
    EXPECT_EQ(*p, 9);
}

TEST(RunUntilComplete, RethrowsTheCoroutineException) {
    EventLoop loop(kVirtual);
    auto coro = []() -> Coro<int> {
        co_await sleep(0);
        throw std::out_of_range("range");
    };
    try {
        loop.run_until_complete(coro());
        ADD_FAILURE() << "expected out_of_range";
    } catch (const std::out_of_range& e) {
        EXPECT_STREQ(e.what(), "range");
    }
}

TEST(RunUntilComplete, CancelledTaskThrowsCancelledError) {
    EventLoop loop(kVirtual);
    auto coro = []() -> Coro<> { co_await sleep(10); };
    Task<> t = loop.create_task(coro());
    loop.call_later(1.0, [t]() mutable { t.cancel("enough"); });
    try {
        loop.run_until_complete(t);
        ADD_FAILURE() << "expected CancelledError";
    } catch (const CancelledError& e) {
        EXPECT_EQ(e.message(), "enough");
    }
}

TEST(RunUntilComplete, StoppedBeforeCompletionThrowsRuntimeError) {
    // test_run_until_complete_stopped
    EventLoop loop(kVirtual);
    auto coro = [&]() -> Coro<int> {
        loop.stop();
        co_await sleep(0.1);
        co_return 1;
    };
    Task<int> t = loop.create_task(coro());
    try {
        loop.run_until_complete(t);
        ADD_FAILURE() << "expected RuntimeError";
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "Event loop stopped before Future completed.");
    }
    EXPECT_FALSE(t.done());
    // The task is still there: running again finishes it.
    EXPECT_EQ(loop.run_until_complete(t), 1);
}

TEST(RunUntilComplete, PreStoppedLoopThrowsStoppedBeforeCompletion) {
    EventLoop loop(kVirtual);
    loop.stop();
    try {
        loop.run_until_complete(sleep_for(1.0));
        ADD_FAILURE() << "expected RuntimeError";
    } catch (const RuntimeError& e) {
        EXPECT_STREQ(e.what(), "Event loop stopped before Future completed.");
    }
}

TEST(RunUntilComplete, DoesNotLeaveItsDoneCallbackBehindAfterAnEarlyStop) {
    // test_run_until_complete_loop_orphan_future_close_loop, the part C++ can express: a
    // run_until_complete that ended early must not stop a later run when its future completes.
    EventLoop loop(kVirtual);
    Future<int> f(loop);
    loop.call_soon([&] { loop.stop(); });
    EXPECT_THROW(loop.run_until_complete(f), RuntimeError);
    const double t0 = loop.time();
    loop.call_soon([f]() mutable { f.set_result(1); });
    loop.call_later(5.0, [&] { loop.stop(); });
    loop.run_forever();
    EXPECT_TRUE(f.done());
    EXPECT_DOUBLE_EQ(loop.time() - t0, 5.0);
}

TEST(RunUntilComplete, NestedCallThrowsRuntimeError) {
    // test_run_until_complete_nesting
    EventLoop loop(kVirtual);
    auto inner = []() -> Coro<> { co_await sleep(0); };
    auto outer = [&]() -> Coro<std::string> {
        EXPECT_TRUE(loop.is_running());
        try {
            loop.run_until_complete(inner());
        } catch (const RuntimeError& e) {
            co_return e.what();
        }
        co_return "";
    };
    std::string msg = loop.run_until_complete(outer());
    EXPECT_NE(msg.find("already running"), std::string::npos) << msg;
}

TEST(RunUntilComplete, NestedCallDoesNotStartTheCoroutine) {
    // Python checks "already running" before wrapping the coroutine in a task, so the inner
    // coroutine never runs (it is reported as never awaited).
    EventLoop loop(kVirtual);
    bool inner_ran = false;
    auto inner = [&]() -> Coro<> {
        inner_ran = true;
        co_return;
    };
    auto outer = [&]() -> Coro<> {
        EXPECT_THROW(loop.run_until_complete(inner()), RuntimeError);
        co_await sleep(1.0);
    };
    loop.run_until_complete(outer());
    EXPECT_FALSE(inner_ran);
}

TEST(RunUntilComplete, FutureOfAnotherLoopIsRejected) {
    // test_run_until_complete_loop: Python raises ValueError (std::invalid_argument here).
    EventLoop loop(kVirtual);
    EventLoop other(kVirtual);
    Future<int> f(loop);
    EXPECT_THROW(other.run_until_complete(f), std::invalid_argument);
    f.cancel();
}

TEST(RunUntilComplete, FutureOfAnotherLoopThrowsAndDoesNotRunTheLoop) {
    EventLoop loop(kVirtual);
    EventLoop other(kVirtual);
    Future<int> f(loop);
    bool ran = false;
    other.call_soon([&] { ran = true; });
    EXPECT_ANY_THROW(other.run_until_complete(f));
    EXPECT_FALSE(ran);
    f.cancel();
}

TEST(RunUntilComplete, AlreadyDoneFutureStillRunsOneIteration) {
    // Python always goes through run_forever(): the done callback that stops the loop is
    // scheduled with call_soon, so callbacks already ready run first.
    EventLoop loop(kVirtual);
    Future<int> f(loop);
    f.set_result(3);
    bool ran = false;
    loop.call_soon([&] { ran = true; });
    EXPECT_EQ(loop.run_until_complete(f), 3);
    EXPECT_TRUE(ran);
}

TEST(RunUntilComplete, KeyboardInterruptFromCoroutinePropagatesAndLeavesNoPendingStop) {
    // test_run_until_complete_baseexception / test_run_forever_keyboard_interrupt
    EventLoop loop(kVirtual);
    HandlerCapture handler;
    handler.install(loop);
    auto coro = []() -> Coro<> {
        co_await sleep(0);
        throw KeyboardInterrupt();
    };
    EXPECT_THROW(loop.run_until_complete(coro()), KeyboardInterrupt);
    bool called = false;
    loop.call_soon([&] {
        loop.call_soon([&] {
            called = true;
            loop.stop();
        });
    });
    loop.run_forever();
    EXPECT_TRUE(called);
    EXPECT_TRUE(handler.contexts.empty());
}

TEST(RunUntilComplete, KeyboardInterruptFromCallbackPropagatesOutOfTheLoop) {
    // Python's Handle._run re-raises SystemExit/KeyboardInterrupt instead of passing them to
    // the exception handler; run_until_complete can then be called again.
    EventLoop loop(kVirtual);
    HandlerCapture handler;
    handler.install(loop);
    loop.call_soon([] { throw KeyboardInterrupt(); });
    EXPECT_THROW(loop.run_until_complete(sleep_for(0.1)), KeyboardInterrupt);
    EXPECT_FALSE(loop.is_running());
    EXPECT_TRUE(handler.contexts.empty());
    EXPECT_NO_THROW(loop.run_until_complete(sleep_for(0.2)));
}

// ---- close ----------------------------------------------------------------------------------

TEST(Close, ClosingTwiceIsFine) {
    EventLoop loop;
    EXPECT_FALSE(loop.is_closed());
    loop.close();
    EXPECT_TRUE(loop.is_closed());
    loop.close();
    loop.close();
    EXPECT_TRUE(loop.is_closed());
}

TEST(Close, CloseWhileRunningThrowsRuntimeError) {
    EventLoop loop(kVirtual);
    auto coro = [&]() -> Coro<std::string> {
        try {
            loop.close();
        } catch (const RuntimeError& e) {
            co_return e.what();
        }
        co_return "";
    };
    std::string msg = loop.run_until_complete(coro());
    EXPECT_NE(msg.find("Cannot close a running event loop"), std::string::npos) << msg;
    EXPECT_FALSE(loop.is_closed());
    // Still fully usable.
    EXPECT_EQ(loop.run_until_complete([]() -> Coro<int> { co_return 5; }()), 5);
}

TEST(Close, EveryApiThrowsEventLoopIsClosed) {
    EventLoop loop;
    Future<int> made_before = loop.create_future<int>();
    loop.close();
    auto fn = [] {};
    expect_loop_closed("run_forever", [&] { loop.run_forever(); });
    expect_loop_closed("run_until_complete(future)", [&] { loop.run_until_complete(made_before); });
    expect_loop_closed("run_until_complete(coro)", [&] { loop.run_until_complete(sleep_for(0)); });
    expect_loop_closed("call_soon", [&] { loop.call_soon(fn); });
    expect_loop_closed("call_soon_threadsafe", [&] { loop.call_soon_threadsafe(fn); });
    expect_loop_closed("call_later", [&] { loop.call_later(1.0, fn); });
    expect_loop_closed("call_at", [&] { loop.call_at(loop.time(), fn); });
    expect_loop_closed("create_task", [&] { loop.create_task(sleep_for(0)); });
    expect_loop_closed("create_future", [&] { (void)loop.create_future<int>(); });
    expect_loop_closed("add_signal_handler", [&] { loop.add_signal_handler(SIGUSR1, fn); });
    expect_loop_closed("call_soon_threadsafe from a thread", [&] {
        std::exception_ptr e;
        std::thread th([&] {
            try {
                loop.call_soon_threadsafe(fn);
            } catch (...) {
                e = std::current_exception();
            }
        });
        th.join();
        if (e) std::rethrow_exception(e);
    });
}

TEST(Close, TimeStillWorksAfterClose) {
    EventLoop loop;
    double a = loop.time();
    loop.close();
    double b = loop.time();
    EXPECT_LE(a, b);
}

TEST(Close, DropsPendingCallbacksTimersAndThreadsafeCallbacksUnrun) {
    EventLoop loop;
    auto token = std::make_shared<int>(0);
    bool ran = false;
    loop.call_soon([token, &ran] { ran = true; });
    loop.call_later(1.0, [token, &ran] { ran = true; });
    loop.call_soon_threadsafe([token, &ran] { ran = true; });
    EXPECT_EQ(token.use_count(), 4);
    loop.close();
    EXPECT_FALSE(ran);
    EXPECT_EQ(token.use_count(), 1) << "close() must release the callbacks it drops";
    EXPECT_EQ(asyncio_test::ready_count(loop), 0u);
    EXPECT_EQ(asyncio_test::timer_count(loop), 0u);
}

TEST(Close, DestroysThePendingTasksCoroutines) {
    EventLoop loop(kVirtual);
    bool destroyed = false;
    struct Guard {
        bool* flag;
        ~Guard() { *flag = true; }
    };
    auto coro = [&]() -> Coro<> {
        Guard g{&destroyed};
        Future<int> never;
        co_await never;
    };
    Task<> t = loop.create_task(coro());
    run_briefly(loop);
    EXPECT_FALSE(destroyed);
    loop.close();
    EXPECT_TRUE(destroyed);
    EXPECT_FALSE(t.done());
    expect_loop_closed("task.cancel after close", [&] { t.cancel(); });
}

TEST(Close, DestructorClosesTheLoopAndReleasesCallbacks) {
    auto token = std::make_shared<int>(0);
    {
        EventLoop loop;
        loop.call_soon([token] {});
        loop.call_later(10.0, [token] {});
        EXPECT_EQ(token.use_count(), 3);
    }
    EXPECT_EQ(token.use_count(), 1);
}

// ---- time -----------------------------------------------------------------------------------

TEST(Time, RealClockIsMonotonic) {
    EventLoop loop;
    double prev = loop.time();
    for (int i = 0; i < 10000; ++i) {
        double now = loop.time();
        ASSERT_LE(prev, now);
        prev = now;
    }
}

TEST(Time, VirtualClockOnlyMovesToTimers) {
    EventLoop loop(kVirtual);
    const double t0 = loop.time();
    EXPECT_DOUBLE_EQ(loop.time(), t0);
    loop.call_later(0.25, [&] { loop.stop(); });
    loop.run_forever();
    EXPECT_DOUBLE_EQ(loop.time() - t0, 0.25);
}

// ---- exception handler ----------------------------------------------------------------------

TEST(ExceptionHandler, DefaultIsUnsetAndCanBeSetAndCleared) {
    EventLoop loop(kVirtual);
    EXPECT_FALSE(static_cast<bool>(loop.get_exception_handler()));
    loop.set_exception_handler([](EventLoop&, const ExceptionContext&) {});
    EXPECT_TRUE(static_cast<bool>(loop.get_exception_handler()));
    loop.set_exception_handler(nullptr);
    EXPECT_FALSE(static_cast<bool>(loop.get_exception_handler()));
}

TEST(ExceptionHandler, ReceivesExceptionFromCallSoonCallback) {
    EventLoop loop(kVirtual);
    EventLoop* seen_loop = nullptr;
    std::vector<ExceptionContext> contexts;
    loop.set_exception_handler([&](EventLoop& l, const ExceptionContext& c) {
        seen_loop = &l;
        contexts.push_back(c);
    });
    loop.call_soon([] { throw std::domain_error("zero_error"); });
    run_briefly(loop);
    ASSERT_EQ(contexts.size(), 1u);
    EXPECT_EQ(seen_loop, &loop);
    EXPECT_NE(contexts[0].message.find("Exception in callback"), std::string::npos) << contexts[0].message;
    EXPECT_FALSE(contexts[0].handle.empty());
    ASSERT_TRUE(contexts[0].exception);
    EXPECT_THROW(std::rethrow_exception(contexts[0].exception), std::domain_error);
    EXPECT_EQ(message_of(contexts[0].exception), "zero_error");
}

TEST(ExceptionHandler, ReceivesExceptionFromCallLaterCallback) {
    EventLoop loop(kVirtual);
    HandlerCapture handler;
    handler.install(loop);
    loop.call_later(0.01, [] { throw std::runtime_error("timer failed"); });
    loop.call_later(0.02, [&] { loop.stop(); });
    loop.run_forever();
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_TRUE(handler.contains("Exception in callback"));
    EXPECT_EQ(message_of(handler.contexts[0].exception), "timer failed");
}

TEST(ExceptionHandler, ReceivesNonStdExceptions) {
    EventLoop loop(kVirtual);
    HandlerCapture handler;
    handler.install(loop);
    loop.call_soon([] { throw 42; });
    run_briefly(loop);
    ASSERT_EQ(handler.contexts.size(), 1u);
    try {
        std::rethrow_exception(handler.contexts[0].exception);
    } catch (int v) {
        EXPECT_EQ(v, 42);
    } catch (...) {
        ADD_FAILURE() << "wrong exception";
    }
}

TEST(ExceptionHandler, DefaultHandlerLogsCallbackException) {
    EventLoop loop(kVirtual);
    LogCapture log;
    loop.call_soon([] { throw std::runtime_error("zero division"); });
    run_briefly(loop);
    EXPECT_TRUE(log.contains("Exception in callback")) << log.joined();
    EXPECT_TRUE(log.contains("zero division")) << log.joined();
}

TEST(ExceptionHandler, ClearingTheHandlerGoesBackToTheDefault) {
    EventLoop loop(kVirtual);
    int custom_calls = 0;
    loop.set_exception_handler([&](EventLoop&, const ExceptionContext&) { ++custom_calls; });
    loop.call_soon([] { throw std::runtime_error("first"); });
    run_briefly(loop);
    EXPECT_EQ(custom_calls, 1);
    loop.set_exception_handler(nullptr);
    LogCapture log;
    loop.call_soon([] { throw std::runtime_error("second"); });
    run_briefly(loop);
    EXPECT_EQ(custom_calls, 1);
    EXPECT_TRUE(log.contains("second")) << log.joined();
}

TEST(ExceptionHandler, CallExceptionHandlerPassesTheContextThrough) {
    EventLoop loop(kVirtual);
    HandlerCapture handler;
    handler.install(loop);
    auto e = std::make_exception_ptr(std::runtime_error("ctx"));
    loop.call_exception_handler({"custom message", e, "<Future x>", "<Handle y>"});
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_EQ(handler.contexts[0].message, "custom message");
    EXPECT_EQ(handler.contexts[0].exception, e);
    EXPECT_EQ(handler.contexts[0].future, "<Future x>");
    EXPECT_EQ(handler.contexts[0].handle, "<Handle y>");
}

TEST(ExceptionHandler, DefaultHandlerFormatsAllFields) {
    EventLoop loop(kVirtual);
    LogCapture log;
    loop.default_exception_handler(
        {"Something broke", std::make_exception_ptr(std::runtime_error("why")), "<Future f>", "<Handle h>"});
    ASSERT_EQ(log.messages.size(), 1u);
    const std::string& m = log.messages[0];
    EXPECT_EQ(m.rfind("Something broke", 0), 0u) << m;
    EXPECT_NE(m.find("future: <Future f>"), std::string::npos) << m;
    EXPECT_NE(m.find("handle: <Handle h>"), std::string::npos) << m;
    EXPECT_NE(m.find("why"), std::string::npos) << m;
}

TEST(ExceptionHandler, DefaultHandlerUsesAGenericMessageWhenEmpty) {
    EventLoop loop(kVirtual);
    LogCapture log;
    loop.default_exception_handler({"", nullptr, "", ""});
    EXPECT_TRUE(log.contains("Unhandled exception in event loop")) << log.joined();
}

TEST(ExceptionHandler, CustomHandlerCanDelegateToTheDefault) {
    EventLoop loop(kVirtual);
    LogCapture log;
    int calls = 0;
    loop.set_exception_handler([&](EventLoop& l, const ExceptionContext& c) {
        ++calls;
        l.default_exception_handler(c);
    });
    loop.call_soon([] { throw std::runtime_error("delegated"); });
    run_briefly(loop);
    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(log.contains("delegated")) << log.joined();
}

TEST(ExceptionHandler, ExceptionThrownByTheHandlerIsLogged) {
    // test_set_exc_handler_broken
    EventLoop loop(kVirtual);
    LogCapture log;
    loop.set_exception_handler([](EventLoop&, const ExceptionContext&) { throw std::logic_error("spam"); });
    bool later_ran = false;
    loop.call_soon([] { throw std::runtime_error("zero"); });
    loop.call_soon([&] { later_ran = true; });
    run_briefly(loop);
    EXPECT_TRUE(log.contains("Unhandled error in exception handler")) << log.joined();
    EXPECT_TRUE(log.contains("spam")) << log.joined();
    EXPECT_TRUE(later_ran);
}

TEST(ExceptionHandler, NonStdExceptionThrownByTheHandlerIsLogged) {
    EventLoop loop(kVirtual);
    LogCapture log;
    loop.set_exception_handler([](EventLoop&, const ExceptionContext&) { throw 7; });
    loop.call_soon([] { throw std::runtime_error("zero"); });
    run_briefly(loop);
    EXPECT_TRUE(log.contains("Unhandled error in exception handler")) << log.joined();
}

TEST(ExceptionHandler, BrokenHandlerLogStillShowsTheOriginalError) {
    // Python passes the original context along ('context': context) so the default handler's
    // log names the error that the broken handler was supposed to handle.
    EventLoop loop(kVirtual);
    LogCapture log;
    loop.set_exception_handler([](EventLoop&, const ExceptionContext&) { throw std::logic_error("spam"); });
    loop.call_soon([] { throw std::runtime_error("the original error"); });
    run_briefly(loop);
    EXPECT_TRUE(log.contains("the original error")) << log.joined();
}

TEST(ExceptionHandler, UnretrievedTaskExceptionIsReported) {
    // test_default_exc_handler_coro
    EventLoop loop(kVirtual);
    HandlerCapture handler;
    handler.install(loop);
    auto fail = []() -> Coro<> {
        co_await sleep(0.01);
        throw std::runtime_error("zero_error_coro");
    };
    (void)loop.create_task(fail());  // the handle is dropped at once
    loop.call_later(1.0, [&] { loop.stop(); });
    loop.run_forever();
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_EQ(handler.contexts[0].message, "Task exception was never retrieved");
    EXPECT_EQ(message_of(handler.contexts[0].exception), "zero_error_coro");
}

// ---- get_running_loop -----------------------------------------------------------------------

TEST(GetRunningLoop, OutsideALoopThrowsRuntimeError) {
    EXPECT_EQ(get_running_loop_or_null(), nullptr);
    try {
        (void)get_running_loop();
        ADD_FAILURE() << "expected RuntimeError";
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("no running event loop"), std::string::npos) << e.what();
    }
}

TEST(GetRunningLoop, InsideACallbackIsThatLoopAndNotAfterwards) {
    EventLoop loop(kVirtual);
    EventLoop* seen = nullptr;
    loop.call_soon([&] {
        seen = &get_running_loop();
        loop.stop();
    });
    loop.run_forever();
    EXPECT_EQ(seen, &loop);
    EXPECT_EQ(get_running_loop_or_null(), nullptr);
    EXPECT_THROW((void)get_running_loop(), RuntimeError);
}

TEST(GetRunningLoop, InsideACoroutineIsTheRunningLoop) {
    EventLoop loop(kVirtual);
    auto coro = [&]() -> Coro<bool> {
        co_await sleep(0);
        co_return &get_running_loop() == &loop;
    };
    EXPECT_TRUE(loop.run_until_complete(coro()));
}

TEST(GetRunningLoop, IsPerThread) {
    EventLoop loop(kVirtual);
    bool other_thread_threw = false;
    EventLoop* other_thread_saw = &loop;
    loop.call_soon([&] {
        std::thread th([&] {
            other_thread_saw = get_running_loop_or_null();
            try {
                (void)get_running_loop();
            } catch (const RuntimeError&) {
                other_thread_threw = true;
            }
        });
        th.join();
        loop.stop();
    });
    loop.run_forever();
    EXPECT_EQ(other_thread_saw, nullptr);
    EXPECT_TRUE(other_thread_threw);
}

TEST(GetRunningLoop, ResetAfterRunForeverThrows) {
    EventLoop loop(kVirtual);
    loop.call_soon([] { throw KeyboardInterrupt(); });
    loop.call_soon([&] { loop.stop(); });
    try {
        loop.run_forever();
    } catch (...) {
    }
    EXPECT_EQ(get_running_loop_or_null(), nullptr);
    EXPECT_FALSE(loop.is_running());
}

// ---- debug mode -----------------------------------------------------------------------------

TEST(DebugMode, SetAndGet) {
    EventLoop loop;
    EXPECT_FALSE(loop.get_debug());
    loop.set_debug(true);
    EXPECT_TRUE(loop.get_debug());
    loop.set_debug(false);
    EXPECT_FALSE(loop.get_debug());
    EventLoop debug_loop(LoopOptions{.debug = true, .virtual_clock = false});
    EXPECT_TRUE(debug_loop.get_debug());
}

TEST(DebugMode, RunOptionsDebugReachesTheLoop) {
    auto coro = []() -> Coro<bool> { co_return get_running_loop().get_debug(); };
    EXPECT_TRUE(asyncio_test::run_virtual(coro(), /*debug=*/true));
    EXPECT_FALSE(asyncio_test::run_virtual(coro(), /*debug=*/false));
}

TEST(DebugMode, SlowCallbackDurationDefaultsToPythonsAndIsSettable) {
    EventLoop loop;
    EXPECT_DOUBLE_EQ(loop.slow_callback_duration(), 0.1);
    loop.set_slow_callback_duration(0.5);
    EXPECT_DOUBLE_EQ(loop.slow_callback_duration(), 0.5);
}

TEST(DebugMode, SlowCallbackIsLogged) {
    // test_log_slow_callbacks
    EventLoop loop;
    loop.set_debug(true);
    loop.set_slow_callback_duration(0);
    LogCapture log;
    loop.call_soon([&] {
        busy_wait(0.002);
        loop.stop();
    });
    loop.run_forever();
    const std::regex re(R"(^Executing <Handle.*> took ([0-9]+\.[0-9]+) seconds$)");
    bool found = false;
    for (const auto& m : log.messages) {
        std::smatch match;
        if (std::regex_match(m, match, re)) {
            found = true;
            EXPECT_GE(std::stod(match[1].str()), 0.002) << m;
        }
    }
    EXPECT_TRUE(found) << log.joined();
}

TEST(DebugMode, SlowTaskStepIsLoggedWithTheTaskName) {
    EventLoop loop;
    loop.set_debug(true);
    loop.set_slow_callback_duration(0);
    LogCapture log;
    auto slow = [&]() -> Coro<> {
        busy_wait(0.002);
        loop.stop();
        co_return;
    };
    Task<> t = loop.create_task(slow(), "slowpoke");
    loop.run_forever();
    bool found = false;
    for (const auto& m : log.messages)
        if (m.rfind("Executing <Task", 0) == 0 && m.find("slowpoke") != std::string::npos &&
            m.find(" took ") != std::string::npos)
            found = true;
    EXPECT_TRUE(found) << log.joined();
    EXPECT_TRUE(t.done());
}

TEST(DebugMode, FastCallbacksAreNotLogged) {
    EventLoop loop;
    loop.set_debug(true);
    loop.set_slow_callback_duration(60.0);
    LogCapture log;
    loop.call_soon([&] { loop.stop(); });
    loop.run_forever();
    EXPECT_FALSE(log.contains("Executing")) << log.joined();
}

TEST(DebugMode, SlowCallbacksAreNotLoggedOutsideDebugMode) {
    EventLoop loop;
    loop.set_slow_callback_duration(0);
    LogCapture log;
    loop.call_soon([&] {
        busy_wait(0.002);
        loop.stop();
    });
    loop.run_forever();
    EXPECT_FALSE(log.contains("Executing")) << log.joined();
}

// ---- signals --------------------------------------------------------------------------------

namespace {
void (*current_disposition(int sig))(int) {
    struct sigaction sa {};
    ::sigaction(sig, nullptr, &sa);
    return sa.sa_handler;
}
}  // namespace

TEST(Signals, HandlerRunsOnTheLoopWhenTheSignalArrives) {
    EventLoop loop(kVirtual);
    const double t0 = loop.time();
    int caught = 0;
    bool on_loop = false;
    loop.add_signal_handler(SIGUSR1, [&] {
        ++caught;
        on_loop = get_running_loop_or_null() == &loop;
        loop.stop();
    });
    EXPECT_NE(current_disposition(SIGUSR1), SIG_DFL);
    loop.call_soon([] { ::raise(SIGUSR1); });
    loop.call_later(10.0, [&] { loop.stop(); });  // watchdog (instant on the virtual clock)
    loop.run_forever();
    EXPECT_EQ(caught, 1);
    EXPECT_TRUE(on_loop);
    EXPECT_DOUBLE_EQ(loop.time(), t0) << "the handler ran only when the watchdog woke the loop";
    EXPECT_TRUE(loop.remove_signal_handler(SIGUSR1));
    EXPECT_EQ(current_disposition(SIGUSR1), SIG_DFL);
    EXPECT_FALSE(loop.remove_signal_handler(SIGUSR1));
}

TEST(Signals, HandlerIsACallbackNotRunInsideTheSignalHandler) {
    EventLoop loop(kVirtual);
    std::vector<std::string> order;
    loop.add_signal_handler(SIGUSR1, [&] {
        order.push_back("handler");
        loop.stop();
    });
    loop.call_soon([&] {
        ::raise(SIGUSR1);
        order.push_back("after raise");
    });
    loop.call_later(10.0, [&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(order, (std::vector<std::string>{"after raise", "handler"}));
    loop.remove_signal_handler(SIGUSR1);
}

TEST(Signals, SignalRaisedBeforeRunIsHandledOnceRunning) {
    EventLoop loop(kVirtual);
    int caught = 0;
    loop.add_signal_handler(SIGUSR2, [&] { ++caught; });
    ::raise(SIGUSR2);
    EXPECT_EQ(caught, 0);
    loop.call_later(1.0, [&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(caught, 1);
    loop.remove_signal_handler(SIGUSR2);
}

TEST(Signals, SignalFromAnotherThreadWakesALoopBlockedInPoll) {
    // test_signal_handling_while_selecting
    EventLoop loop;  // real clock
    int caught = 0;
    bool watchdog_fired = false;
    loop.add_signal_handler(SIGUSR1, [&] {
        ++caught;
        loop.stop();
    });
    loop.call_later(60.0, [&] {
        watchdog_fired = true;
        loop.stop();
    });
    std::promise<void> running;
    std::thread th;
    loop.call_soon([&] {
        th = std::thread([&, started = running.get_future()]() mutable {
            started.wait();
            ::kill(::getpid(), SIGUSR1);
        });
        running.set_value();
    });
    loop.run_forever();
    th.join();
    EXPECT_EQ(caught, 1);
    EXPECT_FALSE(watchdog_fired);
    loop.remove_signal_handler(SIGUSR1);
}

TEST(Signals, TwoSignalsRunTheirOwnHandlers) {
    EventLoop loop(kVirtual);
    std::vector<std::string> got;
    loop.add_signal_handler(SIGUSR1, [&] { got.push_back("usr1"); });
    loop.add_signal_handler(SIGUSR2, [&] { got.push_back("usr2"); });
    loop.call_soon([] {
        ::raise(SIGUSR1);
        ::raise(SIGUSR2);
    });
    loop.call_later(1.0, [&] { loop.stop(); });
    loop.run_forever();
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, (std::vector<std::string>{"usr1", "usr2"}));
    EXPECT_TRUE(loop.remove_signal_handler(SIGUSR1));
    EXPECT_TRUE(loop.remove_signal_handler(SIGUSR2));
}

TEST(Signals, AddingAgainReplacesTheHandler) {
    EventLoop loop(kVirtual);
    int first = 0, second = 0;
    loop.add_signal_handler(SIGUSR1, [&] { ++first; });
    loop.add_signal_handler(SIGUSR1, [&] { ++second; });
    loop.call_soon([] { ::raise(SIGUSR1); });
    loop.call_later(1.0, [&] { loop.stop(); });
    loop.run_forever();
    EXPECT_EQ(first, 0);
    EXPECT_EQ(second, 1);
    loop.remove_signal_handler(SIGUSR1);
}

TEST(Signals, HandlerExceptionGoesToTheExceptionHandler) {
    EventLoop loop(kVirtual);
    HandlerCapture handler;
    handler.install(loop);
    loop.add_signal_handler(SIGUSR1, [] { throw std::runtime_error("in signal handler"); });
    loop.call_soon([] { ::raise(SIGUSR1); });
    loop.call_later(1.0, [&] { loop.stop(); });
    loop.run_forever();
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_EQ(message_of(handler.contexts[0].exception), "in signal handler");
    loop.remove_signal_handler(SIGUSR1);
}

TEST(Signals, InvalidSignalNumbersAreRejected) {
    EventLoop loop(kVirtual);
    auto fn = [] {};
    EXPECT_THROW(loop.add_signal_handler(0, fn), std::invalid_argument);
    EXPECT_THROW(loop.add_signal_handler(-1, fn), std::invalid_argument);
    EXPECT_THROW(loop.add_signal_handler(NSIG + 1, fn), std::invalid_argument);
    EXPECT_THROW(loop.add_signal_handler(1000, fn), std::invalid_argument);
}

TEST(Signals, UncatchableSignalThrowsRuntimeError) {
    // Python: add_signal_handler(SIGKILL, ...) -> RuntimeError('sig 9 cannot be caught').
    EventLoop loop(kVirtual);
    auto fn = [] {};
    EXPECT_THROW(loop.add_signal_handler(SIGKILL, fn), RuntimeError);
    EXPECT_THROW(loop.add_signal_handler(SIGSTOP, fn), RuntimeError);
    EXPECT_FALSE(loop.remove_signal_handler(SIGKILL));
}

TEST(Signals, RemoveWithInvalidSignalNumberThrowsInvalidArgument) {
    // Python: remove_signal_handler(0 / -1 / NSIG+1) -> ValueError.
    EventLoop loop(kVirtual);
    EXPECT_THROW(loop.remove_signal_handler(0), std::invalid_argument);
    EXPECT_THROW(loop.remove_signal_handler(-1), std::invalid_argument);
    EXPECT_THROW(loop.remove_signal_handler(NSIG + 1), std::invalid_argument);
}

TEST(Signals, EveryValidSignalNumberUpToSigrtmaxIsAccepted) {
    // Python accepts 1..NSIG-1 (64 on Linux, SIGRTMAX) except SIGKILL/SIGSTOP.
    EventLoop loop(kVirtual);
    int caught = 0;
    EXPECT_NO_THROW(loop.add_signal_handler(SIGRTMAX, [&] { ++caught; }));
    if (loop.remove_signal_handler(SIGRTMAX)) {
        loop.add_signal_handler(SIGRTMAX, [&] { ++caught; });
        loop.call_soon([] { ::raise(SIGRTMAX); });
        loop.call_later(1.0, [&] { loop.stop(); });
        loop.run_forever();
        EXPECT_EQ(caught, 1);
        loop.remove_signal_handler(SIGRTMAX);
    }
}

TEST(Signals, RemoveWithoutHandlerReturnsFalse) {
    EventLoop loop(kVirtual);
    EXPECT_FALSE(loop.remove_signal_handler(SIGUSR1));
    EXPECT_FALSE(loop.remove_signal_handler(SIGKILL));
}

TEST(Signals, OnlyTheMainThreadMayAddHandlers) {
    std::string msg;
    std::thread th([&] {
        EventLoop loop(kVirtual);
        try {
            loop.add_signal_handler(SIGUSR1, [] {});
        } catch (const RuntimeError& e) {
            msg = e.what();
        }
    });
    th.join();
    EXPECT_NE(msg.find("main thread"), std::string::npos) << msg;
    EXPECT_EQ(current_disposition(SIGUSR1), SIG_DFL);
}

TEST(Signals, CloseRemovesTheHandlers) {
    EventLoop loop(kVirtual);
    loop.add_signal_handler(SIGUSR1, [] {});
    loop.add_signal_handler(SIGUSR2, [] {});
    loop.close();
    EXPECT_EQ(current_disposition(SIGUSR1), SIG_DFL);
    EXPECT_EQ(current_disposition(SIGUSR2), SIG_DFL);
    EXPECT_FALSE(loop.remove_signal_handler(SIGUSR1));
}

extern "C" void programs_own_handler(int) {}

TEST(Signals, RemovingAHandlerPutsBackTheProgramsOwnDisposition) {
    // A C++ program's SIG_IGN or own handler is not the library's to drop (Python resets to
    // SIG_DFL; its interpreter owns every disposition).
    ::signal(SIGUSR1, SIG_IGN);
    ::signal(SIGUSR2, programs_own_handler);
    {
        EventLoop loop(kVirtual);
        loop.add_signal_handler(SIGUSR1, [] {});
        loop.add_signal_handler(SIGUSR2, [] {});
        EXPECT_NE(current_disposition(SIGUSR1), SIG_IGN);
        EXPECT_TRUE(loop.remove_signal_handler(SIGUSR1));
        EXPECT_EQ(current_disposition(SIGUSR1), SIG_IGN);
        loop.close();  // removes the SIGUSR2 handler
        EXPECT_EQ(current_disposition(SIGUSR2), &programs_own_handler);
    }
    ::signal(SIGUSR1, SIG_DFL);
    ::signal(SIGUSR2, SIG_DFL);
}

TEST(Signals, ReplacingAHandlerKeepsTheDispositionToRestore) {
    ::signal(SIGUSR1, SIG_IGN);
    EventLoop loop(kVirtual);
    loop.add_signal_handler(SIGUSR1, [] {});
    loop.add_signal_handler(SIGUSR1, [] {});  // replaces ours; the program's SIG_IGN is kept
    EXPECT_TRUE(loop.remove_signal_handler(SIGUSR1));
    EXPECT_EQ(current_disposition(SIGUSR1), SIG_IGN);
    ::signal(SIGUSR1, SIG_DFL);
}

TEST(Signals, SignalsTheCLibraryReservesAreInvalidNumbers) {
    // Python's valid_signals() is what sigfillset() fills: glibc keeps 32 and 33 for itself.
    EventLoop loop(kVirtual);
    sigset_t all;
    sigfillset(&all);
    int reserved = 0;
    for (int sig = 1; sig < SIGRTMIN; ++sig) {
        if (sigismember(&all, sig) == 1) continue;
        ++reserved;
        EXPECT_THROW(loop.add_signal_handler(sig, [] {}), std::invalid_argument) << sig;
        EXPECT_THROW(loop.remove_signal_handler(sig), std::invalid_argument) << sig;
    }
    EXPECT_GT(reserved, 0);  // glibc reserves signals below SIGRTMIN
    try {
        loop.add_signal_handler(0, [] {});
        ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "invalid signal number 0");
    }
}

TEST(Signals, HandlersMoveToAnotherLoopOnlyAfterTheFirstLetsGo) {
    // One process-wide wake-up channel: a second loop cannot take signals over while the
    // first still has handlers (Python silently steals them; we refuse).
    EventLoop first(kVirtual);
    EventLoop second(kVirtual);
    first.add_signal_handler(SIGUSR1, [] {});
    EXPECT_THROW(second.add_signal_handler(SIGUSR2, [] {}), RuntimeError);
    first.remove_signal_handler(SIGUSR1);
    int caught = 0;
    second.add_signal_handler(SIGUSR2, [&] { ++caught; });
    second.call_soon([] { ::raise(SIGUSR2); });
    second.call_later(1.0, [&] { second.stop(); });
    second.run_forever();
    EXPECT_EQ(caught, 1);
    second.remove_signal_handler(SIGUSR2);
}
