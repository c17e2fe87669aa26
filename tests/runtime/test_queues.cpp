// tests/runtime/test_queues.cpp - asyncio::Queue, PriorityQueue, LifoQueue.
//
// The semantic scenarios of CPython's Lib/test/test_asyncio/test_queues.py (3.13, including
// the shutdown tests), the cancellation races CPython fixed in Queue.put()/get() (a waiter
// woken and then cancelled passes its wake-up on: no lost item, no lost slot), FIFO fairness,
// move-only items, loop re-binding, the allocation-free uncontended path, and producer /
// consumer pipelines with several workers, join() and shutdown().
//
// Python's tests peek at q._getters / q._putters; here repr() shows the same counts
// ("_getters[1]"), as Python's repr does.
//
// Lifetime rule used throughout: a coroutine handed to create_task() is q.get()/q.put() (the
// queue outlives the task), a free function, or a lambda stored in a named variable that
// outlives the task; never a capturing lambda temporary (its captures would dangle).
#include "support.hpp"

#include <asyncio/queues.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace asyncio;
using asyncio_test::now;
using asyncio_test::run_virtual;
using asyncio_test::settle;

// ---- allocation counting (only where the frame pool is on: sanitizer builds bypass it) ---
#if ASYNCIO_FRAME_POOL_ENABLED
namespace {
std::size_t g_allocations = 0;
bool g_counting = false;
}  // namespace
// Not inlined: GCC would otherwise pair the inlined malloc/free with new/delete expressions
// and warn (-Wmismatched-new-delete).
[[gnu::noinline]] void* operator new(std::size_t n) {
    if (g_counting) ++g_allocations;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#endif

namespace {

bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

/// What an awaitable ended with, naming the queue exceptions.
enum class End { value, shutdown, empty, full, cancelled, timeout, other };

template <class A>
Coro<End> end_of(A aw) {
    try {
        co_await std::move(aw);
        co_return End::value;
    } catch (const QueueShutDown&) {
        co_return End::shutdown;
    } catch (const QueueEmpty&) {
        co_return End::empty;
    } catch (const QueueFull&) {
        co_return End::full;
    } catch (const asyncio::TimeoutError&) {
        co_return End::timeout;
    } catch (const CancelledError&) {
        co_return End::cancelled;
    } catch (...) {
        co_return End::other;
    }
}

/// The end of a finished task.
template <class T>
End task_end(const Task<T>& t) {
    if (t.cancelled()) return End::cancelled;
    auto e = const_cast<Task<T>&>(t).exception();
    if (!e) return End::value;
    try {
        std::rethrow_exception(e);
    } catch (const QueueShutDown&) {
        return End::shutdown;
    } catch (const QueueEmpty&) {
        return End::empty;
    } catch (const QueueFull&) {
        return End::full;
    } catch (...) {
        return End::other;
    }
}

template <class F>
End sync_end(F&& fn) {
    try {
        fn();
        return End::value;
    } catch (const QueueShutDown&) {
        return End::shutdown;
    } catch (const QueueEmpty&) {
        return End::empty;
    } catch (const QueueFull&) {
        return End::full;
    } catch (...) {
        return End::other;
    }
}

// =========================================================================================
// QueueBasicTests
// =========================================================================================

TEST(QueueBasic, ReprShowsGettersPuttersItemsAndTasks) {
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        EXPECT_TRUE(q.repr().starts_with("<Queue at ")) << q.repr();
        EXPECT_EQ(q.str(), "<Queue maxsize=0>");

        // getters
        Task<int> getter = create_task(q.get());
        co_await asyncio::sleep(0);  // let it start waiting
        EXPECT_TRUE(contains(q.repr(), "_getters[1]")) << q.repr();
        EXPECT_TRUE(contains(q.str(), "_getters[1]")) << q.str();
        q.put_nowait(0);
        EXPECT_EQ(co_await getter, 0);
        EXPECT_FALSE(contains(q.repr(), "_getters"));

        // putters
        Queue<int> q2(1);
        q2.put_nowait(1);
        Task<> putter = create_task(q2.put(2));
        co_await asyncio::sleep(0);
        EXPECT_TRUE(contains(q2.str(), "_putters[1]")) << q2.str();
        (void)q2.get_nowait();
        co_await putter;
        EXPECT_TRUE(putter.done());

        Queue<int> q3;
        q3.put_nowait(1);
        EXPECT_TRUE(contains(q3.repr(), "_queue=[1]")) << q3.repr();
        EXPECT_EQ(q3.str(), "<Queue maxsize=0 _queue=[1] tasks=1>");

        Queue<std::string> qs;
        qs.put_nowait("a");
        qs.put_nowait("b");
        EXPECT_EQ(qs.str(), "<Queue maxsize=0 _queue=['a', 'b'] tasks=2>");
    }());
}

TEST(QueueBasic, ReprNamesTheSubclass) {
    LifoQueue<int> lq(3);
    PriorityQueue<int> pq;
    EXPECT_EQ(lq.str(), "<LifoQueue maxsize=3>");
    EXPECT_EQ(pq.str(), "<PriorityQueue maxsize=0>");
    Queue<std::pair<int, int>> unprintable;  // no operator<<: items are not shown
    unprintable.put_nowait({1, 2});
    EXPECT_EQ(unprintable.str(), "<Queue maxsize=0 tasks=1>");
}

TEST(QueueBasic, Empty) {
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        EXPECT_TRUE(q.empty());
        co_await q.put(1);
        EXPECT_FALSE(q.empty());
        EXPECT_EQ(1, co_await q.get());
        EXPECT_TRUE(q.empty());
    }());
}

TEST(QueueBasic, Full) {
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        EXPECT_FALSE(q.full());
        Queue<int> q1(1);
        co_await q1.put(1);
        EXPECT_TRUE(q1.full());
    }());
}

TEST(QueueBasic, NonPositiveMaxsizeMeansUnbounded) {
    Queue<int> q(-1);
    for (int i = 0; i < 100; ++i) q.put_nowait(i);
    EXPECT_FALSE(q.full());
    EXPECT_EQ(q.qsize(), 100u);
    EXPECT_EQ(q.maxsize(), -1);
}

TEST(QueueBasic, Order) {
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        for (int i : {1, 3, 2}) co_await q.put(i);
        std::vector<int> items;
        for (int i = 0; i < 3; ++i) items.push_back(co_await q.get());
        EXPECT_EQ(items, (std::vector<int>{1, 3, 2}));
    }());
}

TEST(QueueBasic, Maxsize) {
    run_virtual([]() -> Coro<> {
        Queue<int> q(2);
        EXPECT_EQ(2, q.maxsize());
        std::vector<int> have_been_put;
        auto putter = [&]() -> Coro<bool> {
            for (int i = 0; i < 3; ++i) {
                co_await q.put(i);
                have_been_put.push_back(i);
            }
            co_return true;
        };
        Task<bool> t = create_task(putter());
        for (int i = 0; i < 2; ++i) co_await asyncio::sleep(0);

        // The putter is blocked after putting two items.
        EXPECT_EQ(have_been_put, (std::vector<int>{0, 1}));
        EXPECT_EQ(0, co_await q.get());

        // Let the putter resume and put the last item.
        co_await asyncio::sleep(0);
        EXPECT_EQ(have_been_put, (std::vector<int>{0, 1, 2}));
        EXPECT_EQ(1, co_await q.get());
        EXPECT_EQ(2, co_await q.get());

        co_await asyncio::sleep(0);
        EXPECT_TRUE(t.done());
        EXPECT_TRUE(t.result());
    }());
}

TEST(QueueBasic, NowaitOperationsWorkWithoutARunningLoop) {
    Queue<int> q(2);
    q.put_nowait(1);
    q.put_nowait(2);
    EXPECT_THROW(q.put_nowait(3), QueueFull);
    EXPECT_EQ(q.get_nowait(), 1);
    q.task_done();
    EXPECT_EQ(q.get_nowait(), 2);
    EXPECT_THROW(q.get_nowait(), QueueEmpty);
}

TEST(QueueBasic, AnUncontendedPutOrGetDoesNotSuspend) {
    // Like Python: `await q.get()` on a non-empty queue, `await q.put()` on a non-full one and
    // `await q.join()` with nothing unfinished complete without yielding to the loop.
    run_virtual([]() -> Coro<> {
        Queue<int> q(5);
        bool other_ran = false;
        auto other = [&]() -> Coro<> {
            other_ran = true;
            co_return;
        };
        Task<> t = create_task(other());
        for (int i = 0; i < 5; ++i) co_await q.put(i);
        for (int i = 0; i < 5; ++i) EXPECT_EQ(co_await q.get(), i);
        for (int i = 0; i < 5; ++i) q.task_done();
        co_await q.join();
        EXPECT_FALSE(other_ran);
        co_await t;
        EXPECT_TRUE(other_ran);
    }());
}

// =========================================================================================
// QueueGetTests
// =========================================================================================

TEST(QueueGet, BlockingGet) {
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        q.put_nowait(1);
        EXPECT_EQ(1, co_await q.get());
    }());
}

TEST(QueueGet, GetWakesABlockedPutter) {
    run_virtual([]() -> Coro<> {
        Queue<int> q(1);
        co_await q.put(1);
        Task<> putter = create_task(q.put(2));
        co_await asyncio::sleep(0);
        EXPECT_TRUE(contains(q.str(), "_putters[1]"));
        EXPECT_EQ(1, co_await q.get());
        EXPECT_FALSE(contains(q.str(), "_putters"));  // popped and woken by get
        co_await putter;
        EXPECT_EQ(q.get_nowait(), 2);
    }());
}

TEST(QueueGet, BlockingGetWait) {
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        bool started = false;
        bool finished = false;
        auto queue_get = [&]() -> Coro<int> {
            started = true;
            int res = co_await q.get();
            finished = true;
            co_return res;
        };
        Task<int> t = create_task(queue_get());
        co_await asyncio::sleep(0);
        EXPECT_TRUE(started);
        EXPECT_FALSE(finished);
        get_running_loop().call_later(0.01, [&] { q.put_nowait(1); });
        int res = co_await t;
        EXPECT_TRUE(finished);
        EXPECT_EQ(1, res);
        EXPECT_DOUBLE_EQ(now(), 0.01);
    }());
}

TEST(QueueGet, NonblockingGet) {
    Queue<int> q;
    q.put_nowait(1);
    EXPECT_EQ(1, q.get_nowait());
}

TEST(QueueGet, NonblockingGetException) {
    Queue<int> q;
    EXPECT_THROW(q.get_nowait(), QueueEmpty);
}

TEST(QueueGet, GetCancelledRace) {
    run_virtual([]() -> Coro<> {
        Queue<std::string> q;
        Task<std::string> t1 = create_task(q.get());
        Task<std::string> t2 = create_task(q.get());
        co_await asyncio::sleep(0);
        t1.cancel();
        co_await asyncio::sleep(0);
        EXPECT_TRUE(t1.done());
        co_await q.put("a");
        co_await asyncio::sleep(0);
        EXPECT_EQ("a", co_await t2);
    }());
}

TEST(QueueGet, GetWithWaitingPutters) {
    run_virtual([]() -> Coro<> {
        Queue<std::string> q(1);
        Task<> pa = create_task(q.put("a"));
        Task<> pb = create_task(q.put("b"));
        EXPECT_EQ(co_await q.get(), "a");
        EXPECT_EQ(co_await q.get(), "b");
        co_await pa;
        co_await pb;
    }());
}

Coro<> consume(Queue<int>* q, int n) {
    for (int i = 0; i < n; ++i) (void)co_await q->get();
}
Coro<> produce(Queue<int>* q, int n) {
    for (int i = 0; i < n; ++i) co_await q->put(i);
}

TEST(QueueGet, WhyAreGettersWaiting) {
    // A producer and a consumer on a maxsize=1 queue must not deadlock.
    run_virtual([]() -> Coro<> {
        Queue<int> q(1);
        co_await task_group([&](TaskGroup& tg) -> Coro<> {
            tg.create_task(produce(&q, 5));
            tg.create_task(consume(&q, 5));
            co_return;
        });
        EXPECT_TRUE(q.empty());
    }());
}

TEST(QueueGet, CancelledGettersNotBeingHeldInGetters) {
    run_virtual([]() -> Coro<> {
        Queue<int> q(5);
        EXPECT_EQ(co_await end_of(asyncio::wait_for(q.get(), 0.1)), End::timeout);
        EXPECT_FALSE(contains(q.str(), "_getters"));
        EXPECT_DOUBLE_EQ(now(), 0.1);
    }());
}

// =========================================================================================
// QueuePutTests
// =========================================================================================

TEST(QueuePut, BlockingPut) {
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        // No maxsize, won't block.
        co_await q.put(1);
        EXPECT_EQ(1, co_await q.get());
    }());
}

TEST(QueuePut, BlockingPutWait) {
    run_virtual([]() -> Coro<> {
        Queue<int> q(1);
        bool started = false;
        bool finished = false;
        auto queue_put = [&]() -> Coro<> {
            started = true;
            co_await q.put(1);
            co_await q.put(2);
            finished = true;
        };
        get_running_loop().call_later(0.01, [&] { (void)q.get_nowait(); });
        Task<> t = create_task(queue_put());
        co_await asyncio::sleep(0);
        EXPECT_TRUE(started);
        EXPECT_FALSE(finished);
        co_await t;
        EXPECT_TRUE(finished);
        EXPECT_DOUBLE_EQ(now(), 0.01);
        EXPECT_EQ(q.get_nowait(), 2);
    }());
}

TEST(QueuePut, NonblockingPut) {
    Queue<int> q;
    q.put_nowait(1);
    EXPECT_EQ(1, q.get_nowait());
}

TEST(QueuePut, GetCancelDropOnePendingReader) {
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        Task<int> reader = create_task(q.get());
        co_await asyncio::sleep(0);

        q.put_nowait(1);
        q.put_nowait(2);
        reader.cancel();

        if (co_await end_of(reader) == End::cancelled) {
            // try again
            reader = create_task(q.get());
            co_await reader;
        }
        // If we get 2, it means 1 got dropped!
        EXPECT_EQ(1, reader.result());
    }());
}

TEST(QueuePut, GetCancelDropManyPendingReaders) {
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        Task<int> reader1, reader2, reader3;
        co_await task_group([&](TaskGroup& tg) -> Coro<> {
            reader1 = tg.create_task(q.get());
            reader2 = tg.create_task(q.get());
            reader3 = tg.create_task(q.get());
            co_await asyncio::sleep(0);

            q.put_nowait(1);
            q.put_nowait(2);
            reader1.cancel();

            EXPECT_EQ(co_await end_of(reader1), End::cancelled);
            co_await reader3;
        });
        // It is undefined in which order concurrent readers receive results.
        EXPECT_EQ((std::set<int>{reader2.result(), reader3.result()}), (std::set<int>{1, 2}));
    }());
}

TEST(QueuePut, PutCancelDrop) {
    run_virtual([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);

        // Putting a second item in the queue has to block (qsize=1).
        Task<> writer = create_task(q.put(2));
        co_await asyncio::sleep(0);

        EXPECT_EQ(q.get_nowait(), 1);

        writer.cancel();
        if (co_await end_of(writer) == End::cancelled) {
            // try again
            writer = create_task(q.put(2));
            co_await writer;
        }
        EXPECT_EQ(q.get_nowait(), 2);
        EXPECT_EQ(q.qsize(), 0u);
    }());
}

TEST(QueuePut, NonblockingPutException) {
    Queue<int> q(1);
    q.put_nowait(1);
    EXPECT_THROW(q.put_nowait(2), QueueFull);
}

TEST(QueuePut, PutBlocksUntilAGetterTakesAnItem) {
    // Python's test_put_cancelled: the put task completes before the getter resumes.
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        auto queue_put = [&]() -> Coro<bool> {
            co_await q.put(1);
            co_return true;
        };
        Task<bool> t = create_task(queue_put());
        EXPECT_EQ(1, co_await q.get());
        EXPECT_TRUE(t.done());
        EXPECT_TRUE(t.result());
    }());
}

TEST(QueuePut, PutCancelledRace) {
    run_virtual([]() -> Coro<> {
        Queue<std::string> q(1);
        Task<> put_a = create_task(q.put("a"));
        Task<> put_b = create_task(q.put("b"));
        Task<> put_c = create_task(q.put("X"));

        co_await asyncio::sleep(0);
        EXPECT_TRUE(put_a.done());
        EXPECT_FALSE(put_b.done());

        put_c.cancel();
        co_await asyncio::sleep(0);
        EXPECT_TRUE(put_c.done());
        EXPECT_EQ(q.get_nowait(), "a");
        co_await asyncio::sleep(0);
        EXPECT_EQ(q.get_nowait(), "b");

        co_await put_b;
        EXPECT_TRUE(put_c.cancelled());
        EXPECT_TRUE(q.empty());
    }());
}

TEST(QueuePut, PutWithWaitingGetters) {
    run_virtual([]() -> Coro<> {
        Queue<std::string> q;
        Task<std::string> t = create_task(q.get());
        co_await asyncio::sleep(0);
        co_await q.put("a");
        EXPECT_EQ(co_await t, "a");
    }());
}

Coro<> put_one(Queue<int>* q, int item) { co_await q->put(item); }

Coro<> drain_after_yield(Queue<int>* q) {
    co_await asyncio::sleep(0);
    std::size_t num = q->qsize();
    for (std::size_t i = 0; i < num; ++i) (void)q->get_nowait();
}

TEST(QueuePut, WhyArePuttersWaiting) {
    run_virtual([]() -> Coro<> {
        Queue<int> q(2);
        co_await task_group([&](TaskGroup& tg) -> Coro<> {
            tg.create_task(drain_after_yield(&q));
            for (int i = 0; i < 4; ++i) tg.create_task(put_one(&q, i));
            co_return;
        });
        EXPECT_EQ(q.get_nowait(), 2);
        EXPECT_EQ(q.get_nowait(), 3);
    }());
}

TEST(QueuePut, CancelledPutsNotBeingHeldInPutters) {
    run_virtual([]() -> Coro<> {
        // Full queue.
        Queue<int> q(1);
        q.put_nowait(1);

        // Task waiting for space to put an item in the queue.
        Task<> put_task = create_task(q.put(1));
        co_await asyncio::sleep(0);

        // The putter is removed from the putters when the task is cancelled.
        EXPECT_TRUE(contains(q.str(), "_putters[1]"));
        put_task.cancel();
        EXPECT_EQ(co_await end_of(put_task), End::cancelled);
        EXPECT_FALSE(contains(q.str(), "_putters"));
    }());
}

TEST(QueuePut, CancelledPutAfterItsPutterWasPoppedStillRaisesCancelledError) {
    // Python's test_cancelled_put_silence_value_error_exception.
    run_virtual([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);

        Task<> put_task = create_task(q.put(1));
        co_await asyncio::sleep(0);

        // get_nowait() removes put_task's putter from the putters.
        (void)q.get_nowait();
        // When cancelled, put() tries to remove its putter, which is gone: that is fine.
        put_task.cancel();
        EXPECT_EQ(co_await end_of(put_task), End::cancelled);
        EXPECT_TRUE(q.empty());
    }());
}

// =========================================================================================
// LifoQueueTests / PriorityQueueTests
// =========================================================================================

TEST(LifoQueue, Order) {
    run_virtual([]() -> Coro<> {
        LifoQueue<int> q;
        for (int i : {1, 3, 2}) co_await q.put(i);
        std::vector<int> items;
        for (int i = 0; i < 3; ++i) items.push_back(co_await q.get());
        EXPECT_EQ(items, (std::vector<int>{2, 3, 1}));
    }());
}

TEST(PriorityQueue, Order) {
    run_virtual([]() -> Coro<> {
        PriorityQueue<int> q;
        for (int i : {1, 3, 2}) co_await q.put(i);
        std::vector<int> items;
        for (int i = 0; i < 3; ++i) items.push_back(co_await q.get());
        EXPECT_EQ(items, (std::vector<int>{1, 2, 3}));
    }());
}

TEST(PriorityQueue, SmallestFirstLikeHeapqOnManyItems) {
    PriorityQueue<int> q;
    std::vector<int> in;
    for (int i = 0; i < 200; ++i) in.push_back((i * 7919) % 211);
    for (int v : in) q.put_nowait(v);
    std::vector<int> out;
    while (!q.empty()) out.push_back(q.get_nowait());
    std::sort(in.begin(), in.end());
    EXPECT_EQ(out, in);
}

TEST(PriorityQueue, PriorityDataPairs) {
    // Python's typical use: entries are (priority, data) tuples.
    PriorityQueue<std::pair<int, std::string>> q;
    q.put_nowait({3, "low"});
    q.put_nowait({1, "high"});
    q.put_nowait({2, "mid"});
    EXPECT_EQ(q.get_nowait().second, "high");
    EXPECT_EQ(q.get_nowait().second, "mid");
    EXPECT_EQ(q.get_nowait().second, "low");
}

TEST(PriorityQueue, CustomComparator) {
    PriorityQueue<int, std::greater<int>> q;  // largest first
    for (int i : {1, 3, 2}) q.put_nowait(i);
    EXPECT_EQ(q.get_nowait(), 3);
    EXPECT_EQ(q.get_nowait(), 2);
    EXPECT_EQ(q.get_nowait(), 1);

    auto by_length = [](const std::string& a, const std::string& b) { return a.size() < b.size(); };
    PriorityQueue<std::string, decltype(by_length)> s(0, by_length);
    s.put_nowait("ccc");
    s.put_nowait("a");
    s.put_nowait("bb");
    EXPECT_EQ(s.get_nowait(), "a");
    EXPECT_EQ(s.get_nowait(), "bb");
    EXPECT_EQ(s.get_nowait(), "ccc");
}

TEST(PriorityQueue, IsAQueue) {
    // Like Python's subclasses: code written against Queue<T>& takes any of the three.
    run_virtual([]() -> Coro<> {
        PriorityQueue<int> pq;
        LifoQueue<int> lq;
        Queue<int>& a = pq;
        Queue<int>& b = lq;
        for (int i : {2, 1, 3}) {
            co_await a.put(i);
            co_await b.put(i);
        }
        EXPECT_EQ(co_await a.get(), 1);
        EXPECT_EQ(co_await b.get(), 3);
        EXPECT_EQ(a.qsize(), 2u);
    }());
}

// =========================================================================================
// Move-only items
// =========================================================================================

TEST(QueueMoveOnly, PutAndGetMoveTheItem) {
    run_virtual([]() -> Coro<> {
        Queue<std::unique_ptr<int>> q(1);
        auto p = std::make_unique<int>(7);
        co_await q.put(std::move(p));
        EXPECT_EQ(p, nullptr);

        // A blocked putter of a move-only item, woken by get().
        Task<> putter = create_task(q.put(std::make_unique<int>(8)));
        co_await asyncio::sleep(0);
        std::unique_ptr<int> a = co_await q.get();
        co_await putter;
        std::unique_ptr<int> b = q.get_nowait();
        EXPECT_EQ(*a, 7);
        EXPECT_EQ(*b, 8);

        // A blocked getter, woken by put_nowait().
        Task<std::unique_ptr<int>> getter = create_task(q.get());
        co_await asyncio::sleep(0);
        q.put_nowait(std::make_unique<int>(9));
        std::unique_ptr<int> c = co_await getter;
        EXPECT_EQ(*c, 9);
    }());
}

TEST(QueueMoveOnly, RejectedPutNowaitLeavesTheArgumentIntact) {
    Queue<std::unique_ptr<int>> q(1);
    q.put_nowait(std::make_unique<int>(1));
    auto p = std::make_unique<int>(2);
    EXPECT_THROW(q.put_nowait(std::move(p)), QueueFull);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, 2);
    q.shutdown();
    EXPECT_THROW(q.put_nowait(std::move(p)), QueueShutDown);
    ASSERT_NE(p, nullptr);
}

TEST(QueueMoveOnly, LifoAndPriorityQueues) {
    LifoQueue<std::unique_ptr<int>> lq;
    lq.put_nowait(std::make_unique<int>(1));
    lq.put_nowait(std::make_unique<int>(2));
    EXPECT_EQ(*lq.get_nowait(), 2);

    auto by_value = [](const std::unique_ptr<int>& a, const std::unique_ptr<int>& b) { return *a < *b; };
    PriorityQueue<std::unique_ptr<int>, decltype(by_value)> pq(0, by_value);
    for (int i : {5, 1, 4, 2, 3}) pq.put_nowait(std::make_unique<int>(i));
    for (int i = 1; i <= 5; ++i) EXPECT_EQ(*pq.get_nowait(), i);
}

TEST(QueueMoveOnly, FifoStorageGrowsAndWrapsAround) {
    Queue<std::unique_ptr<int>> q;
    int next_in = 0, next_out = 0;
    for (int round = 0; round < 50; ++round) {
        for (int i = 0; i < round % 13 + 1; ++i) q.put_nowait(std::make_unique<int>(next_in++));
        for (int i = 0; i < round % 7 && !q.empty(); ++i) EXPECT_EQ(*q.get_nowait(), next_out++);
    }
    while (!q.empty()) EXPECT_EQ(*q.get_nowait(), next_out++);
    EXPECT_EQ(next_in, next_out);
}

TEST(QueueMoveOnly, ItemsLeftInTheQueueAreDestroyedWithIt) {
    auto tracker = std::make_shared<int>(0);
    {
        Queue<std::shared_ptr<int>> q;
        for (int i = 0; i < 20; ++i) q.put_nowait(tracker);
        EXPECT_EQ(tracker.use_count(), 21);
        for (int i = 0; i < 5; ++i) (void)q.get_nowait();
        EXPECT_EQ(tracker.use_count(), 16);
    }
    EXPECT_EQ(tracker.use_count(), 1);
}

// =========================================================================================
// _QueueJoinTestMixin, for the three queue kinds
// =========================================================================================

template <class Q>
class QueueJoin : public ::testing::Test {};
using IntQueues = ::testing::Types<Queue<int>, LifoQueue<int>, PriorityQueue<int>>;
TYPED_TEST_SUITE(QueueJoin, IntQueues);

TYPED_TEST(QueueJoin, TaskDoneUnderflow) {
    TypeParam q;
    try {
        q.task_done();
        ADD_FAILURE() << "task_done() must throw";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "task_done() called too many times");
    }
}

TYPED_TEST(QueueJoin, TaskDone) {
    run_virtual([]() -> Coro<> {
        TypeParam q;
        for (int i = 0; i < 100; ++i) q.put_nowait(i);

        // Two workers get items from the queue and call task_done after each. Join the queue
        // and assert all items have been processed.
        int accumulator = 0;
        bool running = true;
        auto worker = [&]() -> Coro<> {
            while (running) {
                int item = co_await q.get();
                accumulator += item;
                q.task_done();
            }
        };
        co_await task_group([&](TaskGroup& tg) -> Coro<> {
            for (int i = 0; i < 2; ++i) tg.create_task(worker());
            co_await q.join();
            EXPECT_EQ(accumulator, 99 * 100 / 2);
            // Close the running workers.
            running = false;
            for (int i = 0; i < 2; ++i) q.put_nowait(0);
        });
    }());
}

TYPED_TEST(QueueJoin, JoinEmptyQueue) {
    run_virtual([]() -> Coro<> {
        TypeParam q;
        // A queue join()s successfully, and before anything else (done twice for insurance).
        co_await q.join();
        co_await q.join();
        EXPECT_EQ(now(), 0.0);
    }());
}

TYPED_TEST(QueueJoin, Format) {
    TypeParam q;
    EXPECT_EQ(q.format(), "maxsize=0");
    q.put_nowait(1);
    q.put_nowait(2);
    (void)q.get_nowait();
    (void)q.get_nowait();
    EXPECT_EQ(q.format(), "maxsize=0 tasks=2");
}

TYPED_TEST(QueueJoin, JoinWaitsForEveryTaskDone) {
    run_virtual([]() -> Coro<> {
        TypeParam q;
        q.put_nowait(1);
        q.put_nowait(2);
        Task<> j1 = create_task(q.join());
        Task<> j2 = create_task(q.join());
        co_await settle();
        EXPECT_FALSE(j1.done());
        (void)q.get_nowait();
        (void)q.get_nowait();
        q.task_done();
        co_await settle();
        EXPECT_FALSE(j1.done());
        q.task_done();
        co_await settle();
        EXPECT_TRUE(j1.done());
        EXPECT_TRUE(j2.done());
        // A new item makes join() wait again.
        q.put_nowait(3);
        Task<> j3 = create_task(q.join());
        co_await settle();
        EXPECT_FALSE(j3.done());
        (void)q.get_nowait();
        q.task_done();
        co_await j3;
    }());
}

TYPED_TEST(QueueJoin, CancelledJoinLeavesNoWaiterBehind) {
    run_virtual([]() -> Coro<> {
        TypeParam q;
        q.put_nowait(1);
        Task<> j1 = create_task(q.join());
        Task<> j2 = create_task(q.join());
        co_await settle();
        j1.cancel();
        EXPECT_EQ(co_await end_of(j1), End::cancelled);
        (void)q.get_nowait();
        q.task_done();
        co_await j2;
        EXPECT_TRUE(j1.cancelled());
    }());
}

TYPED_TEST(QueueJoin, JoinWithTimeout) {
    run_virtual([]() -> Coro<> {
        TypeParam q;
        q.put_nowait(1);
        EXPECT_EQ(co_await end_of(asyncio::wait_for(q.join(), 0.5)), End::timeout);
        EXPECT_DOUBLE_EQ(now(), 0.5);
        get_running_loop().call_later(1.0, [&] {
            (void)q.get_nowait();
            q.task_done();
        });
        co_await q.join();
        EXPECT_DOUBLE_EQ(now(), 1.5);
    }());
}

// =========================================================================================
// _QueueShutdownTestMixin (3.13), for the three queue kinds
// =========================================================================================

template <class Q>
class QueueShutdown : public ::testing::Test {};
using StringQueues = ::testing::Types<Queue<std::string>, LifoQueue<std::string>, PriorityQueue<std::string>>;
TYPED_TEST_SUITE(QueueShutdown, StringQueues);

/// put(), put_nowait(), get() and get_nowait() all raise QueueShutDown.
template <class Q>
Coro<> expect_all_raise_shutdown(Q& q) {
    EXPECT_EQ(co_await end_of(q.put("data")), End::shutdown);
    EXPECT_EQ(sync_end([&] { q.put_nowait("data"); }), End::shutdown);
    EXPECT_EQ(co_await end_of(q.get()), End::shutdown);
    EXPECT_EQ(sync_end([&] { (void)q.get_nowait(); }), End::shutdown);
}

TYPED_TEST(QueueShutdown, Format) {
    TypeParam q;
    q.shutdown();
    EXPECT_EQ(q.format(), "maxsize=0 shutdown");
    EXPECT_TRUE(q.is_shutdown());
}

TYPED_TEST(QueueShutdown, ShutdownEmpty) {
    run_virtual([]() -> Coro<> {
        // Set up an empty queue and a get() task.
        TypeParam q;
        Task<std::string> get_task = create_task(q.get());
        co_await asyncio::sleep(0);  // the get task is pending before the shutdown

        q.shutdown(false);  // unfinished tasks: 0 -> 0
        EXPECT_EQ(q.qsize(), 0u);

        // join() finishes at once.
        co_await q.join();

        // The get() task finished with QueueShutDown.
        co_await asyncio::sleep(0);
        EXPECT_TRUE(get_task.done());
        EXPECT_EQ(co_await end_of(get_task), End::shutdown);

        co_await expect_all_raise_shutdown(q);
    }());
}

TYPED_TEST(QueueShutdown, ShutdownNonempty) {
    run_virtual([]() -> Coro<> {
        // A full queue with 1 item, and join() and put() tasks.
        TypeParam q(1);
        q.put_nowait("data");
        Task<> join_task = create_task(q.join());
        Task<> put_task = create_task(q.put("data2"));

        co_await asyncio::sleep(0);
        EXPECT_FALSE(put_task.done());

        q.shutdown(false);  // unfinished tasks: 1 -> 1
        EXPECT_EQ(q.qsize(), 1u);

        // The put() task finished with QueueShutDown.
        co_await asyncio::sleep(0);
        EXPECT_TRUE(put_task.done());
        EXPECT_EQ(co_await end_of(put_task), End::shutdown);

        // get() still succeeds on the enqueued item.
        EXPECT_EQ(co_await q.get(), "data");

        // join() is not finished.
        co_await asyncio::sleep(0);
        EXPECT_FALSE(join_task.done());

        co_await expect_all_raise_shutdown(q);

        // There is 1 unfinished task; join() succeeds once it is done.
        q.task_done();
        co_await asyncio::sleep(0);
        EXPECT_TRUE(join_task.done());
        co_await join_task;

        EXPECT_THROW(q.task_done(), std::invalid_argument);
    }());
}

TYPED_TEST(QueueShutdown, ShutdownImmediate) {
    run_virtual([]() -> Coro<> {
        TypeParam q;
        q.put_nowait("data");
        Task<> join_task = create_task(q.join());

        q.shutdown(true);  // unfinished tasks: 1 -> 0
        EXPECT_EQ(q.qsize(), 0u);

        // join() has finished.
        co_await asyncio::sleep(0);
        EXPECT_TRUE(join_task.done());
        co_await join_task;

        co_await expect_all_raise_shutdown(q);

        // No unfinished task is left.
        EXPECT_THROW(q.task_done(), std::invalid_argument);
    }());
}

TYPED_TEST(QueueShutdown, ShutdownImmediateWithUnfinished) {
    run_virtual([]() -> Coro<> {
        // 2 items, 1 retrieved, and a join() task.
        TypeParam q;
        q.put_nowait("data");
        q.put_nowait("data");
        Task<> join_task = create_task(q.join());
        EXPECT_EQ(co_await q.get(), "data");

        q.shutdown(true);  // unfinished tasks: 2 -> 1
        EXPECT_EQ(q.qsize(), 0u);

        co_await asyncio::sleep(0);
        EXPECT_FALSE(join_task.done());

        co_await expect_all_raise_shutdown(q);

        // There is 1 unfinished task.
        q.task_done();
        EXPECT_THROW(q.task_done(), std::invalid_argument);

        co_await asyncio::sleep(0);
        EXPECT_TRUE(join_task.done());
        co_await join_task;
    }());
}

TYPED_TEST(QueueShutdown, AllMethodsInOneTask) {
    run_virtual([]() -> Coro<> {
        TypeParam q;
        co_await q.put("L");
        q.put_nowait("O");
        q.shutdown();
        EXPECT_EQ(co_await end_of(q.put("E")), End::shutdown);
        EXPECT_EQ(sync_end([&] { q.put_nowait("W"); }), End::shutdown);

        std::string a = co_await q.get();
        q.task_done();
        std::string b = q.get_nowait();
        q.task_done();
        EXPECT_EQ((std::set<std::string>{a, b}), (std::set<std::string>{"L", "O"}));
        co_await q.join();
        // Once empty, gets raise QueueShutDown (not QueueEmpty).
        EXPECT_EQ(co_await end_of(q.get()), End::shutdown);
        EXPECT_EQ(sync_end([&] { (void)q.get_nowait(); }), End::shutdown);
    }());
}

TYPED_TEST(QueueShutdown, ImmediateAllMethodsInOneTask) {
    run_virtual([]() -> Coro<> {
        TypeParam q;
        co_await q.put("L");
        q.put_nowait("O");
        q.shutdown(true);
        co_await expect_all_raise_shutdown(q);
        // The drained items were counted as done (3.13): nothing is unfinished.
        EXPECT_THROW(q.task_done(), std::invalid_argument);
        co_await q.join();
        EXPECT_EQ(now(), 0.0);
    }());
}

TYPED_TEST(QueueShutdown, ShutdownWakesEveryBlockedGetter) {
    run_virtual([]() -> Coro<> {
        TypeParam q;
        std::vector<Task<std::string>> getters;
        for (int i = 0; i < 3; ++i) getters.push_back(create_task(q.get()));
        co_await asyncio::sleep(0);
        EXPECT_TRUE(contains(q.str(), "_getters[3]"));
        q.shutdown();
        EXPECT_FALSE(contains(q.str(), "_getters"));
        for (auto& g : getters) EXPECT_EQ(co_await end_of(g), End::shutdown);
    }());
}

TYPED_TEST(QueueShutdown, ShutdownWakesEveryBlockedPutter) {
    for (bool immediate : {false, true}) {
        run_virtual([](bool immediate) -> Coro<> {
            TypeParam q(2);
            co_await q.put("E");
            co_await q.put("W");
            std::vector<Task<>> putters;
            for (int i = 0; i < 3; ++i) putters.push_back(create_task(q.put("Y")));
            co_await asyncio::sleep(0);
            EXPECT_TRUE(contains(q.str(), "_putters[3]"));
            q.shutdown(immediate);
            EXPECT_FALSE(contains(q.str(), "_putters"));
            for (auto& p : putters) EXPECT_EQ(co_await end_of(p), End::shutdown);
            EXPECT_EQ(q.qsize(), immediate ? 0u : 2u);
        }(immediate));
    }
}

TYPED_TEST(QueueShutdown, ShutdownPutNowaitOnAFullQueueRaisesShutDownNotFull) {
    TypeParam q(1);
    q.put_nowait("a");
    q.shutdown();
    EXPECT_EQ(sync_end([&] { q.put_nowait("b"); }), End::shutdown);
    EXPECT_EQ(q.get_nowait(), "a");
    EXPECT_EQ(sync_end([&] { (void)q.get_nowait(); }), End::shutdown);
}

TYPED_TEST(QueueShutdown, ImmediateAfterGracefulShutdownDrains) {
    run_virtual([]() -> Coro<> {
        TypeParam q;
        q.put_nowait("a");
        q.put_nowait("b");
        Task<> join_task = create_task(q.join());
        q.shutdown();
        co_await settle();
        EXPECT_EQ(q.qsize(), 2u);
        EXPECT_FALSE(join_task.done());
        q.shutdown(true);
        EXPECT_EQ(q.qsize(), 0u);
        co_await join_task;
        q.shutdown();  // idempotent
        EXPECT_EQ(q.format(), "maxsize=0 shutdown");
    }());
}

TYPED_TEST(QueueShutdown, ImmediateShutdownReleasesEveryJoiner) {
    run_virtual([]() -> Coro<> {
        TypeParam q(3);
        for (const char* s : {"a", "b", "c"}) q.put_nowait(s);
        std::vector<Task<>> joiners;
        for (int i = 0; i < 3; ++i) joiners.push_back(create_task(q.join()));
        Task<> putter = create_task(q.put("d"));
        co_await settle();
        q.shutdown(true);
        for (auto& j : joiners) co_await j;
        EXPECT_EQ(co_await end_of(putter), End::shutdown);
        EXPECT_EQ(now(), 0.0);
    }());
}

/// Python's _shutdown_get scenario: gets racing a graceful shutdown of a full queue.
TYPED_TEST(QueueShutdown, GetsAfterGracefulShutdownTakeTheRemainingItemsThenRaise) {
    run_virtual([]() -> Coro<> {
        TypeParam q(2);
        co_await q.put("Y");
        co_await q.put("D");
        q.shutdown(false);
        std::vector<End> ends;
        for (int i = 0; i < 3; ++i) {
            if (i % 2)
                ends.push_back(sync_end([&] { (void)q.get_nowait(); }));
            else
                ends.push_back(co_await end_of(q.get()));
        }
        EXPECT_EQ(ends, (std::vector<End>{End::value, End::value, End::shutdown}));
    }());
}

/// Python's test_shutdown_get_task_done_join: consumers finish the items left after a graceful
/// shutdown, and the joiners return.
Coro<std::string> get_task_done(Queue<std::string>* q, std::vector<bool>* results) {
    try {
        std::string msg = co_await q->get();
        q->task_done();
        results->push_back(true);
        co_return msg;
    } catch (const QueueShutDown&) {
        results->push_back(false);
        co_return "";
    }
}

TYPED_TEST(QueueShutdown, GetTaskDoneJoin) {
    run_virtual([]() -> Coro<> {
        TypeParam q(2);
        std::vector<bool> results;
        co_await q.put("Y");
        co_await q.put("D");
        Task<> j1 = create_task(q.join());
        Task<> j2 = create_task(q.join());
        q.shutdown(false);
        Task<std::string> g1 = create_task(get_task_done(&q, &results));
        Task<std::string> g2 = create_task(get_task_done(&q, &results));
        co_await j1;
        co_await j2;
        EXPECT_EQ(results, (std::vector<bool>{true, true}));
        std::string a = co_await g1, b = co_await g2;
        EXPECT_EQ((std::set<std::string>{a, b}), (std::set<std::string>{"Y", "D"}));
        EXPECT_EQ(q.format(), "maxsize=2 shutdown");
    }());
}

// =========================================================================================
// Cancellation races and fairness (the wake-up hand-over CPython fixed in put()/get())
// =========================================================================================

TEST(QueueRaces, GetterWokenThenCancelledPassesTheItemToTheNextGetter) {
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        Task<int> g1 = create_task(q.get());
        Task<int> g2 = create_task(q.get());
        co_await asyncio::sleep(0);
        q.put_nowait(1);  // wakes g1 ...
        g1.cancel();      // ... which is cancelled before it could take the item
        EXPECT_EQ(co_await end_of(g1), End::cancelled);
        EXPECT_EQ(co_await g2, 1);
        EXPECT_TRUE(q.empty());
    }());
}

TEST(QueueRaces, PutterWokenThenCancelledPassesTheSlotToTheNextPutter) {
    run_virtual([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(0);
        Task<> p1 = create_task(q.put(1));
        Task<> p2 = create_task(q.put(2));
        co_await asyncio::sleep(0);
        EXPECT_EQ(q.get_nowait(), 0);  // wakes p1 ...
        p1.cancel();                   // ... which is cancelled before it could put
        EXPECT_EQ(co_await end_of(p1), End::cancelled);
        co_await p2;
        EXPECT_EQ(q.get_nowait(), 2);
        EXPECT_TRUE(q.empty());
        EXPECT_FALSE(contains(q.str(), "_putters"));
    }());
}

TEST(QueueRaces, GetterCancelledBeforeItIsWokenIsSkipped) {
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        Task<int> g1 = create_task(q.get());
        Task<int> g2 = create_task(q.get());
        Task<int> g3 = create_task(q.get());
        co_await asyncio::sleep(0);
        g1.cancel();      // its waiter future is cancelled at once ...
        q.put_nowait(1);  // ... so this wakes g2
        EXPECT_EQ(co_await g2, 1);
        EXPECT_TRUE(g1.cancelled());
        EXPECT_FALSE(g3.done());
        q.put_nowait(2);
        EXPECT_EQ(co_await g3, 2);
    }());
}

TEST(QueueRaces, TwoItemsTwoWokenGettersOneCancelledTheThirdGetterTakesOver) {
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        std::vector<Task<int>> g;
        for (int i = 0; i < 4; ++i) g.push_back(create_task(q.get()));
        co_await asyncio::sleep(0);
        q.put_nowait(10);  // wakes g[0]
        q.put_nowait(20);  // wakes g[1]
        g[0].cancel();
        EXPECT_EQ(co_await end_of(g[0]), End::cancelled);
        int a = co_await g[1];
        int b = co_await g[2];
        EXPECT_EQ((std::set<int>{a, b}), (std::set<int>{10, 20}));
        EXPECT_FALSE(g[3].done());
        q.put_nowait(30);
        EXPECT_EQ(co_await g[3], 30);
    }());
}

TEST(QueueRaces, CancelledGetterWokenByShutdownEndsCancelled) {
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        Task<int> g = create_task(q.get());
        co_await asyncio::sleep(0);
        q.shutdown();
        g.cancel();
        EXPECT_EQ(co_await end_of(g), End::cancelled);
    }());
}

Coro<std::optional<int>> get_or_timeout(Queue<int>* q, double timeout) {
    try {
        co_return co_await asyncio::wait_for(q->get(), timeout);
    } catch (const asyncio::TimeoutError&) {
        co_return std::nullopt;
    }
}

TEST(QueueRaces, ATimeoutRacingAPutNeverLosesTheItem) {
    for (bool put_first : {true, false}) {
        run_virtual([](bool put_first) -> Coro<> {
            Queue<int> q;
            EventLoop& loop = get_running_loop();
            if (put_first) loop.call_at(1.0, [&] { q.put_nowait(42); });
            Task<std::optional<int>> t = create_task(get_or_timeout(&q, 1.0));
            co_await asyncio::sleep(0);  // the timeout's timer is armed for t=1.0
            if (!put_first) loop.call_at(1.0, [&] { q.put_nowait(42); });
            std::optional<int> got = co_await t;
            if (got)
                EXPECT_TRUE(q.empty());
            else
                EXPECT_EQ(q.get_nowait(), 42);
        }(put_first));
    }
}

TEST(QueueRaces, ATimedOutWokenGetterHandsTheItemToTheNextGetter) {
    for (bool put_first : {true, false}) {
        run_virtual([](bool put_first) -> Coro<> {
            Queue<int> q;
            EventLoop& loop = get_running_loop();
            if (put_first) loop.call_at(1.0, [&] { q.put_nowait(42); });
            Task<std::optional<int>> t1 = create_task(get_or_timeout(&q, 1.0));
            Task<int> t2 = create_task(q.get());
            co_await asyncio::sleep(0);
            if (!put_first) loop.call_at(1.0, [&] { q.put_nowait(42); });
            std::optional<int> got1 = co_await t1;
            if (got1) {
                EXPECT_EQ(*got1, 42);
                q.put_nowait(7);
                EXPECT_EQ(co_await t2, 7);
            } else {
                EXPECT_EQ(co_await t2, 42);
            }
            EXPECT_TRUE(q.empty());
        }(put_first));
    }
}

TEST(QueueRaces, GettersAreServedInFifoOrder) {
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        std::vector<Task<int>> getters;
        for (int i = 0; i < 5; ++i) getters.push_back(create_task(q.get()));
        co_await asyncio::sleep(0);
        for (int i = 0; i < 5; ++i) q.put_nowait(i);
        for (int i = 0; i < 5; ++i) EXPECT_EQ(co_await getters[static_cast<std::size_t>(i)], i);
    }());
}

TEST(QueueRaces, PuttersAreServedInFifoOrder) {
    run_virtual([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(0);
        std::vector<Task<>> putters;
        for (int i = 1; i <= 5; ++i) putters.push_back(create_task(q.put(i)));
        co_await asyncio::sleep(0);
        std::vector<int> out;
        for (int i = 0; i <= 5; ++i) {
            out.push_back(co_await q.get());
            co_await asyncio::sleep(0);
        }
        EXPECT_EQ(out, (std::vector<int>{0, 1, 2, 3, 4, 5}));
        for (auto& p : putters) co_await p;
    }());
}

TEST(QueueRaces, ManyCancellationsNeverLoseItems) {
    // Getters are cancelled at every stage (waiting, woken, not yet started) while items flow;
    // every item put is either received exactly once or still in the queue.
    run_virtual([]() -> Coro<> {
        Queue<int> q;
        std::vector<Task<int>> getters;
        int next = 0;
        for (int round = 0; round < 30; ++round) {
            for (int i = 0; i < 3; ++i) getters.push_back(create_task(q.get()));
            if (round % 2) co_await asyncio::sleep(0);
            for (int i = 0; i < round % 4; ++i) q.put_nowait(next++);
            for (std::size_t i = getters.size() - 3; i < getters.size(); ++i)
                if ((i + static_cast<std::size_t>(round)) % 3 == 0) getters[i].cancel();
            co_await asyncio::sleep(0);
        }
        co_await settle();
        std::multiset<int> seen;
        for (auto& g : getters) {
            if (g.done() && !g.cancelled())
                seen.insert(g.result());
            else
                g.cancel();
        }
        while (!q.empty()) seen.insert(q.get_nowait());
        std::multiset<int> expected;
        for (int i = 0; i < next; ++i) expected.insert(i);
        EXPECT_EQ(seen, expected);
        co_await settle();
        for (auto& g : getters) EXPECT_TRUE(g.done());
    }());
}

TEST(QueueRaces, EagerTasksWaitAndWakeLikeLazyOnes) {
    run_virtual([]() -> Coro<> {
        Queue<int> q(1);
        q.put_nowait(1);
        // An eager getter on a non-empty queue is done before create_task returns ...
        Task<int> g1 = create_task(q.get(), TaskOptions{.name = {}, .eager_start = true});
        EXPECT_TRUE(g1.done());
        EXPECT_EQ(g1.result(), 1);
        // ... and on an empty one it is waiting already (no loop iteration needed).
        Task<int> g2 = create_task(q.get(), TaskOptions{.name = {}, .eager_start = true});
        EXPECT_FALSE(g2.done());
        EXPECT_TRUE(contains(q.str(), "_getters[1]"));
        q.put_nowait(2);  // wakes g2; the queue is full again
        Task<> p = create_task(q.put(4), TaskOptions{.name = {}, .eager_start = true});
        EXPECT_TRUE(contains(q.str(), "_putters[1]"));
        EXPECT_EQ(co_await g2, 2);
        co_await p;
        EXPECT_EQ(q.get_nowait(), 4);
    }());
}

// =========================================================================================
// Loop binding: not tied to one loop forever
// =========================================================================================

Coro<> ping_pong(Queue<int>* q) {
    // Forces waits on both sides: getters and putters block.
    Task<int> getter = create_task(q->get());
    co_await asyncio::sleep(0);
    co_await q->put(1);
    EXPECT_EQ(co_await getter, 1);
    co_await q->put(2);
    Task<> putter = create_task(q->put(3));
    co_await asyncio::sleep(0);
    EXPECT_TRUE(contains(q->str(), "_putters[1]"));
    EXPECT_EQ(co_await q->get(), 2);
    co_await putter;
    EXPECT_EQ(co_await q->get(), 3);
    for (int i = 0; i < 3; ++i) q->task_done();
    co_await q->join();
}

TEST(QueueLoop, AStaticQueueWorksAcrossConsecutiveRuns) {
    static Queue<int> q(1);
    for (int run = 0; run < 3; ++run) run_virtual(ping_pong(&q));
    asyncio::run(ping_pong(&q));  // a real (not virtual) loop too
    EXPECT_TRUE(q.empty());
}

TEST(QueueLoop, WaitingFromAnotherLoopWhileTheFirstHasWaitersThrows) {
    Queue<int> q(1);
    EventLoop loop_a(LoopOptions{.debug = false, .virtual_clock = true});
    Task<int> ta = loop_a.create_task(q.get());
    asyncio_test::run_briefly(loop_a);
    ASSERT_TRUE(contains(q.str(), "_getters[1]"));

    run_virtual([&]() -> Coro<> {
        std::string message;
        try {
            (void)co_await q.get();
        } catch (const asyncio::RuntimeError& e) {
            message = e.what();
        }
        EXPECT_TRUE(contains(message, "different event loop")) << message;
        EXPECT_EQ(co_await end_of(q.join()), End::value);  // nothing unfinished: no wait
        q.put_nowait(5);  // the nowait methods never wait, so they work: this wakes loop A's getter
    }());
    EXPECT_EQ(loop_a.run_until_complete(ta), 5);
    q.task_done();

    // Nothing waits on loop A any more: the queue moves to a new loop.
    run_virtual(ping_pong(&q));
}

TEST(QueueLoop, ClosingALoopWithAWaiterUnlinksIt) {
    Queue<int> q(1);
    {
        EventLoop loop_a(LoopOptions{.debug = false, .virtual_clock = true});
        Task<int> getter = loop_a.create_task(q.get());
        asyncio_test::run_briefly(loop_a);
        ASSERT_TRUE(contains(q.str(), "_getters[1]"));
        loop_a.close();  // destroys the waiting coroutine
        EXPECT_FALSE(contains(q.str(), "_getters"));
    }
    run_virtual(ping_pong(&q));
}

// =========================================================================================
// The uncontended path allocates nothing
// =========================================================================================

TEST(QueueAlloc, UncontendedPutGetJoinDoNotAllocate) {
#if !ASYNCIO_FRAME_POOL_ENABLED
    GTEST_SKIP() << "sanitizer build: the coroutine frame pool is bypassed, frames use malloc";
#else
    run_virtual([]() -> Coro<> {
        Queue<int> q(4);
        LifoQueue<int> lq(4);
        PriorityQueue<int> pq(4);
        std::size_t allocations = 0;
        for (int pass = 0; pass < 2; ++pass) {  // pass 0 warms up the pools and storage
            g_allocations = 0;
            g_counting = pass == 1;
            for (int i = 0; i < 1000; ++i) {
                co_await q.put(i);
                q.put_nowait(i);
                (void)co_await q.get();
                (void)q.get_nowait();
                q.task_done();
                q.task_done();
                co_await q.join();
                co_await lq.put(i);
                (void)co_await lq.get();
                co_await pq.put(i);
                (void)co_await pq.get();
            }
            g_counting = false;
            allocations = g_allocations;
        }
        EXPECT_EQ(allocations, 0u);

        // The counter does count (a direct call cannot be elided).
        g_allocations = 0;
        g_counting = true;
        ::operator delete(::operator new(16));
        g_counting = false;
        EXPECT_EQ(g_allocations, 1u);
    }());
#endif
}

// =========================================================================================
// Producer / consumer pipelines: several workers, join() and shutdown()
// =========================================================================================

Coro<int> worker(Queue<int>* q, std::vector<int>* processed, double work) {
    int exits_by_shutdown = 0;
    while (true) {
        int item = 0;
        try {
            item = co_await q->get();
        } catch (const QueueShutDown&) {
            exits_by_shutdown = 1;
            break;
        }
        co_await asyncio::sleep(work);
        processed->push_back(item);
        q->task_done();
    }
    co_return exits_by_shutdown;
}

Coro<int> producer(Queue<int>* q, int base, int n, double pace) {
    int put_ok = 0;
    try {
        for (int i = 0; i < n; ++i) {
            co_await q->put(base + i);
            ++put_ok;
            if (pace > 0) co_await asyncio::sleep(pace);
        }
    } catch (const QueueShutDown&) {
    }
    co_return put_ok;
}

TEST(QueuePipeline, WorkersJoinThenGracefulShutdown) {
    run_virtual([]() -> Coro<> {
        Queue<int> q(3);
        std::vector<int> processed;
        std::vector<Task<int>> workers;
        for (int w = 0; w < 4; ++w) workers.push_back(create_task(worker(&q, &processed, 0.01 * (w + 1))));
        Task<int> p1 = create_task(producer(&q, 0, 50, 0.0));
        Task<int> p2 = create_task(producer(&q, 1000, 50, 0.003));
        EXPECT_EQ(co_await p1, 50);
        EXPECT_EQ(co_await p2, 50);
        co_await q.join();
        EXPECT_EQ(processed.size(), 100u);
        std::set<int> unique(processed.begin(), processed.end());
        EXPECT_EQ(unique.size(), 100u);
        EXPECT_EQ(*unique.begin(), 0);
        EXPECT_EQ(*unique.rbegin(), 1049);
        q.shutdown();
        int exits = 0;
        for (auto& w : workers) exits += co_await w;
        EXPECT_EQ(exits, 4);
        EXPECT_GT(now(), 0.0);
    }());
}

TEST(QueuePipeline, ImmediateShutdownMidStream) {
    run_virtual([]() -> Coro<> {
        Queue<int> q(10);
        std::vector<int> processed;
        std::vector<Task<int>> workers;
        for (int w = 0; w < 3; ++w) workers.push_back(create_task(worker(&q, &processed, 0.1)));
        Task<int> p = create_task(producer(&q, 0, 1000, 0.0));
        co_await asyncio::sleep(0.55);
        std::size_t drained = q.qsize();
        EXPECT_EQ(drained, 10u);  // the producer keeps the queue full
        q.shutdown(true);
        int put_ok = co_await p;
        EXPECT_LT(put_ok, 1000);
        // join() returns once the items the workers hold are done.
        co_await q.join();
        int exits = 0;
        for (auto& w : workers) exits += co_await w;
        EXPECT_EQ(exits, 3);
        EXPECT_EQ(processed.size() + drained, static_cast<std::size_t>(put_ok));
        std::set<int> unique(processed.begin(), processed.end());
        EXPECT_EQ(unique.size(), processed.size());
    }());
}

TEST(QueuePipeline, TwoStagePipelineInATaskGroupShutsDownStageByStage) {
    run_virtual([]() -> Coro<> {
        Queue<int> stage1(2);
        PriorityQueue<int> stage2(2);
        std::vector<int> results;
        auto square = [&]() -> Coro<> {
            while (true) {
                int v = 0;
                try {
                    v = co_await stage1.get();
                } catch (const QueueShutDown&) {
                    co_return;
                }
                co_await asyncio::sleep(0.01);
                co_await stage2.put(v * v);
                stage1.task_done();
            }
        };
        auto collect = [&]() -> Coro<> {
            while (true) {
                int v = 0;
                try {
                    v = co_await stage2.get();
                } catch (const QueueShutDown&) {
                    co_return;
                }
                results.push_back(v);
                stage2.task_done();
            }
        };
        co_await task_group([&](TaskGroup& tg) -> Coro<> {
            for (int i = 0; i < 3; ++i) tg.create_task(square());
            tg.create_task(collect());
            for (int i = 1; i <= 20; ++i) co_await stage1.put(i);
            co_await stage1.join();
            stage1.shutdown();
            co_await stage2.join();
            stage2.shutdown();
        });
        std::sort(results.begin(), results.end());
        std::vector<int> expected;
        for (int i = 1; i <= 20; ++i) expected.push_back(i * i);
        EXPECT_EQ(results, expected);
    }());
}

}  // namespace
