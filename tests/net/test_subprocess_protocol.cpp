// tests/net/test_subprocess_protocol.cpp - loop.subprocess_exec / subprocess_shell with a
// SubprocessProtocol: the scenarios of CPython's test_events.py SubprocessTestsMixin (with
// its MySubprocessProtocol, which asserts the order of the calls), on real programs, on both
// backends; every test checks the open-fd count (NoFdLeak).
#include <gtest/gtest.h>

#include "no_fd_leak.hpp"
#include "support.hpp"

#include <csignal>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace asyncio;

namespace {

class SubprocessProtocolTest : public asyncio_test::NoFdLeak {};

std::vector<std::string> sh(const std::string& script) { return {"/bin/sh", "-c", script}; }

/// Python's MySubprocessProtocol: a state machine that fails the test on a call out of order.
struct MySubprocessProtocol : SubprocessProtocol {
    std::string state = "INITIAL";
    std::shared_ptr<SubprocessTransport> transport;
    Future<void> connected{get_running_loop()};
    Future<void> completed{get_running_loop()};
    std::vector<Future<void>> disconnects{Future<void>(get_running_loop()), Future<void>(get_running_loop()),
                                          Future<void>(get_running_loop())};
    std::string data[3];
    Event got_data[3];
    std::optional<int> returncode;

    void expect_state(const char* expected) { EXPECT_EQ(state, expected); }
    void connection_made(std::shared_ptr<SubprocessTransport> t) override {
        transport = std::move(t);
        expect_state("INITIAL");
        state = "CONNECTED";
        connected.set_result();
    }
    void connection_lost(std::exception_ptr) override {
        expect_state("CONNECTED");
        state = "CLOSED";
        transport.reset();
        completed.set_result();
    }
    void pipe_data_received(int fd, std::string_view bytes) override {
        expect_state("CONNECTED");
        data[fd] += bytes;
        got_data[fd].set();
    }
    void pipe_connection_lost(int fd, std::exception_ptr exc) override {
        expect_state("CONNECTED");
        if (exc)
            disconnects[fd].set_exception(exc);
        else
            disconnects[fd].set_result();
    }
    void process_exited() override {
        expect_state("CONNECTED");
        returncode = transport->get_returncode();
    }
};

using Made = std::pair<std::shared_ptr<SubprocessTransport>, std::shared_ptr<MySubprocessProtocol>>;

Coro<Made> exec(std::vector<std::string> argv) {
    auto factory = [] { return std::make_shared<MySubprocessProtocol>(); };
    co_return co_await get_running_loop().subprocess_exec(factory, std::move(argv));
}
Coro<Made> exec(std::vector<std::string> argv, SubprocessOptions opts) {
    auto factory = [] { return std::make_shared<MySubprocessProtocol>(); };
    co_return co_await get_running_loop().subprocess_exec(factory, std::move(argv), opts);
}

/// Until the child's stdout gave `n` bytes, in one read or several (a pipe may cut what the
/// child wrote; so do the 1-byte reads of ASYNCIO_FAULTS).
Coro<void> until_stdout(MySubprocessProtocol& proto, std::size_t n) {
    while (proto.data[1].size() < n) {
        proto.got_data[1].clear();
        co_await wait_for(proto.got_data[1].wait(), 10.0);
    }
}

Coro<std::string> exec_cat() {
    std::vector<std::string> argv{"cat"};
    auto [transp, proto] = co_await exec(argv);
    co_await proto->connected;
    EXPECT_EQ(proto->state, "CONNECTED");
    transp->get_pipe_transport(0)->write("Python The Winner");
    while (proto->data[1].size() < 17) {
        proto->got_data[1].clear();
        co_await wait_for(proto->got_data[1].wait(), 10.0);
    }
    transp->close();
    co_await wait_for(proto->completed, 10.0);
    EXPECT_EQ(proto->returncode, std::optional<int>(-SIGKILL));  // close() killed the running cat
    co_return proto->data[1];
}

TEST_F(SubprocessProtocolTest, ExecWritesToStdinAndReadsStdout) { EXPECT_EQ(run(exec_cat()), "Python The Winner"); }

Coro<void> interactive() {
    std::vector<std::string> argv{"cat"};
    auto [transp, proto] = co_await exec(argv);
    co_await proto->connected;
    std::shared_ptr<Transport> in = transp->get_pipe_transport(0);
    in->write("Python ");
    co_await until_stdout(*proto, 7);
    EXPECT_EQ(proto->data[1], "Python ");
    in->write("The Winner");
    co_await until_stdout(*proto, 17);
    EXPECT_EQ(proto->data[1], "Python The Winner");
    transp->close();
    co_await wait_for(proto->completed, 10.0);
}

TEST_F(SubprocessProtocolTest, InteractiveWritesAndReadsTakeTurns) { run(interactive()); }

Coro<void> shell_echo() {
    auto factory = [] { return std::make_shared<MySubprocessProtocol>(); };
    auto [transp, proto] = co_await get_running_loop().subprocess_shell(factory, "echo Python");
    co_await proto->connected;
    transp->get_pipe_transport(0)->close();
    co_await wait_for(proto->completed, 10.0);
    EXPECT_EQ(proto->returncode, std::optional<int>(0));
    for (auto& d : proto->disconnects) EXPECT_TRUE(d.done());
    EXPECT_EQ(proto->data[1], "Python\n");
    EXPECT_EQ(proto->data[2], "");
    transp->close();
}

TEST_F(SubprocessProtocolTest, ShellRunsTheCommandAndEveryPipeDisconnects) { run(shell_echo()); }

Coro<void> exit_code_and_close_after_finish() {
    auto factory = [] { return std::make_shared<MySubprocessProtocol>(); };
    SubprocessOptions inherit_all;  // stdin/stdout/stderr unset: Python's None
    auto [transp, proto] = co_await get_running_loop().subprocess_shell(factory, "exit 7", inherit_all);
    EXPECT_EQ(transp->get_pipe_transport(0), nullptr);
    EXPECT_EQ(transp->get_pipe_transport(1), nullptr);
    EXPECT_EQ(transp->get_pipe_transport(2), nullptr);
    co_await wait_for(proto->completed, 10.0);
    EXPECT_EQ(proto->returncode, std::optional<int>(7));
    EXPECT_EQ(transp->get_returncode(), std::optional<int>(7));
    transp->close();  // after the finish: nothing to do, nothing thrown
    EXPECT_TRUE(transp->is_closing());
}

TEST_F(SubprocessProtocolTest, ExitCodeAndCloseAfterFinish) { run(exit_code_and_close_after_finish()); }

Coro<std::optional<int>> signalled(int sig) {
    std::vector<std::string> argv{"sleep", "3600"};
    auto [transp, proto] = co_await exec(argv);
    co_await proto->connected;
    if (sig == SIGKILL)
        transp->kill();
    else if (sig == SIGTERM)
        transp->terminate();
    else
        transp->send_signal(sig);
    co_await wait_for(proto->completed, 10.0);
    transp->close();
    co_return proto->returncode;
}

TEST_F(SubprocessProtocolTest, KillTerminateAndSendSignal) {
    EXPECT_EQ(run(signalled(SIGKILL)), std::optional<int>(-SIGKILL));
    EXPECT_EQ(run(signalled(SIGTERM)), std::optional<int>(-SIGTERM));
    auto old = ::signal(SIGHUP, SIG_IGN);  // ours; the child starts with the default
    EXPECT_EQ(run(signalled(SIGHUP)), std::optional<int>(-SIGHUP));
    ::signal(SIGHUP, old);
}

const char* echo2 = "read line; echo \"OUT:$line\"; echo \"ERR:$line\" >&2";

Coro<void> stderr_separate() {
    auto [transp, proto] = co_await exec(sh(echo2));
    co_await proto->connected;
    transp->get_pipe_transport(0)->write("test\n");
    co_await wait_for(proto->completed, 10.0);
    EXPECT_EQ(proto->data[1], "OUT:test\n");
    EXPECT_EQ(proto->data[2], "ERR:test\n");
    EXPECT_EQ(proto->returncode, std::optional<int>(0));
    transp->close();
}

TEST_F(SubprocessProtocolTest, StderrIsItsOwnPipe) { run(stderr_separate()); }

Coro<void> stderr_to_stdout() {
    SubprocessOptions o;
    o.stdin_ = PIPE;
    o.stdout_ = PIPE;
    o.stderr_ = STDOUT;
    auto [transp, proto] = co_await exec(sh(echo2), o);
    co_await proto->connected;
    EXPECT_NE(transp->get_pipe_transport(1), nullptr);
    EXPECT_EQ(transp->get_pipe_transport(2), nullptr);
    transp->get_pipe_transport(0)->write("test\n");
    co_await wait_for(proto->completed, 10.0);
    EXPECT_EQ(proto->data[1], "OUT:test\nERR:test\n");
    EXPECT_EQ(proto->data[2], "");
    EXPECT_EQ(proto->returncode, std::optional<int>(0));
    transp->close();
}

TEST_F(SubprocessProtocolTest, StderrRedirectedToStdout) { run(stderr_to_stdout()); }

Coro<void> close_client_stream() {
    // echo3.py in shell: echo each line to stdout; once stdout is gone, say so on stderr.
    auto [transp, proto] = co_await exec(
        sh("trap '' PIPE; while read line; do echo \"OUT:$line\" || { echo ERR:BrokenPipe >&2; exit 1; }; done"));
    co_await proto->connected;
    std::shared_ptr<Transport> in = transp->get_pipe_transport(0);
    in->write("test\n");
    co_await until_stdout(*proto, 9);
    EXPECT_EQ(proto->data[1], "OUT:test\n");
    transp->get_pipe_transport(1)->close();
    co_await wait_for(proto->disconnects[1], 10.0);
    in->write("xxx\n");
    co_await wait_for(proto->completed, 10.0);  // the child says so, then exits 1
    const std::string& err = proto->data[2];
    EXPECT_TRUE(err.size() >= 15 && err.compare(err.size() - 15, 15, "ERR:BrokenPipe\n") == 0) << err;
    EXPECT_EQ(proto->returncode, std::optional<int>(1));
    transp->close();
}

TEST_F(SubprocessProtocolTest, ClosingTheChildsStdoutGivesItABrokenPipe) { run(close_client_stream()); }

Coro<std::optional<int>> new_session_exit() {
    SubprocessOptions o;
    o.start_new_session = true;
    auto factory = [] { return std::make_shared<MySubprocessProtocol>(); };
    auto [transp, proto] = co_await get_running_loop().subprocess_shell(factory, "exit 7", o);
    co_await wait_for(proto->completed, 10.0);
    transp->close();
    co_return proto->returncode;
}

TEST_F(SubprocessProtocolTest, AChildInAnotherSessionIsStillWaitedFor) {
    EXPECT_EQ(run(new_session_exit()), std::optional<int>(7));
}

TEST_F(SubprocessProtocolTest, TheFactoryMustMakeASubprocessProtocol) {
    auto main = []() -> Coro<void> {
        auto factory = [] { return std::make_shared<Protocol>(); };
        std::vector<std::string> argv{"true"};
        co_await get_running_loop().subprocess_exec(factory, argv);
    };
    EXPECT_THROW(run(main()), std::invalid_argument);
}

}  // namespace
