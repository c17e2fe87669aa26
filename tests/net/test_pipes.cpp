// tests/net/test_pipes.cpp - loop.connect_read_pipe / connect_write_pipe: the semantics of
// CPython's UnixReadPipeTransportTests and UnixWritePipeTransportTests (test_unix_events.py)
// and of test_events.py's test_read_pipe, test_write_pipe, test_write_pipe_disconnect_on_close
// and test_read_pty_output / test_write_pty, on real pipes, FIFOs, ptys and socketpairs
// instead of mocks. The far end is a raw fd the test reads or writes itself.
//
// Every test checks that the process's open-fd count is back where it started: the transport
// owns its fd and closes it after connection_lost. Test bodies are free functions (GCC 12: see
// docs/compilers.md), and protocol factories are named before the co_await.
#include <gtest/gtest.h>

#include "recording_protocol.hpp"
#include "support.hpp"

#include "backend/faults.hpp"

#include <csignal>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <pty.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

using namespace asyncio;
using asyncio_test::code_of;
using asyncio_test::fd_count_settles_to;
using asyncio_test::HandlerCapture;
using asyncio_test::open_fd_count;
using asyncio_test::pattern;
using asyncio_test::settle;
using asyncio_test::TempDir;

namespace {

// ---- a recording protocol -------------------------------------------------------------------

using Rec = asyncio_test::RecordingProtocol;
using asyncio_test::seq;
using asyncio_test::until;
using asyncio_test::until_lost;

// ---- fds ----------------------------------------------------------------------------------------

struct Pipe {
    int r = -1;
    int w = -1;
};

Pipe make_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0) throw std::system_error(errno, std::generic_category(), "pipe2");
    return {fds[0], fds[1]};
}

void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

bool fd_is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

void write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0) throw std::system_error(errno, std::generic_category(), "write");
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

/// Reads the non-blocking `fd` until `n` bytes or EOF, letting the loop run between reads.
Coro<std::string> read_raw(int fd, std::size_t n) {
    std::string out;
    char buf[16384];
    const double deadline = get_running_loop().time() + 10.0;
    while (out.size() < n && get_running_loop().time() < deadline) {
        ssize_t got = ::read(fd, buf, sizeof buf);
        if (got == 0) break;
        if (got > 0) {
            out.append(buf, static_cast<std::size_t>(got));
        } else {
            co_await sleep(0.001);
        }
    }
    co_return out;
}

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

/// A pipe of one page, so that a few KiB fill it and the transport has to buffer.
Pipe small_pipe() {
    Pipe p = make_pipe();
    ::fcntl(p.w, F_SETPIPE_SZ, 4096);
    return p;
}

/// Runs `body` and checks the open-fd count twice: while the loop still runs (so a transport
/// that never delivered connection_lost cannot hide behind the loop's close) and after.
Coro<void> with_fd_check(Coro<void> (*body)()) {
    const std::size_t before = open_fd_count();
    co_await body();
    EXPECT_EQ(co_await fd_count_settles_to(before, 2.0), before) << "an fd is still open after the test";
}

void run_test(Coro<void> (*body)()) {
    const std::size_t fds_before = open_fd_count();
    asyncio::run(with_fd_check(body));
    EXPECT_EQ(open_fd_count(), fds_before) << "an fd leaked";
}

// ---- the read side -------------------------------------------------------------------------------

Coro<void> read_data_then_eof() {
    Pipe p = make_pipe();
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    auto [tr, pr] = co_await get_running_loop().connect_read_pipe(factory, p.r);
    EXPECT_EQ(pr, proto);
    EXPECT_EQ(proto->transport, tr);
    EXPECT_TRUE(tr->is_reading());
    EXPECT_EQ(tr->get_extra_info<int>("pipe", -1), p.r);
    write_all(p.w, "1234");
    co_await until(proto->changed, [&] { return proto->data.size() == 4; });
    write_all(p.w, "5678");
    close_fd(p.w);
    co_await until_lost(*proto);
    EXPECT_EQ(proto->data, "12345678");
    EXPECT_EQ(proto->collapsed(), seq({"made", "data", "eof", "lost"}));
    EXPECT_FALSE(proto->lost_exc);
    EXPECT_TRUE(tr->is_closing());
    EXPECT_FALSE(fd_is_open(p.r)) << "the transport closes its fd";
    co_await settle();
    EXPECT_EQ(proto->lost_calls, 1);
}

TEST(ReadPipe, DeliversDataThenEofReceivedThenConnectionLostAndClosesTheFd) { run_test(read_data_then_eof); }

Coro<void> pause_and_resume() {
    Pipe p = make_pipe();
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    auto made = co_await get_running_loop().connect_read_pipe(factory, p.r);
    std::shared_ptr<Transport> tr = made.first;
    write_all(p.w, "a");
    co_await until(proto->changed, [&] { return proto->data == "a"; });
    tr->pause_reading();
    EXPECT_FALSE(tr->is_reading());
    tr->pause_reading();  // no-op when paused
    write_all(p.w, "b");
    co_await sleep(0.05);
    EXPECT_EQ(proto->data, "a") << "nothing is delivered while paused";
    tr->resume_reading();
    EXPECT_TRUE(tr->is_reading());
    co_await until(proto->changed, [&] { return proto->data == "ab"; });
    tr->close();
    EXPECT_FALSE(tr->is_reading());
    tr->resume_reading();  // no-op once closing
    EXPECT_FALSE(tr->is_reading());
    co_await until_lost(*proto);
    close_fd(p.w);
}

TEST(ReadPipe, PauseReadingStopsDeliveryUntilResumeReading) { run_test(pause_and_resume); }

Coro<void> close_while_reading() {
    Pipe p = make_pipe();
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    auto made = co_await get_running_loop().connect_read_pipe(factory, p.r);
    std::shared_ptr<Transport> tr = made.first;
    tr->close();
    EXPECT_TRUE(tr->is_closing());
    EXPECT_EQ(proto->lost_calls, 0) << "connection_lost comes later, never from inside close()";
    tr->close();  // idempotent
    write_all(p.w, "ignored");
    co_await until_lost(*proto);
    co_await settle();
    EXPECT_EQ(proto->collapsed(), seq({"made", "lost"}));
    EXPECT_FALSE(proto->lost_exc);
    EXPECT_EQ(proto->lost_calls, 1);
    EXPECT_FALSE(fd_is_open(p.r));
    close_fd(p.w);
}

TEST(ReadPipe, CloseWhileReadingDeliversConnectionLostOnceWithoutData) { run_test(close_while_reading); }

Coro<void> read_side_has_no_write_side() {
    Pipe p = make_pipe();
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    auto made = co_await get_running_loop().connect_read_pipe(factory, p.r);
    std::shared_ptr<Transport> tr = made.first;
    EXPECT_THROW(tr->write("x"), RuntimeError);
    EXPECT_THROW(tr->write_eof(), RuntimeError);
    EXPECT_THROW(tr->set_write_buffer_limits(10, 1), RuntimeError);
    EXPECT_FALSE(tr->can_write_eof());
    EXPECT_EQ(tr->get_write_buffer_size(), 0u);
    try {
        tr->write("x");
    } catch (const RuntimeError& e) {
        EXPECT_NE(std::string(e.what()).find("connect_write_pipe"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(tr->is_closing()) << "a refused write does not close the transport";
    tr->abort();  // closes, as close() does
    co_await until_lost(*proto);
    EXPECT_FALSE(proto->lost_exc);
    close_fd(p.w);
}

TEST(ReadPipe, WritingMethodsThrowRuntimeErrorNamingConnectWritePipe) { run_test(read_side_has_no_write_side); }

Coro<void> read_pty_output() {
    int master = -1, slave = -1;
    CO_ASSERT(::openpty(&master, &slave, nullptr, nullptr, nullptr) == 0);
    ::fcntl(master, F_SETFD, FD_CLOEXEC);
    termios t{};
    ::tcgetattr(slave, &t);
    ::cfmakeraw(&t);
    ::tcsetattr(slave, TCSANOW, &t);
    HandlerCapture handler;
    handler.install(get_running_loop());
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    co_await get_running_loop().connect_read_pipe(factory, master);
    write_all(slave, "1234");
    co_await until(proto->changed, [&] { return proto->data.size() == 4; });
    write_all(slave, "5678");
    co_await until(proto->changed, [&] { return proto->data.size() == 8; });
    close_fd(slave);  // the master's read fails with EIO: the end of a terminal's output
    co_await until_lost(*proto);
    EXPECT_EQ(proto->data, "12345678");
    EXPECT_EQ(code_of(proto->lost_exc), std::error_code(EIO, std::generic_category()));
    EXPECT_TRUE(handler.contexts.empty()) << "EIO is not reported to the exception handler";
    EXPECT_FALSE(fd_is_open(master));
}

TEST(ReadPipe, PtyMasterDeliversOutputAndEndsWithEioWhenTheSlaveCloses) { run_test(read_pty_output); }

Coro<void> read_fifo_and_socket() {
    TempDir dir;
    const std::string path = dir.file("fifo");
    CO_ASSERT(::mkfifo(path.c_str(), 0600) == 0);
    int r = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    int w = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    CO_ASSERT(r >= 0 && w >= 0);
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    co_await get_running_loop().connect_read_pipe(factory, r);
    write_all(w, "fifo");
    close_fd(w);
    co_await until_lost(*proto);
    EXPECT_EQ(proto->data, "fifo");
    EXPECT_EQ(proto->collapsed(), seq({"made", "data", "eof", "lost"}));

    std::pair<Socket, Socket> ends = socketpair();
    auto proto2 = std::make_shared<Rec>();
    auto factory2 = [proto2] { return proto2; };
    co_await get_running_loop().connect_read_pipe(factory2, ends.first.detach());
    write_all(ends.second.fileno(), "sock");
    ends.second.close();
    co_await until_lost(*proto2);
    EXPECT_EQ(proto2->data, "sock");
    EXPECT_EQ(proto2->collapsed(), seq({"made", "data", "eof", "lost"}));
}

TEST(ReadPipe, AcceptsFifosAndUnixStreamSockets) { run_test(read_fifo_and_socket); }

Coro<void> stream_reader_over_pipe() {
    Pipe p = make_pipe();
    StreamReader reader;
    auto protocol = std::make_shared<detail::StreamReaderProtocol>(reader);
    auto factory = [protocol] { return protocol; };
    co_await get_running_loop().connect_read_pipe(factory, p.r);
    const std::string payload = pattern(300 * 1024);
    auto writer = [](int fd, std::string data) {
        write_all(fd, data);
        ::close(fd);
    };
    std::thread t(writer, p.w, payload);  // blocking writes: more than a pipe holds
    p.w = -1;
    std::string line = co_await reader.readexactly(10);
    std::string rest = co_await reader.read();
    t.join();
    EXPECT_EQ(line + rest, payload);
    EXPECT_TRUE(reader.at_eof());
}

TEST(ReadPipe, StreamReaderReadsAPipeToEofThroughStreamReaderProtocol) { run_test(stream_reader_over_pipe); }

struct Throwing : Rec {
    void data_received(std::string_view d) override {
        Rec::data_received(d);
        throw std::runtime_error("bad data");
    }
};

Coro<void> data_received_error_is_reported() {
    Pipe p = make_pipe();
    HandlerCapture handler;
    handler.install(get_running_loop());
    auto proto = std::make_shared<Throwing>();
    auto factory = [proto] { return proto; };
    auto made = co_await get_running_loop().connect_read_pipe(factory, p.r);
    write_all(p.w, "a");
    co_await until(proto->changed, [&] { return proto->data == "a"; });
    co_await settle();
    EXPECT_EQ(handler.contexts.size(), 1u);
    EXPECT_FALSE(made.first->is_closing()) << "Python: the callback's error is reported, the pipe stays open";
    write_all(p.w, "b");
    co_await until(proto->changed, [&] { return proto->data == "ab"; });
    close_fd(p.w);
    co_await until_lost(*proto);
    EXPECT_FALSE(proto->lost_exc);
}

TEST(ReadPipe, DataReceivedErrorGoesToTheExceptionHandlerAndReadingGoesOn) {
    run_test(data_received_error_is_reported);
}

Coro<void> cancelled_connect_closes_transport() {
    Pipe p = make_pipe();
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    Task<std::pair<std::shared_ptr<Transport>, std::shared_ptr<Rec>>> connecting =
        create_task(get_running_loop().connect_read_pipe(factory, p.r));
    co_await sleep(0);  // the transport exists and waits for connection_made
    connecting.cancel();
    std::exception_ptr e = co_await asyncio_test::error_of(connecting);
    EXPECT_TRUE(asyncio_test::holds<CancelledError>(e));
    co_await until_lost(*proto);  // Python: the waiter's failure closes the transport
    EXPECT_FALSE(fd_is_open(p.r));
    close_fd(p.w);
}

TEST(ReadPipe, CancelledConnectReadPipeClosesTheTransportAndItsFd) { run_test(cancelled_connect_closes_transport); }

// ---- refused fds ---------------------------------------------------------------------------------

Coro<void> regular_file_refused() {
    TempDir dir;
    const std::string path = dir.file("regular");
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    CO_ASSERT(fd >= 0);
    int created = 0;
    auto factory = [&created] {
        ++created;
        return std::make_shared<Rec>();
    };
    EventLoop& loop = get_running_loop();
    std::string read_msg, write_msg;
    try {
        co_await loop.connect_read_pipe(factory, fd);
        ADD_FAILURE() << "connect_read_pipe took a regular file";
    } catch (const std::invalid_argument& e) {
        read_msg = e.what();
    }
    try {
        co_await loop.connect_write_pipe(factory, fd);
        ADD_FAILURE() << "connect_write_pipe took a regular file";
    } catch (const std::invalid_argument& e) {
        write_msg = e.what();
    }
    EXPECT_EQ(read_msg, "Pipe transport is for pipes/sockets only.");
    EXPECT_EQ(write_msg, "Pipe transport is only for pipes, sockets and character devices");
    EXPECT_EQ(created, 2) << "the factory is called first, as in Python";
    EXPECT_TRUE(fd_is_open(fd)) << "a refused fd stays the caller's (Python leaves the pipe open)";
    EXPECT_FALSE(::fcntl(fd, F_GETFL) & O_NONBLOCK) << "and untouched";
    ::close(fd);
}

TEST(PipeFds, RegularFileIsRefusedWithPythonsMessagesAndStaysOpenForTheCaller) { run_test(regular_file_refused); }

// ---- the write side ------------------------------------------------------------------------------

Coro<void> write_at_once() {
    Pipe p = make_pipe();
    set_nonblocking(p.r);
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    auto [tr, pr] = co_await get_running_loop().connect_write_pipe(factory, p.w);
    EXPECT_EQ(pr, proto);
    EXPECT_TRUE(tr->can_write_eof());
    EXPECT_FALSE(tr->is_reading());
    EXPECT_TRUE(::fcntl(p.w, F_GETFL) & O_NONBLOCK) << "the transport makes its fd non-blocking";
    {
        // The premise: the kernel takes the write at once (no EAGAIN or 1-byte write, which
        // ASYNCIO_FAULTS injects).
        asyncio::detail::faults::Suspended premise;
        tr->write("1234");
    }
    EXPECT_EQ(tr->get_write_buffer_size(), 0u) << "a pipe with room takes the bytes at once";
    tr->writelines({"56", "78"});
    EXPECT_EQ(co_await read_raw(p.r, 8), "12345678");
    tr->close();
    EXPECT_TRUE(tr->is_closing());
    EXPECT_EQ(proto->lost_calls, 0);
    co_await until_lost(*proto);
    EXPECT_FALSE(proto->lost_exc);
    EXPECT_EQ(co_await read_raw(p.r, 1), "") << "the reader sees EOF";
    EXPECT_FALSE(fd_is_open(p.w));
    tr->write("dropped");  // after the close: dropped silently, as in Python
    close_fd(p.r);
}

TEST(WritePipe, WritesAtOnceWhenThePipeHasRoomAndCloseEndsWithConnectionLost) { run_test(write_at_once); }

Coro<void> full_pipe_flow_control() {
    Pipe p = small_pipe();
    set_nonblocking(p.r);
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    auto made = co_await get_running_loop().connect_write_pipe(factory, p.w);
    std::shared_ptr<Transport> tr = made.first;
    tr->set_write_buffer_limits(16384, 4096);
    EXPECT_EQ(tr->get_write_buffer_limits(), std::make_pair(std::size_t{4096}, std::size_t{16384}));
    const std::string payload = pattern(200 * 1024);
    {
        // The premise: the write reaches the kernel, which takes what the pipe has room for
        // (an EAGAIN injected by ASYNCIO_FAULTS would buffer all of it).
        asyncio::detail::faults::Suspended premise;
        tr->write(payload);
    }
    const std::size_t buffered = tr->get_write_buffer_size();
    EXPECT_GT(buffered, 16384u);
    EXPECT_LT(buffered, payload.size()) << "what the pipe had room for was written at once";
    EXPECT_EQ(proto->pause_calls, 1);
    EXPECT_EQ(proto->size_at_pause, buffered);
    tr->write("!");
    EXPECT_EQ(tr->get_write_buffer_size(), buffered + 1) << "a write behind a buffer is queued in order";
    EXPECT_EQ(proto->pause_calls, 1) << "pause_writing is delivered once";
    std::string got = co_await read_raw(p.r, payload.size() + 1);
    EXPECT_EQ(got, payload + "!");
    co_await until(proto->changed, [&] { return proto->resume_calls > 0; });
    EXPECT_EQ(proto->resume_calls, 1);
    EXPECT_LE(proto->size_at_resume, 4096u);
    EXPECT_EQ(tr->get_write_buffer_size(), 0u);
    tr->close();
    co_await until_lost(*proto);
    EXPECT_FALSE(proto->lost_exc);
    close_fd(p.r);
}

TEST(WritePipe, FullPipeBuffersWithPauseWritingAboveHighAndResumeWritingAtLow) { run_test(full_pipe_flow_control); }

Coro<void> write_eof_after_drain() {
    Pipe p = small_pipe();
    set_nonblocking(p.r);
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    auto made = co_await get_running_loop().connect_write_pipe(factory, p.w);
    std::shared_ptr<Transport> tr = made.first;
    const std::string payload = pattern(64 * 1024);
    tr->write(payload);
    CO_ASSERT(tr->get_write_buffer_size() > 0);
    tr->write_eof();
    EXPECT_TRUE(tr->is_closing());
    tr->write("late");  // dropped: the writing side is closed
    co_await sleep(0.02);
    EXPECT_EQ(proto->lost_calls, 0) << "the buffer drains first";
    std::string got = co_await read_raw(p.r, payload.size() + 100);  // to EOF
    EXPECT_EQ(got, payload);
    co_await until_lost(*proto);
    EXPECT_FALSE(proto->lost_exc);
    EXPECT_FALSE(fd_is_open(p.w));
    close_fd(p.r);
}

TEST(WritePipe, WriteEofClosesOnceTheBufferDrainedAndLaterWritesAreDropped) { run_test(write_eof_after_drain); }

Coro<void> abort_drops_buffer() {
    Pipe p = small_pipe();
    set_nonblocking(p.r);
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    auto made = co_await get_running_loop().connect_write_pipe(factory, p.w);
    std::shared_ptr<Transport> tr = made.first;
    const std::string payload = pattern(64 * 1024);
    tr->write(payload);
    const std::size_t buffered = tr->get_write_buffer_size();
    CO_ASSERT(buffered > 0);
    tr->abort();
    EXPECT_TRUE(tr->is_closing());
    EXPECT_EQ(tr->get_write_buffer_size(), 0u);
    co_await until_lost(*proto);
    EXPECT_FALSE(proto->lost_exc);
    std::string got = co_await read_raw(p.r, payload.size());
    EXPECT_EQ(got.size(), payload.size() - buffered) << "only what the pipe took arrives";
    close_fd(p.r);
}

TEST(WritePipe, AbortDropsTheBufferAndClosesAtOnce) { run_test(abort_drops_buffer); }

Coro<void> reader_gone_while_idle() {
    Pipe p = make_pipe();
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    co_await get_running_loop().connect_write_pipe(factory, p.w);
    close_fd(p.r);
    co_await until_lost(*proto);  // nothing written: the write end's readiness told
    EXPECT_FALSE(proto->lost_exc) << "Python: an idle write pipe whose reader left ends without error";
    EXPECT_TRUE(proto->transport->is_closing());
    EXPECT_FALSE(fd_is_open(p.w));
}

TEST(WritePipe, ReaderGoneWhileIdleIsNoticedWithoutWritingAndEndsWithConnectionLost) {
    run_test(reader_gone_while_idle);
}

Coro<void> reader_gone_with_buffer() {
    Pipe p = small_pipe();
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    auto made = co_await get_running_loop().connect_write_pipe(factory, p.w);
    made.first->write(pattern(64 * 1024));
    CO_ASSERT(made.first->get_write_buffer_size() > 0);
    close_fd(p.r);
    co_await until_lost(*proto);
    EXPECT_EQ(code_of(proto->lost_exc), std::error_code(EPIPE, std::generic_category()));
    EXPECT_EQ(made.first->get_write_buffer_size(), 0u);
}

TEST(WritePipe, ReaderGoneWithBufferedDataEndsWithEpipe) { run_test(reader_gone_with_buffer); }

/// SIGPIPE at its default disposition (which would kill the process) for the test's length.
struct DefaultSigpipe {
    struct sigaction old {};
    DefaultSigpipe() {
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        ::sigaction(SIGPIPE, &dfl, &old);
    }
    ~DefaultSigpipe() { ::sigaction(SIGPIPE, &old, nullptr); }
};

Coro<void> write_after_reader_gone() {
    DefaultSigpipe dfl;
    Pipe p = make_pipe();
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    auto made = co_await get_running_loop().connect_write_pipe(factory, p.w);
    close_fd(p.r);
    made.first->write("x");  // before the loop can notice: write(2) itself fails with EPIPE
    co_await until_lost(*proto);
    EXPECT_EQ(code_of(proto->lost_exc), std::error_code(EPIPE, std::generic_category()));
    sigset_t pending;
    ::sigpending(&pending);
    EXPECT_FALSE(sigismember(&pending, SIGPIPE)) << "the SIGPIPE the write raised was consumed";
    struct sigaction now {};
    ::sigaction(SIGPIPE, nullptr, &now);
    EXPECT_EQ(now.sa_handler, SIG_DFL) << "the disposition is left alone";
    sigset_t mask;
    ::pthread_sigmask(SIG_SETMASK, nullptr, &mask);
    EXPECT_FALSE(sigismember(&mask, SIGPIPE)) << "the signal mask is restored";
}

TEST(WritePipe, WriteAfterTheReaderLeftFailsWithEpipeAndNeverRaisesSigpipe) { run_test(write_after_reader_gone); }

Coro<void> pending_sigpipe_is_left_alone() {
    // The program blocks SIGPIPE and has one pending: the transport's EPIPE must not eat it.
    sigset_t sigpipe, old_mask;
    sigemptyset(&sigpipe);
    sigaddset(&sigpipe, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &sigpipe, &old_mask);
    ::raise(SIGPIPE);
    Pipe p = make_pipe();
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    auto made = co_await get_running_loop().connect_write_pipe(factory, p.w);
    close_fd(p.r);
    made.first->write("x");
    co_await until_lost(*proto);
    EXPECT_EQ(code_of(proto->lost_exc), std::error_code(EPIPE, std::generic_category()));
    sigset_t pending;
    ::sigpending(&pending);
    EXPECT_TRUE(sigismember(&pending, SIGPIPE)) << "the program's own pending SIGPIPE is still there";
    sigset_t mask;
    ::pthread_sigmask(SIG_SETMASK, nullptr, &mask);
    EXPECT_TRUE(sigismember(&mask, SIGPIPE)) << "and its mask is as it was";
    const timespec zero{};
    ::sigtimedwait(&sigpipe, nullptr, &zero);
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
}

TEST(WritePipe, SigpipeThatWasAlreadyPendingIsNotConsumed) { run_test(pending_sigpipe_is_left_alone); }

Coro<void> stream_writer_over_pipe() {
    Pipe p = small_pipe();
    set_nonblocking(p.r);
    StreamReader unused;
    auto protocol = std::make_shared<detail::StreamReaderProtocol>(unused);
    auto factory = [protocol] { return protocol; };
    auto made = co_await get_running_loop().connect_write_pipe(factory, p.w);
    StreamWriter writer(made.first, protocol, std::nullopt);
    const std::string payload = pattern(256 * 1024);
    Task<std::string> got = create_task(read_raw(p.r, payload.size() + 1));
    writer.write(payload);
    co_await writer.drain();  // waits for the pipe's reader: the buffer is far above 64 KiB
    EXPECT_LE(made.first->get_write_buffer_size(), 16u * 1024);
    writer.close();
    co_await writer.wait_closed();
    EXPECT_EQ(co_await got, payload);
    close_fd(p.r);
}

TEST(WritePipe, StreamWriterWritesAndDrainsThroughStreamReaderProtocol) { run_test(stream_writer_over_pipe); }

Coro<void> stream_writer_reader_gone() {
    DefaultSigpipe dfl;
    Pipe p = small_pipe();
    StreamReader reader;
    auto protocol = std::make_shared<detail::StreamReaderProtocol>(reader);
    auto factory = [protocol] { return protocol; };
    auto made = co_await get_running_loop().connect_write_pipe(factory, p.w);
    StreamWriter writer(made.first, protocol, reader);
    writer.write(pattern(256 * 1024));
    close_fd(p.r);
    std::exception_ptr e = co_await asyncio_test::error_of(writer.drain());
    EXPECT_EQ(code_of(e), std::error_code(EPIPE, std::generic_category())) << asyncio_test::message_of(e);
    writer.write("more");  // dropped: the pipe is gone
    writer.close();
}

TEST(WritePipe, StreamWriterDrainRaisesEpipeWhenTheReaderLeaves) { run_test(stream_writer_reader_gone); }

Coro<void> socket_write_after_peer_shut_reading() {
    DefaultSigpipe dfl;
    // The peer shuts its reading side down: a send fails with EPIPE (MSG_NOSIGNAL: no signal).
    std::pair<Socket, Socket> ends = socketpair();
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    auto made = co_await get_running_loop().connect_write_pipe(factory, ends.first.detach());
    ends.second.shutdown(SHUT_RD);
    made.first->write("x");
    co_await until_lost(*proto);
    EXPECT_EQ(code_of(proto->lost_exc), std::error_code(EPIPE, std::generic_category()));
}

TEST(WritePipe, UnixSocketWriteAfterPeerShutReadingFailsWithEpipeWithoutSigpipe) {
    run_test(socket_write_after_peer_shut_reading);
}

Coro<void> socket_reader_gone_while_idle() {
    std::pair<Socket, Socket> ends = socketpair();
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    co_await get_running_loop().connect_write_pipe(factory, ends.first.detach());
    ends.second.close();
    co_await until_lost(*proto);
    EXPECT_FALSE(proto->lost_exc);
}

TEST(WritePipe, UnixSocketPeerClosingIsNoticedWhileIdle) { run_test(socket_reader_gone_while_idle); }

Coro<void> write_pty() {
    int master = -1, slave = -1;
    CO_ASSERT(::openpty(&master, &slave, nullptr, nullptr, nullptr) == 0);
    ::fcntl(slave, F_SETFD, FD_CLOEXEC);
    termios t{};
    ::tcgetattr(slave, &t);
    ::cfmakeraw(&t);
    ::tcsetattr(slave, TCSANOW, &t);
    set_nonblocking(slave);
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    auto made = co_await get_running_loop().connect_write_pipe(factory, master);
    made.first->write("1234");
    EXPECT_EQ(co_await read_raw(slave, 4), "1234");
    made.first->close();
    co_await until_lost(*proto);
    EXPECT_FALSE(proto->lost_exc);
    EXPECT_FALSE(fd_is_open(master));
    close_fd(slave);
}

TEST(WritePipe, PtyMasterIsAcceptedAndWritten) { run_test(write_pty); }

Coro<void> write_side_has_no_read_side() {
    Pipe p = make_pipe();
    auto proto = std::make_shared<Rec>();
    auto factory = [proto] { return proto; };
    auto made = co_await get_running_loop().connect_write_pipe(factory, p.w);
    EXPECT_THROW(made.first->pause_reading(), RuntimeError);
    EXPECT_THROW(made.first->resume_reading(), RuntimeError);
    EXPECT_FALSE(made.first->is_reading());
    EXPECT_FALSE(made.first->is_closing());
    made.first->close();
    co_await until_lost(*proto);
    close_fd(p.r);
}

TEST(WritePipe, ReadingMethodsThrowRuntimeError) { run_test(write_side_has_no_read_side); }

}  // namespace
