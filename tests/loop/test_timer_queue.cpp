// tests/loop/test_timer_queue.cpp - the loop's timer heap (src/loop/timer_queue.hpp) as a layer
// above sees it through LoopAccess: every entry holds a reference to its node, a reference is
// always released after its entry left the heap, and what a release does (a Python __del__
// that adds a timer, a garbage collection that walks the heap) finds it consistent.
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/events.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

using namespace asyncio;
using asyncio::detail::LoopAccess;
using asyncio::detail::ReadyItem;
using asyncio::detail::ReadyItemOps;
using asyncio::detail::TimerNode;

namespace {

constexpr LoopOptions kVirtual{.debug = false, .virtual_clock = true};

/// A timer node counting the references the loop holds to it, as the Python face's handles
/// do. Its last release may add a timer (what a __del__ may do) and walks the loop's queues
/// (what a garbage collection may do), checking that the walk sees exactly the references
/// still held.
struct CountedNode : TimerNode {
    int refs = 0;
    double when = 0;
    bool fired = false;
    bool add_timer_when_released = false;
};

struct World {
    EventLoop* loop = nullptr;
    std::vector<CountedNode>* nodes = nullptr;
    std::vector<double> fired_at;  // loop.time() of each fired node and added timer
    int walks = 0;                 // releases that walked the queues
    int mismatches = 0;            // walks that saw other than the held references
    int added = 0;                 // timers added by releases
};
World* world = nullptr;

int held_references() {
    int n = 0;
    for (const CountedNode& c : *world->nodes) n += c.refs;
    return n;
}

int count_visit(ReadyItem* item, void* arg) {
    const auto* begin = world->nodes->data();
    const auto* node = static_cast<const CountedNode*>(static_cast<TimerNode*>(item));
    if (node >= begin && node < begin + world->nodes->size()) ++*static_cast<int*>(arg);
    return 0;
}

void release(ReadyItem* item) noexcept {
    auto* node = static_cast<CountedNode*>(static_cast<TimerNode*>(item));
    int seen = 0;
    LoopAccess::visit_queued(*world->loop, count_visit, &seen);
    ++world->walks;
    // The entry being released has already left the heap; its reference is still counted.
    if (seen != held_references() - 1) ++world->mismatches;
    if (--node->refs == 0 && node->add_timer_when_released) {
        ++world->added;
        world->loop->call_later(5.0 + world->added, [] { world->fired_at.push_back(world->loop->time()); });
    }
}

const ReadyItemOps counted_ops = {
    /*run=*/
    [](ReadyItem* item) {
        auto* node = static_cast<CountedNode*>(static_cast<TimerNode*>(item));
        node->fired = true;
        world->fired_at.push_back(world->loop->time());
        release(item);  // the ready queue's reference
    },
    /*discard=*/[](ReadyItem* item) noexcept { release(item); },
    /*drop=*/[](ReadyItem*) noexcept {},
    /*describe=*/[](const ReadyItem*) -> std::string { return "<counted node>"; },
    /*timer_fire=*/
    [](ReadyItem* item) {
        ++static_cast<CountedNode*>(static_cast<TimerNode*>(item))->refs;  // the ready queue's
        LoopAccess::schedule(*world->loop, item);
    },
    /*add_ref=*/[](ReadyItem* item) noexcept { ++static_cast<CountedNode*>(static_cast<TimerNode*>(item))->refs; },
    /*release=*/release,
};

}  // namespace

TEST(TimerQueue, CompactionReleasesEachStaleEntryAfterItLeftTheHeapEvenWhenReleasesAddTimers) {
    EventLoop loop(kVirtual);
    std::vector<CountedNode> nodes(300);
    World w;
    w.loop = &loop;
    w.nodes = &nodes;
    world = &w;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        nodes[i].ops = &counted_ops;
        nodes[i].when = loop.time() + 100.0 + static_cast<double>((i * 7919) % 300);
        nodes[i].add_timer_when_released = i % 3 == 0;
        LoopAccess::add_timer(loop, &nodes[i], nodes[i].when);
    }
    ASSERT_EQ(held_references(), 300);
    // Cancelling two thirds: the heap compacts (stale entries outnumber live ones) while the
    // releases add timers to it and walk it.
    for (std::size_t i = 0; i < nodes.size(); ++i)
        if (i % 3 != 2) LoopAccess::cancel_timer(loop, &nodes[i]);
    EXPECT_GT(w.added, 0) << "no compaction happened: the test no longer tests it";
    EXPECT_EQ(w.mismatches, 0) << "a walk of the queues saw other references than the loop held";
    loop.call_later(1000.0, [&] { loop.stop(); });
    loop.run_forever();
    for (std::size_t i = 0; i < nodes.size(); ++i) EXPECT_EQ(nodes[i].fired, i % 3 == 2) << "node " << i;
    EXPECT_EQ(w.fired_at.size(), nodes.size() / 3 + static_cast<std::size_t>(w.added));
    EXPECT_TRUE(std::is_sorted(w.fired_at.begin(), w.fired_at.end())) << "timers fired out of order";
    EXPECT_EQ(w.mismatches, 0);
    EXPECT_EQ(held_references(), 0);
    loop.close();
    world = nullptr;
}

TEST(TimerQueue, VisitQueuedSeesEachReadyAndTimerReferenceOnceAndStopsAtANonZeroResult) {
    EventLoop loop(kVirtual);
    std::vector<CountedNode> nodes(4);
    World w;
    w.loop = &loop;
    w.nodes = &nodes;
    world = &w;
    for (CountedNode& n : nodes) n.ops = &counted_ops;
    LoopAccess::add_timer(loop, &nodes[0], loop.time() + 10);
    LoopAccess::add_timer(loop, &nodes[1], loop.time() + 20);
    LoopAccess::cancel_timer(loop, &nodes[1]);  // stale, still held until the heap drops it
    LoopAccess::add_timer(loop, &nodes[1], loop.time() + 30);
    ++nodes[2].refs;
    LoopAccess::schedule(loop, &nodes[2]);
    int seen = 0;
    EXPECT_EQ(LoopAccess::visit_queued(loop, count_visit, &seen), 0);
    EXPECT_EQ(seen, 4);
    EXPECT_EQ(held_references(), 4);
    int calls = 0;
    EXPECT_EQ(LoopAccess::visit_queued(
                  loop, [](ReadyItem*, void* arg) { return ++*static_cast<int*>(arg) == 2 ? 7 : 0; }, &calls),
              7);
    EXPECT_EQ(calls, 2);
    loop.close();  // discards the ready item, releases the timers
    EXPECT_EQ(held_references(), 0);
    world = nullptr;
}
