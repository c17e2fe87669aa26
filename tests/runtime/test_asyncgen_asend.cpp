// tests/runtime/test_asyncgen_asend.cpp - AsyncGenerator<T, Send>::asend (Python's agen.asend(v)):
// the sent value is the result of the body's co_yield, next() sends "None" (nullopt), a
// value cannot be sent before the generator started, and asend drives it like next().
#include <gtest/gtest.h>

#include "support.hpp"

#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace asyncio;

namespace {
/// Yields the running total of the lengths it was sent; "stop" ends it.
AsyncGenerator<int, std::string> lengths() {
    int total = 0;
    for (;;) {
        std::optional<std::string> got = co_yield total;
        if (!got) continue;
        if (*got == "stop") co_return;
        total += static_cast<int>(got->size());
    }
}

/// Records every co_yield result it gets.
AsyncGenerator<int, int> recorder(std::vector<std::optional<int>>& seen) {
    for (int i = 0;; ++i) seen.push_back(co_yield i);
}
}  // namespace

TEST(AsyncGenAsend, TheSentValueIsTheResultOfTheCurrentCoYield) {
    auto main = []() -> Coro<std::vector<int>> {
        auto g = lengths();
        std::vector<int> out;
        out.push_back(*co_await g.next());
        out.push_back(*co_await g.asend("abc"));
        out.push_back(*co_await g.asend("de"));
        co_return out;
    };
    EXPECT_EQ(asyncio_test::run_virtual(main()), (std::vector<int>{0, 3, 5}));
}

TEST(AsyncGenAsend, NextSendsNothingSoCoYieldGivesNullopt) {
    std::vector<std::optional<int>> seen;
    auto main = [&]() -> Coro<void> {
        auto g = recorder(seen);
        co_await g.next();
        co_await g.asend(7);
        co_await g.next();
        co_await g.asend(9);
        g.aclose();
    };
    asyncio_test::run_virtual(main());
    EXPECT_EQ(seen, (std::vector<std::optional<int>>{7, std::nullopt, 9}));
}

TEST(AsyncGenAsend, SendingBeforeTheFirstNextIsARuntimeError) {
    auto main = []() -> Coro<std::string> {
        auto g = lengths();
        try {
            co_await g.asend("x");
        } catch (const RuntimeError& e) {
            co_return e.what();
        }
        co_return "no error";
    };
    EXPECT_NE(asyncio_test::run_virtual(main()).find("can't send non-None value to a just-started async generator"),
              std::string::npos);
}

TEST(AsyncGenAsend, AsendThatEndsTheGeneratorReturnsNulloptAndLaterSendsFail) {
    auto main = []() -> Coro<std::string> {
        auto g = lengths();
        co_await g.next();
        std::optional<int> end = co_await g.asend("stop");
        if (end) co_return "yielded after stop";
        if (!g.finished()) co_return "not finished";
        try {
            co_await g.asend("more");
        } catch (const RuntimeError& e) {
            co_return e.what();
        }
        co_return "no error";
    };
    EXPECT_EQ(asyncio_test::run_virtual(main()), "asend() on a finished async generator");
}

TEST(AsyncGenAsend, AsendResumesABodyThatAwaitsBetweenYields) {
    auto gen = []() -> AsyncGenerator<double, double> {
        double acc = 0;
        for (;;) {
            std::optional<double> d = co_yield acc;
            if (d) {
                co_await sleep(*d);
                acc += *d;
            }
        }
    };
    auto main = [&]() -> Coro<std::vector<double>> {
        EventLoop& loop = get_running_loop();
        const double t0 = loop.time();
        auto g = gen();
        std::vector<double> out;
        co_await g.next();
        out.push_back(*co_await g.asend(1.5));
        out.push_back(*co_await g.asend(0.5));
        out.push_back(loop.time() - t0);
        g.aclose();
        co_return out;
    };
    EXPECT_EQ(asyncio_test::run_virtual(main()), (std::vector<double>{1.5, 2.0, 2.0}));
}

TEST(AsyncGenAsend, MoveOnlyValuesCanBeSent) {
    auto gen = []() -> AsyncGenerator<int, std::unique_ptr<int>> {
        int last = 0;
        for (;;) {
            std::optional<std::unique_ptr<int>> p = co_yield last;
            if (p && *p) last = **p;
        }
    };
    auto main = [&]() -> Coro<int> {
        auto g = gen();
        co_await g.next();
        std::optional<int> v = co_await g.asend(std::make_unique<int>(41));
        g.aclose();
        co_return *v + 1;
    };
    EXPECT_EQ(asyncio_test::run_virtual(main()), 42);
}

TEST(AsyncGenAsend, AnExceptionAfterTheSendReachesTheSender) {
    auto gen = []() -> AsyncGenerator<int, int> {
        for (;;) {
            std::optional<int> v = co_yield 0;
            if (v && *v < 0) throw std::invalid_argument("negative");
        }
    };
    auto main = [&]() -> Coro<std::string> {
        auto g = gen();
        co_await g.next();
        try {
            co_await g.asend(-1);
        } catch (const std::invalid_argument& e) {
            co_return std::string(e.what()) + (g.finished() ? " finished" : " open");
        }
        co_return "no error";
    };
    EXPECT_EQ(asyncio_test::run_virtual(main()), "negative finished");
}
