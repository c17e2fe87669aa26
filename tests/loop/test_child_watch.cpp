// tests/loop/test_child_watch.cpp - child watching in the loop core (src/loop/child_watch.hpp):
// return codes as Python reports them, each child reaped once, many children and many loops,
// cancel, the loop closing with children still running; every case on both mechanisms (a
// pidfd polled through the backend, and the waiting-thread fallback).
#include "support.hpp"

#include "loop/child_watch.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

using namespace asyncio;
using asyncio::detail::ChildWatchAccess;
using asyncio::detail::ChildWatchMode;
using asyncio_test::open_fd_count;

namespace {

/// Starts `/bin/sh -c script` (the test's own minimal spawn: the loop layer knows no spawn).
int start_shell(const std::string& script) {
    std::string sh = "/bin/sh", c = "-c", s = script;
    char* argv[] = {sh.data(), c.data(), s.data(), nullptr};
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, "/bin/sh", nullptr, nullptr, argv, environ);
    if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_spawn");
    return pid;
}

/// True once `pid` is gone from the process table (reaped, not just exited).
bool reaped(int pid) { return ::kill(pid, 0) < 0 && errno == ESRCH; }

bool eventually(const std::function<bool()>& cond, double seconds = 10) {
    auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (!cond()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

/// Watches every pid on `loop` and runs it until all were reported (or 20 s passed);
/// returns pid -> returncode, and counts reports per pid in `reports`.
std::map<int, int> wait_all(EventLoop& loop, const std::vector<int>& pids, std::map<int, int>* reports = nullptr) {
    std::map<int, int> codes;
    for (int pid : pids)
        ChildWatchAccess::watch(loop, pid, -1, [&, n = pids.size()](int p, int rc) {
            codes[p] = rc;
            if (reports) ++(*reports)[p];
            if (codes.size() == n) loop.stop();
        });
    auto guard = loop.call_later(20.0, [&] { loop.stop(); });
    loop.run_forever();
    guard.cancel();
    return codes;
}

/// Sets the watch mechanism; checks that the open-fd count is back to its start at the end.
class ModeFixture {
protected:
    void enter(ChildWatchMode mode) {
        detail::set_child_watch_mode(mode);
        fds_before_ = open_fd_count();
    }
    void leave() {
        EXPECT_EQ(open_fd_count(), fds_before_) << "an fd leaked";
        detail::set_child_watch_mode(ChildWatchMode::pidfd);
    }
    std::size_t fds_before_ = 0;
};

/// Cases that hold on both mechanisms.
class ChildWatch : public ::testing::TestWithParam<ChildWatchMode>, protected ModeFixture {
protected:
    void SetUp() override { enter(GetParam()); }
    void TearDown() override { leave(); }
};

/// Cases about the pidfd mechanism only.
class PidfdChildWatch : public ::testing::Test, protected ModeFixture {
protected:
    void SetUp() override { enter(ChildWatchMode::pidfd); }
    void TearDown() override { leave(); }
};

std::string mode_name(const ::testing::TestParamInfo<ChildWatchMode>& info) {
    return info.param == ChildWatchMode::pidfd ? "pidfd" : "thread";
}

}  // namespace

TEST_P(ChildWatch, ExitStatusIsTheReturncode) {
    EventLoop loop;
    const int p0 = start_shell("exit 0"), p3 = start_shell("exit 3"), p255 = start_shell("exit 255");
    auto codes = wait_all(loop, {p0, p3, p255});
    EXPECT_EQ(codes[p0], 0);
    EXPECT_EQ(codes[p3], 3);
    EXPECT_EQ(codes[p255], 255);
}

TEST_P(ChildWatch, DeathBySignalIsTheNegativeSignalNumber) {
    EventLoop loop;
    const int killed = start_shell("exec sleep 30"), terminated = start_shell("exec sleep 30");
    ::kill(killed, SIGKILL);
    ::kill(terminated, SIGTERM);
    auto codes = wait_all(loop, {killed, terminated});
    EXPECT_EQ(codes[killed], -SIGKILL);
    EXPECT_EQ(codes[terminated], -SIGTERM);
}

TEST_P(ChildWatch, EachChildIsReportedOnceAndReapedBeforeTheReport) {
    EventLoop loop;
    const int pid = start_shell("exit 1");
    std::map<int, int> reports;
    bool reaped_at_report = false;
    ChildWatchAccess::watch(loop, pid, -1, [&](int p, int) {
        ++reports[p];
        reaped_at_report = ::waitpid(p, nullptr, WNOHANG) < 0 && errno == ECHILD;
        loop.call_later(0.05, [&] { loop.stop(); });  // leaves room for a second report
    });
    loop.run_forever();
    EXPECT_EQ(reports[pid], 1);
    EXPECT_TRUE(reaped_at_report);
    EXPECT_EQ(ChildWatchAccess::pending_count(loop), 0u);
}

TEST_P(ChildWatch, ManyChildrenAtOnceAreEachReportedWithTheirOwnCode) {
    EventLoop loop;
    std::vector<int> pids;
    std::map<int, int> expected;
    for (int i = 0; i < 40; ++i) {
        pids.push_back(start_shell("exit " + std::to_string(i)));
        expected[pids.back()] = i;
    }
    std::map<int, int> reports;
    EXPECT_EQ(wait_all(loop, pids, &reports), expected);
    for (int pid : pids) EXPECT_EQ(reports[pid], 1);
}

TEST_P(ChildWatch, LoopsInManyThreadsEachSeeOnlyTheirOwnChildren) {
    constexpr int kThreads = 4, kChildren = 20;
    std::atomic<int> good{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            EventLoop loop;
            std::vector<int> pids;
            std::map<int, int> expected;
            for (int i = 0; i < kChildren; ++i) {
                pids.push_back(start_shell("exit " + std::to_string(t * kChildren + i)));
                expected[pids.back()] = t * kChildren + i;
            }
            if (wait_all(loop, pids) == expected) ++good;
        });
    for (auto& th : threads) th.join();
    EXPECT_EQ(good.load(), kThreads);
}

TEST_P(ChildWatch, CancelledWatchNeverReportsButTheChildIsStillReaped) {
    EventLoop loop;
    const int pid = start_shell("exit 4");
    bool called = false;
    ChildWatchAccess::watch(loop, pid, -1, [&](int, int) { called = true; });
    EXPECT_TRUE(ChildWatchAccess::cancel(loop, pid));
    EXPECT_FALSE(ChildWatchAccess::cancel(loop, pid));  // nothing left to cancel
    auto guard = loop.call_later(10.0, [&] { loop.stop(); });
    std::function<void()> poll = [&] {
        if (ChildWatchAccess::pending_count(loop) == 0)
            loop.stop();
        else
            loop.call_later(0.005, poll);
    };
    loop.call_soon(poll);
    loop.run_forever();
    guard.cancel();
    EXPECT_FALSE(called);
    EXPECT_EQ(ChildWatchAccess::pending_count(loop), 0u);
    EXPECT_TRUE(reaped(pid));
}

TEST_P(ChildWatch, ACancelledChildCanBeWatchedAgain) {
    EventLoop loop;
    const int pid = start_shell("sleep 0.1; exit 6");
    ChildWatchAccess::watch(loop, pid, -1, [](int, int) { ADD_FAILURE() << "cancelled callback ran"; });
    ASSERT_TRUE(ChildWatchAccess::cancel(loop, pid));
    auto codes = wait_all(loop, {pid});
    EXPECT_EQ(codes[pid], 6);
}

TEST_P(ChildWatch, WatchingAWatchedChildAgainThrows) {
    EventLoop loop;
    const int pid = start_shell("exit 0");
    ChildWatchAccess::watch(loop, pid, -1, [](int, int) {});
    EXPECT_THROW(ChildWatchAccess::watch(loop, pid, -1, [](int, int) {}), std::invalid_argument);
    ChildWatchAccess::cancel(loop, pid);
    EXPECT_FALSE(ChildWatchAccess::cancel(loop, 999999));  // an unknown pid
    EXPECT_TRUE(eventually([&] {
        asyncio_test::run_briefly(loop);
        return ChildWatchAccess::pending_count(loop) == 0;
    }));
}

TEST_P(ChildWatch, AnExceptionFromTheCallbackGoesToTheExceptionHandler) {
    EventLoop loop;
    asyncio_test::HandlerCapture handler;
    handler.install(loop);
    const int pid = start_shell("exit 0");
    ChildWatchAccess::watch(loop, pid, -1, [&](int, int) {
        loop.call_soon([&] { loop.stop(); });
        throw asyncio_test::Boom("from the child callback");
    });
    loop.run_forever();
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_EQ(asyncio_test::message_of(handler.contexts[0].exception), "from the child callback");
}

TEST_P(ChildWatch, ClosingTheLoopKillsNothingLeaksNoFdAndTheChildIsReapedWhenItExits) {
    int pid = -1;
    {
        EventLoop loop;
        pid = start_shell("exec sleep 30");
        ChildWatchAccess::watch(loop, pid, -1, [](int, int) { ADD_FAILURE() << "reported after close"; });
        loop.close();
        EXPECT_EQ(ChildWatchAccess::pending_count(loop), 0u);
    }
    EXPECT_EQ(open_fd_count(), fds_before_);
    EXPECT_EQ(::kill(pid, 0), 0) << "the child must still run";
    ::kill(pid, SIGKILL);
    EXPECT_TRUE(eventually([&] { return reaped(pid); })) << "left a zombie";
}

TEST_P(ChildWatch, WatchingOnAClosedLoopThrowsAndClosesTheGivenPidfd) {
    EventLoop loop;
    loop.close();
    const int pid = start_shell("exit 0");
    const int pidfd = detail::open_pidfd(pid);
    EXPECT_THROW(ChildWatchAccess::watch(loop, pid, pidfd, [](int, int) {}), RuntimeError);
    ::waitpid(pid, nullptr, 0);
    // the fixture checks that the pidfd was closed
}

TEST_P(ChildWatch, APidfdIsHeldWhileWatchingOnlyOnThePidfdPath) {
    EventLoop loop;
    const std::size_t with_loop = open_fd_count();  // its epoll/io_uring fd and eventfd
    const int pid = start_shell("exec sleep 30");
    ChildWatchAccess::watch(loop, pid, -1, [&](int, int) { loop.stop(); });
    EXPECT_EQ(open_fd_count() - with_loop, GetParam() == ChildWatchMode::pidfd ? 1u : 0u);
    ::kill(pid, SIGKILL);
    loop.run_forever();
    EXPECT_EQ(open_fd_count(), with_loop);
}

TEST_F(PidfdChildWatch, AGivenPidfdIsTakenOverAndClosedAfterTheReport) {
    EventLoop loop;
    const int pid = start_shell("exit 9");
    const int pidfd = detail::open_pidfd(pid);
    ASSERT_GE(pidfd, 0);
    EXPECT_TRUE(::fcntl(pidfd, F_GETFD) & FD_CLOEXEC);
    int code = -1;
    ChildWatchAccess::watch(loop, pid, pidfd, [&](int, int rc) {
        code = rc;
        loop.stop();
    });
    loop.run_forever();
    EXPECT_EQ(code, 9);
    EXPECT_EQ(::fcntl(pidfd, F_GETFD), -1);  // closed (nothing else opened meanwhile)
}

// (Not on the thread path: its waitpid would race the test's.)
TEST_F(PidfdChildWatch, AChildReapedBehindTheLoopsBackIsReportedAs255) {
    asyncio_test::LogCapture log;
    EventLoop loop;
    const int pid = start_shell("exit 2");
    int code = -1;
    ChildWatchAccess::watch(loop, pid, -1, [&](int, int rc) {
        code = rc;
        loop.stop();
    });
    ::waitpid(pid, nullptr, 0);  // someone else's waitpid
    loop.run_forever();
    EXPECT_EQ(code, 255);
    EXPECT_TRUE(log.contains("Unknown child process pid " + std::to_string(pid)));
}

TEST(ChildWatchDecoding, WaitStatusesBecomePythonReturncodes) {
    EXPECT_EQ(detail::returncode_from_wait_status(0), 0);
    EXPECT_EQ(detail::returncode_from_wait_status(3 << 8), 3);
    EXPECT_EQ(detail::returncode_from_wait_status(255 << 8), 255);
    EXPECT_EQ(detail::returncode_from_wait_status(SIGKILL), -SIGKILL);
    EXPECT_EQ(detail::returncode_from_wait_status(SIGSEGV | 0x80), -SIGSEGV);  // core dumped
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, ChildWatch, ::testing::Values(ChildWatchMode::pidfd, ChildWatchMode::thread),
                         mode_name);
