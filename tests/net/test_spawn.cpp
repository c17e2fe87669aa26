// tests/net/test_spawn.cpp - starting children (src/net/spawn.hpp) as Python's Popen does for
// asyncio: PATH search, cwd, env replacement, new session and process group, pass_fds with
// every other fd closed, fds 0-2 redirected, default signal dispositions and an empty mask,
// exec failures reported as std::system_error with nothing leaked; and a spawned child watched
// by the loop. Every test checks that the open-fd count is back to its start.
#include "support.hpp"

#include "loop/child_watch.hpp"
#include "net/spawn.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace asyncio;
using asyncio::detail::spawn;
using asyncio::detail::SpawnSpec;
using asyncio_test::open_fd_count;

namespace {

struct Pipe {
    int r = -1, w = -1;
    Pipe() {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) < 0) throw std::system_error(errno, std::generic_category(), "pipe2");
        r = fds[0];
        w = fds[1];
    }
    ~Pipe() {
        close_r();
        close_w();
    }
    void close_r() {
        if (r >= 0) ::close(r);
        r = -1;
    }
    void close_w() {
        if (w >= 0) ::close(w);
        w = -1;
    }
};

std::string read_all(int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

int wait_code(int pid) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return detail::returncode_from_wait_status(status);
}

/// Runs `spec` with stdout captured (unless the spec redirects it); returns {output, code}.
std::pair<std::string, int> run(SpawnSpec spec) {
    Pipe out;
    if (spec.stdio[1] == detail::spawn_inherit) spec.stdio[1] = out.w;
    detail::SpawnedChild child = spawn(spec);
    if (child.pidfd >= 0) ::close(child.pidfd);
    out.close_w();
    std::string text = read_all(out.r);
    return {text, wait_code(child.pid)};
}

SpawnSpec shell(const std::string& script) {
    SpawnSpec s;
    s.argv = {"sh", "-c", script};
    return s;
}

std::set<int> lines_as_ints(const std::string& text) {
    std::set<int> v;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) v.insert(std::stoi(line));
    return v;
}

/// Expects `fn` to throw std::system_error with `code` and a message containing `needle`.
template <class F>
void expect_spawn_error(F fn, int code, const std::string& needle) {
    try {
        fn();
        ADD_FAILURE() << "no exception";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

/// No child of this process is left unreaped (no zombie, nothing running).
bool no_children_left() { return ::waitpid(-1, nullptr, WNOHANG) < 0 && errno == ECHILD; }

class Spawn : public ::testing::Test {
protected:
    void SetUp() override { fds_before_ = open_fd_count(); }
    void TearDown() override {
        EXPECT_EQ(open_fd_count(), fds_before_) << "an fd leaked";
        EXPECT_TRUE(no_children_left());
    }
    std::size_t fds_before_ = 0;
    asyncio_test::TempDir dir_;
};

void write_file(const std::string& path, const std::string& text, mode_t mode) {
    std::ofstream(path) << text;
    ::chmod(path.c_str(), mode);
}

}  // namespace

TEST_F(Spawn, ProgramIsFoundInPathAndItsExitStatusComesBack) {
    auto [out, code] = run(shell("echo hi; exit 7"));
    EXPECT_EQ(out, "hi\n");
    EXPECT_EQ(code, 7);
}

TEST_F(Spawn, ArgumentsArePassedAsGiven) {
    SpawnSpec s;
    s.argv = {"printf", "%s|", "a b", "", "c\"d"};
    EXPECT_EQ(run(s).first, "a b||c\"d|");
}

TEST_F(Spawn, EnvReplacesTheWholeEnvironment) {
    ::setenv("ASYNCIO_SPAWN_PARENT_ONLY", "1", 1);
    SpawnSpec s = shell("echo \"$FOO|${ASYNCIO_SPAWN_PARENT_ONLY-unset}\"");
    s.env = std::map<std::string, std::string>{{"FOO", "bar"}, {"PATH", "/usr/bin:/bin"}};
    EXPECT_EQ(run(s).first, "bar|unset\n");
    ::unsetenv("ASYNCIO_SPAWN_PARENT_ONLY");
}

TEST_F(Spawn, TheProgramIsSearchedInThePathOfTheGivenEnv) {
    write_file(dir_.path + "/my-tool", "#!/bin/sh\necho from my-tool\n", 0755);
    SpawnSpec s;
    s.argv = {"my-tool"};
    s.env = std::map<std::string, std::string>{{"PATH", "/nonexistent:" + dir_.path}};
    EXPECT_EQ(run(s).first, "from my-tool\n");
    s.env = std::map<std::string, std::string>{{"PATH", "/usr/bin:/bin"}};
    expect_spawn_error([&] { run(s); }, ENOENT, "my-tool");
}

TEST_F(Spawn, CwdIsTheChildsWorkingDirectory) {
    SpawnSpec s;
    s.argv = {"pwd", "-P"};
    s.cwd = dir_.path;
    EXPECT_EQ(run(s).first, std::filesystem::canonical(dir_.path).string() + "\n");
}

TEST_F(Spawn, ARelativeProgramPathIsTakenFromTheCwd) {
    write_file(dir_.path + "/local", "#!/bin/sh\necho local\n", 0755);
    SpawnSpec s;
    s.argv = {"./local"};
    s.cwd = dir_.path;
    EXPECT_EQ(run(s).first, "local\n");
}

TEST_F(Spawn, StartNewSessionMakesTheChildASessionLeader) {
    SpawnSpec s;
    s.argv = {"sleep", "30"};
    s.start_new_session = true;
    auto child = spawn(s);
    EXPECT_EQ(::getsid(child.pid), child.pid);
    EXPECT_EQ(::getpgid(child.pid), child.pid);
    ::kill(child.pid, SIGKILL);
    EXPECT_EQ(wait_code(child.pid), -SIGKILL);
    if (child.pidfd >= 0) ::close(child.pidfd);
}

TEST_F(Spawn, WithoutNewSessionTheChildStaysInTheParentsSessionAndGroup) {
    SpawnSpec s;
    s.argv = {"sleep", "30"};
    auto child = spawn(s);
    EXPECT_EQ(::getsid(child.pid), ::getsid(0));
    EXPECT_EQ(::getpgid(child.pid), ::getpgrp());
    ::kill(child.pid, SIGKILL);
    wait_code(child.pid);
    if (child.pidfd >= 0) ::close(child.pidfd);
}

TEST_F(Spawn, ProcessGroupZeroMakesTheChildLeadANewGroup) {
    SpawnSpec s;
    s.argv = {"sleep", "30"};
    s.process_group = 0;
    auto leader = spawn(s);
    EXPECT_EQ(::getpgid(leader.pid), leader.pid);
    EXPECT_EQ(::getsid(leader.pid), ::getsid(0));  // same session
    // A second child joins the first one's group.
    s.process_group = leader.pid;
    auto member = spawn(s);
    EXPECT_EQ(::getpgid(member.pid), leader.pid);
    ::kill(-leader.pid, SIGKILL);  // the whole group
    EXPECT_EQ(wait_code(leader.pid), -SIGKILL);
    EXPECT_EQ(wait_code(member.pid), -SIGKILL);
    for (int fd : {leader.pidfd, member.pidfd})
        if (fd >= 0) ::close(fd);
}

TEST_F(Spawn, TheChildSeesExactlyItsStdioAndThePassedFds) {
    Pipe passed, not_passed_cloexec;
    const int not_passed_inheritable = ::dup(passed.r);  // no FD_CLOEXEC: must still be closed
    ASSERT_GE(not_passed_inheritable, 0);
    SpawnSpec s;
    s.argv = {"ls", "/proc/self/fd"};
    s.pass_fds = {passed.w};
    auto [out, code] = run(s);
    ::close(not_passed_inheritable);
    EXPECT_EQ(code, 0);
    // ls's own directory fd takes the lowest free number: 3, or the next one after passed.w.
    std::set<int> expected{0, 1, 2, passed.w};
    int ls_fd = 3;
    while (expected.count(ls_fd)) ++ls_fd;
    expected.insert(ls_fd);
    EXPECT_EQ(lines_as_ints(out), expected) << out;
}

TEST_F(Spawn, PassedFdsWorkInTheChild) {
    Pipe p;
    const std::string w = std::to_string(p.w);
    SpawnSpec s = shell("echo through-" + w + " >&" + w);
    s.pass_fds = {p.w};
    auto child = spawn(s);
    if (child.pidfd >= 0) ::close(child.pidfd);
    p.close_w();
    EXPECT_EQ(read_all(p.r), "through-" + w + "\n");
    EXPECT_EQ(wait_code(child.pid), 0);
}

TEST_F(Spawn, Fds012AreRedirectedToTheGivenFds) {
    Pipe in, out, err;
    SpawnSpec s = shell("read x; echo \"out:$x\"; echo \"err:$x\" >&2");
    s.stdio = {in.r, out.w, err.w};
    auto child = spawn(s);
    if (child.pidfd >= 0) ::close(child.pidfd);
    in.close_r();
    out.close_w();
    err.close_w();
    ASSERT_EQ(::write(in.w, "hello\n", 6), 6);
    in.close_w();
    EXPECT_EQ(read_all(out.r), "out:hello\n");
    EXPECT_EQ(read_all(err.r), "err:hello\n");
    EXPECT_EQ(wait_code(child.pid), 0);
}

TEST_F(Spawn, StdoutAndStderrMayShareOneFd) {
    Pipe out;
    SpawnSpec s = shell("echo one; echo two >&2");
    s.stdio = {detail::spawn_inherit, out.w, out.w};  // Python's stderr=STDOUT
    auto child = spawn(s);
    if (child.pidfd >= 0) ::close(child.pidfd);
    out.close_w();
    EXPECT_EQ(read_all(out.r), "one\ntwo\n");
    EXPECT_EQ(wait_code(child.pid), 0);
}

TEST_F(Spawn, LowSourceFdsAreNotClobberedByEarlierRedirections) {
    // The child's stdout goes where the parent's fd 0 points, its stdin comes from a pipe:
    // dup2(pipe, 0) in the child must not destroy the source of fd 1 first.
    Pipe in, out;
    const int saved0 = ::dup(0);
    ASSERT_GE(saved0, 0);
    ASSERT_EQ(::dup2(out.w, 0), 0);  // the parent's fd 0 is now the output pipe
    SpawnSpec s = shell("read x; echo \"got:$x\"");
    s.stdio = {in.r, 0, detail::spawn_inherit};
    detail::SpawnedChild child;
    try {
        child = spawn(s);
    } catch (...) {
        ::dup2(saved0, 0);
        ::close(saved0);
        throw;
    }
    ::dup2(saved0, 0);
    ::close(saved0);
    if (child.pidfd >= 0) ::close(child.pidfd);
    in.close_r();
    out.close_w();
    ASSERT_EQ(::write(in.w, "x\n", 2), 2);
    in.close_w();
    EXPECT_EQ(read_all(out.r), "got:x\n");
    EXPECT_EQ(wait_code(child.pid), 0);
}

TEST_F(Spawn, ChildStartsWithDefaultSignalsAndAnEmptyMaskWhateverTheParentSet) {
    struct sigaction ignore {
    }, old_pipe{}, old_hup{};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &old_pipe);
    ::sigaction(SIGHUP, &ignore, &old_hup);
    sigset_t block, old_mask;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGCHLD);
    ::pthread_sigmask(SIG_BLOCK, &block, &old_mask);
    auto [out, code] = run(shell("grep -E '^Sig(Ign|Blk)' /proc/self/status"));
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    ::sigaction(SIGPIPE, &old_pipe, nullptr);
    ::sigaction(SIGHUP, &old_hup, nullptr);
    EXPECT_EQ(code, 0);
    // SigBlk and SigIgn (hex masks, bit n-1 = signal n). glibc's posix_spawn leaves its two
    // internal signals (32 and 33, below SIGRTMIN: no program can use them) ignored; glibc
    // installs their handlers in the new program when it needs them.
    unsigned long long blocked = ~0ull, ignored = ~0ull;
    ASSERT_EQ(std::sscanf(out.c_str(), "SigBlk:\t%llx\nSigIgn:\t%llx", &blocked, &ignored), 2) << out;
    unsigned long long reserved = 0;
    for (int sig = 32; sig < SIGRTMIN; ++sig) reserved |= 1ull << (sig - 1);
    EXPECT_EQ(blocked, 0u) << out;
    EXPECT_EQ(ignored & ~reserved, 0u) << out;
}

TEST_F(Spawn, AMissingProgramThrowsENOENTNamingIt) {
    SpawnSpec s;
    s.argv = {"asyncio-no-such-program-xyz"};
    expect_spawn_error([&] { spawn(s); }, ENOENT, "asyncio-no-such-program-xyz");
    s.argv = {"/nonexistent/dir/prog"};
    expect_spawn_error([&] { spawn(s); }, ENOENT, "/nonexistent/dir/prog");
}

TEST_F(Spawn, ANonExecutableFileThrowsEACCESByPathAndThroughPath) {
    write_file(dir_.path + "/plain", "#!/bin/sh\necho no\n", 0644);
    SpawnSpec s;
    s.argv = {dir_.path + "/plain"};
    expect_spawn_error([&] { spawn(s); }, EACCES, "plain");
    s.argv = {"plain"};
    s.env = std::map<std::string, std::string>{{"PATH", dir_.path}};
    expect_spawn_error([&] { spawn(s); }, EACCES, "plain");
}

TEST_F(Spawn, AFileThatIsNoProgramThrowsENOEXEC) {
    write_file(dir_.path + "/garbage", "\x7f\x01\x02 not an executable", 0755);
    SpawnSpec s;
    s.argv = {dir_.path + "/garbage"};
    expect_spawn_error([&] { spawn(s); }, ENOEXEC, "garbage");
}

TEST_F(Spawn, ABadCwdThrowsNamingTheProgramAndTheCwd) {
    SpawnSpec s;
    s.argv = {"true"};
    s.cwd = dir_.path + "/missing";
    expect_spawn_error([&] { spawn(s); }, ENOENT, "'true' in cwd '" + dir_.path + "/missing'");
}

TEST_F(Spawn, AFailedSpawnLeavesNoFdEvenWithRedirections) {
    Pipe in, out;
    SpawnSpec s;
    s.argv = {"asyncio-no-such-program-xyz"};
    s.stdio = {in.r, out.w, out.w};
    s.pass_fds = {in.w};
    for (int i = 0; i < 20; ++i) EXPECT_THROW(spawn(s), std::system_error);
    // the fixture checks the fd count and that no child (zombie) is left
}

TEST_F(Spawn, BadArgumentsAreRefusedBeforeAnythingStarts) {
    SpawnSpec s;
    EXPECT_THROW(spawn(s), std::invalid_argument);  // empty argv
    s.argv = {"echo", std::string("a\0b", 3)};
    EXPECT_THROW(spawn(s), std::invalid_argument);
    s.argv = {"echo"};
    s.env = std::map<std::string, std::string>{{"A=B", "c"}};
    EXPECT_THROW(spawn(s), std::invalid_argument);
}

TEST_F(Spawn, ThePidfdReturnedIsCloseOnExecAndRefersToTheChild) {
    detail::set_child_watch_mode(detail::ChildWatchMode::pidfd);
    auto child = spawn(shell("exit 0"));
    ASSERT_GE(child.pidfd, 0);
    EXPECT_TRUE(::fcntl(child.pidfd, F_GETFD) & FD_CLOEXEC);
    siginfo_t info{};
    ASSERT_EQ(::waitid(static_cast<idtype_t>(3) /*P_PIDFD*/, static_cast<id_t>(child.pidfd), &info, WEXITED), 0);
    EXPECT_EQ(info.si_pid, child.pid);
    ::close(child.pidfd);
}

TEST_F(Spawn, InThreadModeNoPidfdIsOpened) {
    detail::set_child_watch_mode(detail::ChildWatchMode::thread);
    auto child = spawn(shell("exit 0"));
    detail::set_child_watch_mode(detail::ChildWatchMode::pidfd);
    EXPECT_EQ(child.pidfd, -1);
    EXPECT_EQ(wait_code(child.pid), 0);
}

// The subprocess transport's path: spawn, then let the loop watch the child with its pidfd.
TEST_F(Spawn, ASpawnedChildIsWatchedByTheLoopOnBothMechanisms) {
    for (auto mode : {detail::ChildWatchMode::pidfd, detail::ChildWatchMode::thread}) {
        detail::set_child_watch_mode(mode);
        {
            EventLoop loop;
            std::vector<int> codes;
            for (int i : {0, 5, 255}) {
                auto child = spawn(shell("exit " + std::to_string(i)));
                detail::ChildWatchAccess::watch(loop, child.pid, child.pidfd, [&](int, int rc) {
                    codes.push_back(rc);
                    if (codes.size() == 3) loop.stop();
                });
            }
            auto guard = loop.call_later(20.0, [&] { loop.stop(); });
            loop.run_forever();
            guard.cancel();
            std::sort(codes.begin(), codes.end());
            EXPECT_EQ(codes, (std::vector<int>{0, 5, 255}));
        }
    }
    detail::set_child_watch_mode(detail::ChildWatchMode::pidfd);
}
