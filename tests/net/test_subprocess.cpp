// tests/net/test_subprocess.cpp - child processes: the semantic scenarios of CPython's
// test_asyncio/test_subprocess.py (SubprocessMixin) on real programs (/bin/sh, cat, true,
// sleep), through create_subprocess_exec/_shell and Process, and through the loop's
// subprocess_exec with a SubprocessProtocol. Every test checks that the process's open-fd
// count is unchanged afterwards (NoFdLeak), and runs on both backends.
#include <gtest/gtest.h>

#include "no_fd_leak.hpp"
#include "support.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

using namespace asyncio;
using asyncio_test::NoFdLeak;

namespace {

class Subprocess : public NoFdLeak {};

std::vector<std::string> sh(const std::string& script) { return {"/bin/sh", "-c", script}; }

SubprocessOptions pipes(bool in, bool out, bool err = false) {
    SubprocessOptions o;
    if (in) o.stdin_ = PIPE;
    if (out) o.stdout_ = PIPE;
    if (err) o.stderr_ = PIPE;
    return o;
}

// ---- streams ----------------------------------------------------------------------------------

Coro<std::pair<int, std::string>> cat_by_hand(std::string data) {
    std::vector<std::string> argv{"cat"};
    Process p = co_await create_subprocess_exec(argv, pipes(true, true));
    p.stdin_->write(data);
    co_await p.stdin_->drain();
    p.stdin_->close();
    std::string out = co_await p.stdout_->read();
    int status = co_await p.wait();
    co_return std::pair<int, std::string>(status, out);
}

TEST_F(Subprocess, StdinAndStdoutAreStreams) {
    auto [status, out] = run(cat_by_hand("some data"));
    EXPECT_EQ(status, 0);
    EXPECT_EQ(out, "some data");
}

Coro<std::pair<std::optional<int>, std::string>> cat_communicate(std::string data) {
    std::vector<std::string> argv{"cat"};
    Process p = co_await create_subprocess_exec(argv, pipes(true, true));
    auto [out, err] = co_await p.communicate(std::move(data));
    EXPECT_EQ(err, "");  // not a pipe
    co_return std::pair<std::optional<int>, std::string>(p.returncode(), out);
}

TEST_F(Subprocess, CommunicateFeedsStdinAndCollectsStdout) {
    auto [status, out] = run(cat_communicate("some data"));
    EXPECT_EQ(status, std::optional<int>(0));
    EXPECT_EQ(out, "some data");
}

TEST_F(Subprocess, CommunicateWithoutInputClosesStdin) {
    auto [status, out] = run(cat_communicate(""));
    EXPECT_EQ(status, std::optional<int>(0));
    EXPECT_EQ(out, "");
}

TEST_F(Subprocess, CommunicateMovesTensOfMebibytesBothWaysWithoutDeadlock) {
    std::string data = asyncio_test::pattern(24 << 20);
    auto [status, out] = run(cat_communicate(data));
    EXPECT_EQ(status, std::optional<int>(0));
    EXPECT_EQ(out.size(), data.size());
    EXPECT_TRUE(out == data);
}

Coro<std::pair<std::string, std::string>> communicate_script(std::string script, SubprocessOptions opts,
                                                             std::string input = {}) {
    Process p = co_await create_subprocess_exec(sh(script), opts);
    auto result = co_await p.communicate(std::move(input));
    EXPECT_EQ(p.returncode(), std::optional<int>(0));
    co_return result;
}

TEST_F(Subprocess, StdoutAndStderrAreSeparatePipes) {
    auto [out, err] = run(communicate_script("echo out; echo err >&2", pipes(false, true, true)));
    EXPECT_EQ(out, "out\n");
    EXPECT_EQ(err, "err\n");
}

TEST_F(Subprocess, StderrToStdoutMergesTheStreams) {
    SubprocessOptions o = pipes(false, true);
    o.stderr_ = STDOUT;
    auto [out, err] = run(communicate_script("echo out; echo err >&2", o));
    EXPECT_EQ(out, "out\nerr\n");
    EXPECT_EQ(err, "");
}

TEST_F(Subprocess, EmptyInputGivesTheChildAnImmediateEof) {
    auto [out, err] = run(communicate_script("wc -c", pipes(true, true), ""));
    EXPECT_EQ(out, "0\n");
}

TEST_F(Subprocess, DevnullInputReadsNothing) {
    SubprocessOptions o = pipes(false, true);
    o.stdin_ = DEVNULL;
    auto [out, err] = run(communicate_script("wc -c", o));
    EXPECT_EQ(out, "0\n");
}

TEST_F(Subprocess, DevnullOutputAndErrorDiscardWhatTheChildWrites) {
    SubprocessOptions o;
    o.stdout_ = DEVNULL;
    o.stderr_ = DEVNULL;
    auto [out, err] = run(communicate_script("echo out; echo err >&2", o));
    EXPECT_EQ(out, "");
    EXPECT_EQ(err, "");
}

Coro<std::string> read_slowly_then_wait(int& status) {
    // 256 KiB, more than the pipe holds: the child blocks until we read, then exits 1.
    Process p = co_await create_subprocess_exec(sh("head -c 262144 /dev/zero; exit 1"), pipes(false, true));
    std::string all;
    for (;;) {
        std::string chunk = co_await p.stdout_->read(65536);
        if (chunk.empty()) break;
        all += chunk;
        co_await sleep(0.02);
    }
    status = co_await p.wait();
    co_return all;
}

TEST_F(Subprocess, OutputIsReadCompletelyAfterTheChildExited) {
    int status = -100;
    std::string out = run(read_slowly_then_wait(status));
    EXPECT_EQ(out.size(), 262144u);
    EXPECT_EQ(status, 1);
}

Coro<std::string> small_limit_output() {
    SubprocessOptions o = pipes(true, true);
    o.limit = 10;
    Process p = co_await create_subprocess_exec(sh("head -c 1048576 /dev/zero | tr '\\0' x"), o);
    auto [out, err] = co_await p.communicate();
    co_return out;
}

TEST_F(Subprocess, ASmallReaderLimitPausesThePipeWithoutLosingBytes) {
    std::string out = run(small_limit_output());
    EXPECT_EQ(out.size(), 1048576u);
    EXPECT_EQ(out.find_first_not_of('x'), std::string::npos);
}

// ---- shell, options ---------------------------------------------------------------------------

Coro<int> shell_status(std::string cmd, SubprocessOptions opts = {}) {
    Process p = co_await create_subprocess_shell(std::move(cmd), opts);
    co_return co_await p.wait();
}

TEST_F(Subprocess, ShellRunsTheCommandWithBinSh) { EXPECT_EQ(run(shell_status("exit 7")), 7); }

Coro<std::string> shell_output(std::string cmd, SubprocessOptions opts) {
    opts.stdout_ = PIPE;
    Process p = co_await create_subprocess_shell(std::move(cmd), opts);
    auto [out, err] = co_await p.communicate();
    co_return out;
}

TEST_F(Subprocess, StartNewSessionMakesTheChildASessionLeader) {
    SubprocessOptions o;
    o.start_new_session = true;
    // Field 6 of /proc/PID/stat is the session id: the child's own pid when it leads one.
    std::string out = run(shell_output("echo $$ $(cut -d' ' -f6 /proc/$$/stat)", o));
    int pid = 0, sid = -1;
    ASSERT_EQ(std::sscanf(out.c_str(), "%d %d", &pid, &sid), 2) << out;
    EXPECT_EQ(pid, sid);
    EXPECT_NE(sid, ::getsid(0));
}

TEST_F(Subprocess, ProcessGroupZeroPutsTheChildInItsOwnGroup) {
    SubprocessOptions o;
    o.process_group = 0;
    std::string out = run(shell_output("echo $$ $(cut -d' ' -f5 /proc/$$/stat)", o));
    int pid = 0, pgid = -1;
    ASSERT_EQ(std::sscanf(out.c_str(), "%d %d", &pid, &pgid), 2) << out;
    EXPECT_EQ(pid, pgid);
}

TEST_F(Subprocess, CwdIsTheChildsWorkingDirectory) {
    asyncio_test::TempDir dir;
    SubprocessOptions o;
    o.cwd = dir.path;
    EXPECT_EQ(run(shell_output("pwd", o)), dir.path + "\n");
}

TEST_F(Subprocess, EnvReplacesTheChildsEnvironment) {
    std::map<std::string, std::string> env{{"FOO", "baz"}, {"PATH", "/usr/bin:/bin"}};
    SubprocessOptions o;
    o.env = env;
    EXPECT_EQ(run(shell_output("printf '%s|%s' \"$FOO\" \"${HOME-unset}\"", o)), "baz|unset");
}

TEST_F(Subprocess, PassFdsKeepsThoseFdsOpenInTheChild) {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    std::vector<int> pass{fds[1]};
    SubprocessOptions o;
    o.pass_fds = pass;
    EXPECT_EQ(run(shell_status("echo hi >&" + std::to_string(fds[1]), o)), 0);
    char buf[8] = {};
    EXPECT_EQ(::read(fds[0], buf, sizeof buf), 3);
    EXPECT_STREQ(buf, "hi\n");
    ::close(fds[0]);
    ::close(fds[1]);
}

TEST_F(Subprocess, OtherFdsOfOursAreClosedInTheChild) {
    int fd = ::open("/dev/null", O_RDONLY);  // not CLOEXEC: Popen's close_fds closes it anyway
    ASSERT_GE(fd, 3);
    std::string out = run(shell_output("ls /proc/$$/fd", {}));
    ::close(fd);
    EXPECT_EQ(out, "0\n1\n2\n") << "the shell's fds: nothing of ours but 0, 1, 2";
}

// ---- signals and return codes -------------------------------------------------------------------

Coro<std::pair<std::optional<int>, int>> signalled(int how) {
    std::vector<std::string> argv{"sleep", "3600"};
    Process p = co_await create_subprocess_exec(argv);
    std::optional<int> before = p.returncode();
    if (how == SIGKILL)
        p.kill();
    else if (how == SIGTERM)
        p.terminate();
    else
        p.send_signal(how);
    int status = co_await p.wait();
    co_return std::pair<std::optional<int>, int>(before, status);
}

TEST_F(Subprocess, KillGivesMinusSigkill) {
    auto [before, status] = run(signalled(SIGKILL));
    EXPECT_EQ(before, std::nullopt);
    EXPECT_EQ(status, -SIGKILL);
}

TEST_F(Subprocess, TerminateGivesMinusSigterm) { EXPECT_EQ(run(signalled(SIGTERM)).second, -SIGTERM); }

Coro<int> sighup_after_ready() {
    Process p = co_await create_subprocess_exec(sh("echo sleeping; exec sleep 3600"), pipes(false, true));
    std::string line = co_await p.stdout_->readline();
    EXPECT_EQ(line, "sleeping\n");
    p.send_signal(SIGHUP);
    co_return co_await p.wait();
}

TEST_F(Subprocess, ChildrenStartWithDefaultDispositionsEvenWhenWeIgnoreTheSignal) {
    // bpo-31034: we ignore SIGHUP; the child must not inherit that.
    auto old = ::signal(SIGHUP, SIG_IGN);
    int status = run(sighup_after_ready());
    ::signal(SIGHUP, old);
    EXPECT_EQ(status, -SIGHUP);
}

Coro<int> signal_after_exit() {
    std::vector<std::string> argv{"true"};
    Process p = co_await create_subprocess_exec(argv);
    int status = co_await p.wait();
    try {
        p.send_signal(SIGTERM);
        ADD_FAILURE() << "no exception";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ESRCH);
    }
    EXPECT_THROW(p.kill(), std::system_error);
    co_return status;
}

TEST_F(Subprocess, SignallingAFinishedProcessThrowsEsrch) { EXPECT_EQ(run(signal_after_exit()), 0); }

Coro<std::vector<int>> ten_waits() {
    std::vector<std::string> argv{"cat"};
    Process p = co_await create_subprocess_exec(argv, pipes(true, true));
    co_await p.communicate("some data");
    std::vector<Coro<int>> waits;
    for (int i = 0; i < 10; ++i) waits.push_back(p.wait());
    co_return co_await gather(std::move(waits));
}

TEST_F(Subprocess, ConcurrentWaitsAllGetTheReturnCode) { EXPECT_EQ(run(ten_waits()), std::vector<int>(10, 0)); }

Coro<std::vector<int>> fifty_at_once() {
    std::vector<Coro<int>> runs;
    for (int i = 0; i < 50; ++i) runs.push_back(shell_status("exit " + std::to_string(i % 7)));
    co_return co_await gather(std::move(runs));
}

TEST_F(Subprocess, FiftyChildrenAtOnceEachReportTheirOwnStatus) {
    std::vector<int> got = run(fifty_at_once());
    ASSERT_EQ(got.size(), 50u);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(got[i], i % 7) << i;
}

// ---- broken pipes -------------------------------------------------------------------------------

Coro<std::error_code> drain_into_a_child_that_left() {
    int go[2];
    EXPECT_EQ(::pipe2(go, O_CLOEXEC), 0);
    std::vector<int> pass{go[0]};
    SubprocessOptions o = pipes(true, false);
    o.pass_fds = pass;
    // The child waits for our "go", then exits without reading its stdin.
    Process p = co_await create_subprocess_exec(sh("head -c1 <&" + std::to_string(go[0]) + " >/dev/null"), o);
    p.stdin_->write(std::string(4 << 20, 'x'));  // more than the pipe holds
    EXPECT_EQ(::write(go[1], "g", 1), 1);
    std::error_code code;
    try {
        co_await p.stdin_->drain();
    } catch (const std::system_error& e) {
        code = e.code();
    }
    EXPECT_EQ(co_await p.wait(), 0);
    ::close(go[0]);
    ::close(go[1]);
    co_return code;
}

TEST_F(Subprocess, DrainRaisesBrokenPipeWhenTheChildLeavesItsStdinUnread) {
    // SIGPIPE keeps its default action: the library must not let it kill us.
    auto old = ::signal(SIGPIPE, SIG_DFL);
    std::error_code code = run(drain_into_a_child_that_left());
    ::signal(SIGPIPE, old);
    EXPECT_TRUE(code == std::errc::broken_pipe || code == std::errc::connection_reset) << code.message();
}

Coro<int> communicate_with_a_child_that_reads_nothing() {
    std::vector<std::string> argv{"true"};
    Process p = co_await create_subprocess_exec(argv, pipes(true, false));
    co_await p.communicate(std::string(4 << 20, 'x'));
    co_return co_await p.wait();
}

TEST_F(Subprocess, CommunicateIgnoresABrokenPipe) {
    auto old = ::signal(SIGPIPE, SIG_DFL);
    EXPECT_EQ(run(communicate_with_a_child_that_reads_nothing()), 0);
    ::signal(SIGPIPE, old);
}

// ---- failures -----------------------------------------------------------------------------------

Coro<std::error_code> start_failure(std::vector<std::string> argv, bool with_pipes) {
    try {
        Process p = co_await create_subprocess_exec(std::move(argv), pipes(with_pipes, with_pipes, with_pipes));
        ADD_FAILURE() << "started pid " << p.pid();
    } catch (const std::system_error& e) {
        co_return e.code();
    }
    co_return std::error_code();
}

TEST_F(Subprocess, AMissingProgramThrowsEnoentAndLeaksNothing) {
    std::vector<std::string> argv{"/nonexistent/program"};
    EXPECT_EQ(run(start_failure(argv, false)).value(), ENOENT);
    EXPECT_EQ(run(start_failure(argv, true)).value(), ENOENT);
    std::vector<std::string> in_path{"no-such-program-in-path-xyz"};
    EXPECT_EQ(run(start_failure(in_path, true)).value(), ENOENT);
}

TEST_F(Subprocess, AFileWithoutExecutePermissionThrowsEacces) {
    asyncio_test::TempDir dir;
    std::string path = dir.file("script");
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "#!/bin/sh\n", 10), 10);
    ::close(fd);
    std::vector<std::string> argv{path};
    EXPECT_EQ(run(start_failure(argv, true)).value(), EACCES);
}

TEST_F(Subprocess, AnEmptyArgvIsInvalid) {
    auto main = []() -> Coro<void> {
        std::vector<std::string> argv;
        co_await create_subprocess_exec(argv);
    };
    EXPECT_THROW(run(main()), std::invalid_argument);
}

TEST_F(Subprocess, StdoutCannotBeAsyncioStdout) {
    auto main = []() -> Coro<void> {
        SubprocessOptions o;
        o.stdout_ = STDOUT;
        std::vector<std::string> argv{"true"};
        co_await create_subprocess_exec(argv, o);
    };
    EXPECT_THROW(run(main()), std::invalid_argument);
}

// ---- cancellation -------------------------------------------------------------------------------

Coro<std::pair<std::optional<int>, int>> cancel_wait_then_kill() {
    std::vector<std::string> argv{"sleep", "3600"};
    Process p = co_await create_subprocess_exec(argv);
    Task<int> waiting = create_task(p.wait());
    co_await sleep(0);
    waiting.cancel();
    try {
        co_await waiting;
    } catch (const CancelledError&) {
    }
    std::optional<int> still_running = p.returncode();
    p.kill();
    int status = co_await p.wait();
    co_return std::pair<std::optional<int>, int>(still_running, status);
}

TEST_F(Subprocess, CancellingWaitLeavesTheChildRunningAndWaitable) {
    auto [running, status] = run(cancel_wait_then_kill());
    EXPECT_EQ(running, std::nullopt);
    EXPECT_EQ(status, -SIGKILL);
}

Coro<int> cancel_communicate_then_kill() {
    Process p = co_await create_subprocess_exec(sh("exec sleep 3600"), pipes(true, true));
    Task<std::pair<std::string, std::string>> talking = create_task(p.communicate("x"));
    co_await sleep(0.05);
    talking.cancel();
    try {
        co_await talking;
    } catch (const CancelledError&) {
    }
    EXPECT_EQ(p.returncode(), std::nullopt);
    p.kill();
    co_return co_await p.wait();
}

TEST_F(Subprocess, CancellingCommunicateLeavesTheChildRunning) { EXPECT_EQ(run(cancel_communicate_then_kill()), -9); }

Coro<void> cancel_creation() {
    std::vector<std::string> argv{"sleep", "3600"};
    Task<Process> creating = create_task(create_subprocess_exec(argv, pipes(true, true, true)));
    get_running_loop().call_soon([creating]() mutable { creating.cancel(); });
    try {
        co_await creating;
        ADD_FAILURE() << "not cancelled";
    } catch (const CancelledError&) {
    }
    // The half-made child was killed and is reaped; its pipes are closed.
    co_await sleep(0.2);
}

TEST_F(Subprocess, CancellingCreationKillsTheChildAndLeaksNothing) { run(cancel_creation()); }

// ---- the low-level protocol --------------------------------------------------------------------

struct RecordingSubprocess : SubprocessProtocol {
    std::vector<std::string> events;
    std::string out, err;
    std::shared_ptr<SubprocessTransport> transport;
    Future<void> lost{get_running_loop()};

    void connection_made(std::shared_ptr<SubprocessTransport> t) override {
        transport = t;
        events.push_back("made");
        // Close our stdin pipe at once, so the child sees EOF.
        if (auto in = t->get_pipe_transport(0)) in->close();
    }
    void pipe_data_received(int fd, std::string_view data) override { (fd == 1 ? out : err) += data; }
    void pipe_connection_lost(int fd, std::exception_ptr) override {
        events.push_back("pipe_lost " + std::to_string(fd));
    }
    void process_exited() override { events.push_back("exited " + std::to_string(*transport->get_returncode())); }
    void connection_lost(std::exception_ptr) override {
        events.push_back("lost");
        transport.reset();
        lost.set_result();
    }
};

Coro<std::shared_ptr<RecordingSubprocess>> low_level_events() {
    EventLoop& loop = get_running_loop();
    auto proto = std::make_shared<RecordingSubprocess>();
    auto factory = [proto] { return proto; };
    auto made = co_await loop.subprocess_exec(factory, sh("printf stdout; printf stderr >&2; exit 3"));
    EXPECT_EQ(made.second, proto);
    EXPECT_GT(made.first->get_pid(), 0);
    co_await proto->lost;
    co_return proto;
}

TEST_F(Subprocess, TheProtocolHearsEveryPipeAndTheExitThenConnectionLostLast) {
    auto proto = run(low_level_events());
    EXPECT_EQ(proto->out, "stdout");
    EXPECT_EQ(proto->err, "stderr");
    ASSERT_GE(proto->events.size(), 5u);
    EXPECT_EQ(proto->events.front(), "made");
    EXPECT_EQ(proto->events.back(), "lost");
    std::vector<std::string> middle(proto->events.begin() + 1, proto->events.end() - 1);
    std::sort(middle.begin(), middle.end());
    EXPECT_EQ(middle, (std::vector<std::string>{"exited 3", "pipe_lost 0", "pipe_lost 1", "pipe_lost 2"}));
}

Coro<std::pair<std::optional<int>, int>> close_running() {
    EventLoop& loop = get_running_loop();
    auto proto = std::make_shared<RecordingSubprocess>();
    auto factory = [proto] { return proto; };
    std::vector<std::string> argv{"sleep", "3600"};
    auto made = co_await loop.subprocess_exec(factory, argv, SubprocessOptions{});
    std::optional<int> before = made.first->get_returncode();
    EXPECT_EQ(made.first->get_pipe_transport(1), nullptr);  // inherited, not a pipe
    made.first->close();
    co_await wait_for(proto->lost, 10.0);
    co_return std::pair<std::optional<int>, int>(before, *made.first->get_returncode());
}

TEST_F(Subprocess, ClosingTheTransportKillsARunningChild) {
    auto [before, status] = run(close_running());
    EXPECT_EQ(before, std::nullopt);
    EXPECT_EQ(status, -SIGKILL);
}

// ---- the loop closing ---------------------------------------------------------------------------

Coro<int> leave_a_child_running() {
    std::vector<std::string> argv{"sleep", "3600"};
    Process p = co_await create_subprocess_exec(argv, pipes(true, true));
    co_return p.pid();
}

TEST_F(Subprocess, ALoopClosingWithAChildRunningReleasesItsFdsAndLeavesTheChildAlone) {
    int pid = run(leave_a_child_running());
    EXPECT_EQ(::kill(pid, 0), 0) << "the child was killed";
    ::kill(pid, SIGKILL);  // the loop core's reaper collects it
}

// ---- loops in many threads -----------------------------------------------------------------

Coro<std::vector<std::string>> echo_each(int thread, int n) {
    std::vector<Coro<std::string>> runs;
    for (int i = 0; i < n; ++i) {
        SubprocessOptions o;
        o.stdout_ = PIPE;
        runs.push_back(shell_output("echo " + std::to_string(thread) + "-" + std::to_string(i), o));
    }
    co_return co_await gather(std::move(runs));
}

class SubprocessThreads : public NoFdLeak {};

TEST_F(SubprocessThreads, LoopsInFourThreadsEachRunAndHearTheirOwnChildren) {
    // No process-wide SIGCHLD handler: each loop watches its own children (pidfds).
    constexpr int threads = 4, per_thread = 10;
    std::vector<std::vector<std::string>> got(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back([t, &got] { got[t] = run(echo_each(t, per_thread)); });
    for (auto& th : pool) th.join();
    for (int t = 0; t < threads; ++t) {
        ASSERT_EQ(got[t].size(), std::size_t(per_thread));
        for (int i = 0; i < per_thread; ++i) EXPECT_EQ(got[t][i], std::to_string(t) + "-" + std::to_string(i) + "\n");
    }
}

}  // namespace
