// tests/net/test_streams.cpp - StreamReader / StreamWriter / open_connection / start_server.
//
// The semantic scenarios of CPython's Lib/test/test_asyncio/test_streams.py (3.13, with the
// multi-separator readuntil), in three parts:
//  * StreamReader alone: fed by hand with feed_data/feed_eof/set_exception (Python's tests
//    peek at stream._buffer; here the buffer is read back with buffered() and read());
//  * StreamReader flow control against a fake transport that counts pause/resume calls;
//  * real connections over loopback (TCP and Unix sockets): round trips, the client
//    callback, drain() back-pressure, wait_closed, half-close, extra info, the reader pausing
//    the transport, EOF and RST from the peer, cancellation in the middle of read/drain.
//
// Network tests run on the real clock; every wait that a bug could turn into a hang is
// bounded by wait_for(..., 10 s). The server side of a connection is handed to the test by a
// client_connected_cb that puts its (reader, writer) into a Queue and returns (Python does
// not close the connection when the callback returns normally).
//
// Lifetime rule: a coroutine given to create_task() or start_server() is a free function or a
// member of an object that outlives the task, never a capturing lambda temporary.
#include "support.hpp"

#include <gtest/gtest.h>

#include <any>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace asyncio;
using asyncio_test::echo_until_eof;
using asyncio_test::error_of;
using asyncio_test::HandlerCapture;
using asyncio_test::holds;
using asyncio_test::message_of;
using asyncio_test::now;
using asyncio_test::pattern;
using asyncio_test::run_virtual;
using asyncio_test::settle;
using asyncio_test::TempDir;

namespace {

const std::string DATA = "line1\nline2\nline3\n";

/// An error type of our own, so a test can tell "the exception we set" from any other.
struct TestError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A copy of the exception of type E held by `e` (nullopt if it holds something else).
template <class E>
std::optional<E> as(const std::exception_ptr& e) {
    if (!e) return std::nullopt;
    try {
        std::rethrow_exception(e);
    } catch (const E& x) {
        return x;
    } catch (...) {
        return std::nullopt;
    }
}

bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

/// The errno of a std::system_error held by `e` (0 for anything else).
int errno_of(const std::exception_ptr& e) {
    auto x = as<std::system_error>(e);
    return x ? x->code().value() : 0;
}

/// Whatever is buffered in `r`, read out without waiting (Python's bytes(stream._buffer)).
Coro<std::string> buffered_bytes(StreamReader& r) {
    co_return co_await r.read(static_cast<std::ptrdiff_t>(r.buffered()));
}

/// Yields to the loop until `pred` holds (each turn runs one loop iteration, which also polls
/// the sockets). Callers bound it with wait_for.
Coro<void> until(std::function<bool()> pred) {
    while (!pred()) co_await sleep(0);
}

// ---- a fake transport for StreamReader flow control -----------------------------------------
struct FakeTransport final : Transport {
    int pauses = 0;
    int resumes = 0;
    bool reading = true;
    bool can_pause = true;  // false: pause_reading() throws (Python's NotImplementedError)

    void close() override {}
    bool is_closing() const noexcept override { return false; }
    std::any get_extra_info(std::string_view) const override { return {}; }
    void set_protocol(std::shared_ptr<BaseProtocol>) override {}
    std::shared_ptr<BaseProtocol> get_protocol() const override { return nullptr; }
    bool is_reading() const noexcept override { return reading; }
    void pause_reading() override {
        ++pauses;
        if (!can_pause) throw std::logic_error("pause_reading is not implemented");
        reading = false;
    }
    void resume_reading() override {
        ++resumes;
        reading = true;
    }
    void write(std::string_view) override {}
    void write_eof() override {}
    bool can_write_eof() const noexcept override { return false; }
    void abort() override {}
    void set_write_buffer_limits(std::optional<std::size_t>, std::optional<std::size_t>) override {}
    std::pair<std::size_t, std::size_t> get_write_buffer_limits() const noexcept override { return {0, 0}; }
    std::size_t get_write_buffer_size() const noexcept override { return 0; }
};

// ---- loopback connections -------------------------------------------------------------------
using Accepted = Queue<std::pair<StreamReader, StreamWriter>>;

Coro<void> stash(std::shared_ptr<Accepted> q, StreamReader r, StreamWriter w) {
    q->put_nowait(std::pair<StreamReader, StreamWriter>(std::move(r), std::move(w)));
    co_return;
}

/// A client_connected_cb that hands each connection's streams to `q` and returns.
ClientConnectedCallback stash_into(std::shared_ptr<Accepted> q) {
    return [q](StreamReader r, StreamWriter w) { return stash(q, std::move(r), std::move(w)); };
}

/// Reads one line, sends it back, closes (the handler of CPython's test_start_server).
Coro<void> echo_line(StreamReader r, StreamWriter w) {
    std::string line = co_await r.readline();
    w.write(line);
    co_await w.drain();
    w.close();
    co_await w.wait_closed();
}

/// Answers one request like CPython's test HTTP server, then closes.
Coro<void> http_like(StreamReader r, StreamWriter w) {
    co_await r.readuntil("\r\n\r\n");
    w.write("HTTP/1.0 200 OK\r\n");
    w.write("Content-type: text/plain\r\n\r\nTest message");
    co_await w.drain();
    w.close();
    co_await w.wait_closed();
}

/// One client connection to a fresh server, with both ends' streams.
struct Loopback {
    Server server;
    std::shared_ptr<Accepted> accepted;
    StreamReader cr;  // client side
    StreamWriter cw;
    StreamReader sr;  // server side
    StreamWriter sw;
};

Coro<Loopback> loopback(std::size_t client_limit = default_stream_limit,
                        std::size_t server_limit = default_stream_limit) {
    Loopback c;
    c.accepted = std::make_shared<Accepted>();
    c.server = co_await start_server(stash_into(c.accepted), "127.0.0.1", 0, {}, server_limit);
    const int port = c.server.sockets().at(0).getsockname().port();
    auto client = co_await open_connection("127.0.0.1", port, {}, client_limit);
    c.cr = client.first;
    c.cw = client.second;
    auto server_side = co_await wait_for(c.accepted->get(), 10.0);
    c.sr = server_side.first;
    c.sw = server_side.second;
    co_return c;
}

/// Closes both ends and the server, tolerating connections already lost with an error.
Coro<void> teardown(Loopback& c) {
    c.cw.close();
    c.sw.close();
    co_await error_of(wait_for(c.cw.wait_closed(), 10.0));
    co_await error_of(wait_for(c.sw.wait_closed(), 10.0));
    c.server.close();
    co_await wait_for(c.server.wait_closed(), 10.0);
}

/// Makes the next close() of `w`'s socket send an RST (SO_LINGER {1, 0}).
void reset_on_close(const StreamWriter& w) {
    auto sock = std::any_cast<TransportSocket>(w.get_extra_info("socket"));
    linger l{};
    l.l_onoff = 1;
    l.l_linger = 0;
    ASSERT_EQ(::setsockopt(sock.fileno(), SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
}

void set_buffer(const StreamWriter& w, int option, int bytes) {
    std::any_cast<TransportSocket>(w.get_extra_info("socket")).setsockopt(SOL_SOCKET, option, bytes);
}

}  // namespace

// =============================================================================================
// StreamReader alone
// =============================================================================================

TEST(StreamReader, FeedEmptyDataLeavesTheBufferEmpty) {
    StreamReader r;
    r.feed_data("");
    EXPECT_EQ(r.buffered(), 0u);
    EXPECT_FALSE(r.at_eof());
}

TEST(StreamReader, FeedDataBuffersTheBytes) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data(DATA);
        EXPECT_EQ(r.buffered(), DATA.size());
        std::string b = co_await buffered_bytes(r);
        EXPECT_EQ(b, DATA);
    };
    run(main());
}

TEST(StreamReader, DefaultLimitIs64KiB) {
    StreamReader r;
    EXPECT_EQ(r.limit(), 64u * 1024u);
    EXPECT_EQ(StreamReader(123).limit(), 123u);
}

TEST(StreamReader, ZeroLimitIsRejectedWithValueError) {
    try {
        StreamReader r(0);
        ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& e) {
        EXPECT_TRUE(contains(e.what(), "imit")) << e.what();
    }
}

TEST(StreamReader, ReadZeroReturnsEmptyAndKeepsTheBuffer) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data(DATA);
        std::string d = co_await r.read(0);
        EXPECT_EQ(d, "");
        EXPECT_EQ(r.buffered(), DATA.size());
    };
    run(main());
}

TEST(StreamReader, ReadZeroDoesNotWaitOnAnEmptyBuffer) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        std::string d = co_await wait_for(r.read(0), 10.0);
        EXPECT_EQ(d, "");
    };
    run(main());
}

TEST(StreamReader, ReadWaitsForDataFedLater) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> t = create_task(r.read(30));
        get_running_loop().call_soon([&r] { r.feed_data(DATA); });
        std::string d = co_await t;
        EXPECT_EQ(d, DATA);
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, ReadReturnsAtMostNBytesAndKeepsTheRest) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("line1");
        r.feed_data("line2");
        std::string d = co_await r.read(5);
        EXPECT_EQ(d, "line1");
        std::string rest = co_await buffered_bytes(r);
        EXPECT_EQ(rest, "line2");
    };
    run(main());
}

TEST(StreamReader, ReadReturnsWhatIsBufferedWithoutWaitingForN) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("abc");
        std::string d = co_await wait_for(r.read(100), 10.0);
        EXPECT_EQ(d, "abc");
    };
    run(main());
}

// Reads of every size against a buffer that is refilled between them - drained, left with a
// remainder, grown past the 64 KiB read size - return exactly the fed bytes, in order.
TEST(StreamReader, LargeAndSmallReadsReturnTheFedBytesInOrder) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        const std::string all = pattern(1 << 20);
        const std::size_t feeds[] = {10000, 9000, 20000, 100, 70000, 4096, 150000, 5000, 1, 65536, 131072};
        const std::ptrdiff_t reads[] = {65536, 6000, 100, 65536, 5000, 4096, 3, 65536, 8192, 40000, 1};
        std::size_t fed = 0;
        std::size_t next_read = 0;
        std::string got;
        for (std::size_t step = 0; fed < all.size(); ++step) {
            const std::size_t n = std::min(feeds[step % std::size(feeds)], all.size() - fed);
            r.feed_data(std::string_view(all).substr(fed, n));
            fed += n;
            // A few reads per feed, never waiting: sometimes the buffer is drained, sometimes
            // data is left behind for the next feed to land after.
            for (int k = 0; k < 2 && r.buffered() > 0; ++k) {
                const std::ptrdiff_t want = reads[next_read % std::size(reads)];
                ++next_read;
                std::string d = co_await r.read(want);
                EXPECT_FALSE(d.empty());
                got += d;
            }
        }
        while (r.buffered() > 0) got += co_await r.read(65536);
        EXPECT_EQ(got.size(), all.size());
        EXPECT_TRUE(got == all) << "the bytes read differ from the bytes fed";
    };
    run(main());
}

TEST(StreamReader, ReadOfTheWholeLargeBufferThenMoreDataKeepsBothIntact) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        const std::string a = pattern(10000);
        r.feed_data(a);
        std::string first = co_await r.read(65536);
        EXPECT_EQ(first, a);
        EXPECT_EQ(r.buffered(), 0u);
        r.feed_data("tail");
        EXPECT_EQ(co_await r.read(65536), "tail");
        EXPECT_EQ(first, a);  // the earlier result does not share the buffer
    };
    run(main());
}

TEST(StreamReader, ReadTakingMostOfTheBufferLeavesTheRemainderForTheNextRead) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        const std::string a = pattern(100 * 1024);
        r.feed_data(a);
        std::string first = co_await r.read(65536);
        EXPECT_EQ(first, a.substr(0, 65536));
        EXPECT_EQ(r.buffered(), a.size() - 65536);
        std::string second = co_await r.read(65536);
        EXPECT_EQ(second, a.substr(65536));
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, ReadReturnsEmptyWhenEofArrivesWhileWaiting) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> t = create_task(r.read(1024));
        get_running_loop().call_soon([&r] { r.feed_eof(); });
        std::string d = co_await t;
        EXPECT_EQ(d, "");
        EXPECT_TRUE(r.at_eof());
    };
    run(main());
}

TEST(StreamReader, ReadAtEofKeepsReturningEmpty) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("x");
        r.feed_eof();
        std::string a = co_await r.read(10);
        std::string b = co_await r.read(10);
        std::string c = co_await r.read(-1);
        EXPECT_EQ(a, "x");
        EXPECT_EQ(b, "");
        EXPECT_EQ(c, "");
    };
    run(main());
}

TEST(StreamReader, ReadAllReturnsEverythingUntilEof) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> t = create_task(r.read(-1));
        get_running_loop().call_soon([&r] {
            r.feed_data("chunk1\n");
            r.feed_data("chunk2");
            r.feed_eof();
        });
        std::string d = co_await t;
        EXPECT_EQ(d, "chunk1\nchunk2");
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, ReadAllWaitsAcrossSeveralFeeds) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> t = create_task(r.read(-1));
        for (const char* piece : {"one ", "two ", "three"}) {
            co_await sleep(0);
            EXPECT_FALSE(t.done());
            r.feed_data(piece);
        }
        co_await sleep(0);
        EXPECT_FALSE(t.done());  // no EOF yet
        r.feed_eof();
        std::string d = co_await t;
        EXPECT_EQ(d, "one two three");
    };
    run(main());
}

TEST(StreamReader, ReadAllReturnsDataLongerThanTheLimit) {
    auto main = []() -> Coro<void> {
        StreamReader r(3);
        const std::string big = pattern(1000);
        r.feed_data(big);
        r.feed_eof();
        std::string d = co_await r.read(-1);
        EXPECT_EQ(d, big);
    };
    run(main());
}

TEST(StreamReader, ReadAllCollectsTensOfMebibytesFedInUnevenPieces) {
    // Past 8 MiB what read(-1) collects is pre-faulted ahead of the copies (growing the block
    // and then in steps): every byte must still land in its place.
    auto main = []() -> Coro<void> {
        StreamReader r;
        const std::string big = pattern(40 << 20);
        Task<std::string> t = create_task(r.read(-1));
        std::size_t at = 0, step = 1;
        while (at < big.size()) {
            const std::size_t n = std::min(big.size() - at, (step * 7919) % (700 * 1024) + 1);
            r.feed_data(std::string_view(big).substr(at, n));
            at += n;
            ++step;
            if (step % 3 == 0) co_await sleep(0);  // sometimes several pieces per wake-up
        }
        r.feed_eof();
        std::string d = co_await t;
        EXPECT_EQ(d.size(), big.size());
        EXPECT_TRUE(d == big);
    };
    run(main());
}

TEST(StreamReader, ReadIsNotCappedByTheLimit) {
    auto main = []() -> Coro<void> {
        StreamReader r(3);
        r.feed_data("chunk");
        std::string d = co_await r.read(5);
        EXPECT_EQ(d, "chunk");
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, ReadRaisesTheSetExceptionEvenWithBufferedData) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("line\n");
        std::string d = co_await r.read(2);
        EXPECT_EQ(d, "li");
        r.set_exception(std::make_exception_ptr(TestError("boom")));
        auto e = co_await error_of(r.read(2));
        EXPECT_TRUE(holds<TestError>(e)) << message_of(e);
    };
    run(main());
}

TEST(StreamReader, ReadAllRaisesTheSetException) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> t = create_task(r.read(-1));
        co_await sleep(0);
        r.feed_data("partial");
        co_await sleep(0);
        r.set_exception(std::make_exception_ptr(TestError("boom")));
        auto e = co_await error_of(t);
        EXPECT_TRUE(holds<TestError>(e)) << message_of(e);
    };
    run(main());
}

// Found by fuzz/stream_reader_fuzzer.cpp: EOF wakes the waiting read(-1), and an exception is
// set before the reader runs. Python's read(-1) returns what it has (its read(limit) returns
// b'' at EOF before it looks at the exception again); we used to raise the exception.
TEST(StreamReader, ReadAllReturnsTheDataWhenEofWakesItBeforeAnExceptionIsSet) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> t = create_task(r.read(-1));
        co_await sleep(0);
        r.feed_data("partial");
        co_await sleep(0);
        EXPECT_FALSE(t.done());
        r.feed_eof();
        r.set_exception(std::make_exception_ptr(TestError("boom")));
        std::string d = co_await t;
        EXPECT_EQ(d, "partial");
        // The next read raises it.
        auto e = co_await error_of(r.read(-1));
        EXPECT_TRUE(holds<TestError>(e)) << message_of(e);
    };
    run(main());
}

// Found by fuzz/stream_reader_fuzzer.cpp: data wakes the waiting read(-1), and an exception is
// set before the reader runs. Python's read(-1) reads limit-sized blocks and looks at the
// exception before each: it takes one block, then raises, and the rest stays buffered. We used
// to take the whole buffer before raising.
TEST(StreamReader, ReadAllLeavesAllButOneBlockBufferedWhenAnExceptionFollowsTheData) {
    auto main = []() -> Coro<void> {
        StreamReader r(2);
        Task<std::string> t = create_task(r.read(-1));
        co_await sleep(0);
        r.feed_data("abcdefgh");
        r.set_exception(std::make_exception_ptr(TestError("boom")));
        auto e = co_await error_of(t);
        EXPECT_TRUE(holds<TestError>(e)) << message_of(e);
        EXPECT_EQ(r.buffered(), 6u);
    };
    run(main());
}

// ---- readline ---------------------------------------------------------------------------------

TEST(StreamReader, ReadlineWaitsForTheNewline) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("chunk1 ");
        Task<std::string> t = create_task(r.readline());
        get_running_loop().call_soon([&r] {
            r.feed_data("chunk2 ");
            r.feed_data("chunk3 ");
            r.feed_data("\n chunk4");
        });
        std::string line = co_await t;
        EXPECT_EQ(line, "chunk1 chunk2 chunk3 \n");
        std::string rest = co_await buffered_bytes(r);
        EXPECT_EQ(rest, " chunk4");
    };
    run(main());
}

TEST(StreamReader, ReadlineReturnsTheFirstBufferedLine) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data(DATA.substr(0, 6));
        r.feed_data(DATA.substr(6));
        std::string line = co_await r.readline();
        EXPECT_EQ(line, "line1\n");
        std::string rest = co_await buffered_bytes(r);
        EXPECT_EQ(rest, "line2\nline3\n");
    };
    run(main());
}

TEST(StreamReader, ReadlineAtEofReturnsThePartialLastLine) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("some data");
        r.feed_eof();
        std::string line = co_await r.readline();
        EXPECT_EQ(line, "some data");
        EXPECT_TRUE(r.at_eof());
    };
    run(main());
}

TEST(StreamReader, ReadlineAtEofWithEmptyBufferReturnsEmpty) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_eof();
        std::string line = co_await r.readline();
        EXPECT_EQ(line, "");
    };
    run(main());
}

TEST(StreamReader, ReadlineReturnsPartialLineWhenEofArrivesWhileWaiting) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> t = create_task(r.readline());
        co_await sleep(0);
        r.feed_data("no newline");
        co_await sleep(0);
        EXPECT_FALSE(t.done());
        r.feed_eof();
        std::string line = co_await t;
        EXPECT_EQ(line, "no newline");
    };
    run(main());
}

TEST(StreamReader, ReadAfterReadlineContinuesWhereItStopped) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data(DATA);
        co_await r.readline();
        std::string d = co_await r.read(7);
        EXPECT_EQ(d, "line2\nl");
        std::string rest = co_await buffered_bytes(r);
        EXPECT_EQ(rest, "ine3\n");
    };
    run(main());
}

TEST(StreamReader, ReadlineOverLimitWithBufferedDataDropsTheLineAndKeepsTheNext) {
    auto main = []() -> Coro<void> {
        StreamReader r(3);
        r.feed_data("li");
        r.feed_data("ne1\nline2\n");
        auto e = co_await error_of(r.readline());
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        std::string rest = co_await buffered_bytes(r);
        EXPECT_EQ(rest, "line2\n");
    };
    run(main());
}

TEST(StreamReader, ReadlineOverLimitWithoutNewlineDropsEverythingBuffered) {
    auto main = []() -> Coro<void> {
        StreamReader r(3);
        r.feed_data("li");
        r.feed_data("ne1");
        r.feed_data("li");
        auto e = co_await error_of(r.readline());
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        EXPECT_TRUE(contains(message_of(e), "Separator is not found, and chunk exceed the limit")) << message_of(e);
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, ReadlineOverLimitArrivingLaterDropsTheOnlyLine) {
    auto main = []() -> Coro<void> {
        StreamReader r(7);
        get_running_loop().call_soon([&r] {
            r.feed_data("chunk1");
            r.feed_data("chunk2");
            r.feed_data("chunk3\n");
            r.feed_eof();
        });
        auto e = co_await error_of(r.readline());
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        EXPECT_TRUE(contains(message_of(e), "Separator is found, but chunk is longer than limit")) << message_of(e);
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, ReadlineOverLimitArrivingLaterKeepsTheFollowingLine) {
    auto main = []() -> Coro<void> {
        StreamReader r(7);
        get_running_loop().call_soon([&r] {
            r.feed_data("chunk1");
            r.feed_data("chunk2\n");
            r.feed_data("chunk3\n");
            r.feed_eof();
        });
        auto e = co_await error_of(r.readline());
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        std::string rest = co_await buffered_bytes(r);
        EXPECT_EQ(rest, "chunk3\n");
        std::string next = co_await r.readline();
        EXPECT_EQ(next, "");  // the rest was read out above; EOF
    };
    run(main());
}

TEST(StreamReader, ReadlineAcceptsALineExactlyAsLongAsTheLimit) {
    auto main = []() -> Coro<void> {
        StreamReader r(7);
        r.feed_data("1234567\n");
        std::string line = co_await r.readline();
        EXPECT_EQ(line, "1234567\n");
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, ReadlineRejectsALineOneByteOverTheLimitAndDropsIt) {
    auto main = []() -> Coro<void> {
        StreamReader r(7);
        r.feed_data("12345678\n");
        auto e = co_await error_of(r.readline());
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        EXPECT_EQ(r.buffered(), 0u);

        r.feed_data("12345678");
        e = co_await error_of(r.readline());
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, ReaderIsUsableAfterReadlineOverLimit) {
    auto main = []() -> Coro<void> {
        StreamReader r(4);
        r.feed_data("too long line\nok\n");
        auto e = co_await error_of(r.readline());
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        std::string line = co_await r.readline();
        EXPECT_EQ(line, "ok\n");
    };
    run(main());
}

TEST(StreamReader, ReadlineRaisesTheSetException) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("line\n");
        std::string line = co_await r.readline();
        EXPECT_EQ(line, "line\n");
        r.set_exception(std::make_exception_ptr(TestError("boom")));
        auto e = co_await error_of(r.readline());
        EXPECT_TRUE(holds<TestError>(e)) << message_of(e);
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, AtEofOnlyOnceEofWasFedAndTheBufferIsEmpty) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        EXPECT_FALSE(r.at_eof());
        r.feed_data("some data\n");
        EXPECT_FALSE(r.at_eof());
        co_await r.readline();
        EXPECT_FALSE(r.at_eof());
        r.feed_data("some data\n");
        r.feed_eof();
        EXPECT_FALSE(r.at_eof());  // EOF fed but data still buffered
        co_await r.readline();
        EXPECT_TRUE(r.at_eof());
    };
    run(main());
}

// ---- readuntil --------------------------------------------------------------------------------

TEST(StreamReader, ReaduntilRejectsAnEmptySeparator) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        auto e = co_await error_of(r.readuntil(""));
        EXPECT_TRUE(holds<std::invalid_argument>(e));
        EXPECT_TRUE(contains(message_of(e), "Separator should be")) << message_of(e);
    };
    run(main());
}

TEST(StreamReader, ReaduntilRejectsAnEmptySeparatorList) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        std::vector<std::string> none;
        auto e = co_await error_of(r.readuntil(none));
        EXPECT_TRUE(holds<std::invalid_argument>(e));
        EXPECT_TRUE(contains(message_of(e), "Separator should contain at least one element")) << message_of(e);
    };
    run(main());
}

TEST(StreamReader, ReaduntilRejectsAListWithAnEmptySeparator) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("abc");
        auto seps = asyncio_test::list_of<std::string>("b", "");
        auto e = co_await error_of(r.readuntil(seps));
        EXPECT_TRUE(holds<std::invalid_argument>(e));
        EXPECT_TRUE(contains(message_of(e), "Separator should be at least one-byte string")) << message_of(e);
        EXPECT_EQ(r.buffered(), 3u);
    };
    run(main());
}

TEST(StreamReader, ReaduntilDefaultSeparatorIsNewline) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("a\nb\n");
        std::string d = co_await r.readuntil();
        EXPECT_EQ(d, "a\n");
    };
    run(main());
}

TEST(StreamReader, ReaduntilReturnsDataThroughAMultiByteSeparator) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("lineAAA");
        std::string d = co_await r.readuntil("AAA");
        EXPECT_EQ(d, "lineAAA");
        EXPECT_EQ(r.buffered(), 0u);

        r.feed_data("lineAAAxxx");
        d = co_await r.readuntil("AAA");
        EXPECT_EQ(d, "lineAAA");
        std::string rest = co_await buffered_bytes(r);
        EXPECT_EQ(rest, "xxx");
    };
    run(main());
}

TEST(StreamReader, ReaduntilFindsASeparatorSplitAcrossFeeds) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("QWEaa");
        r.feed_data("XYaa");
        r.feed_data("a");
        std::string d = co_await r.readuntil("aaa");
        EXPECT_EQ(d, "QWEaaXYaaa");
        EXPECT_EQ(r.buffered(), 0u);

        r.feed_data("QWEaa");
        r.feed_data("XYa");
        r.feed_data("aa");
        d = co_await r.readuntil("aaa");
        EXPECT_EQ(d, "QWEaaXYaaa");
        EXPECT_EQ(r.buffered(), 0u);

        r.feed_data("aaa");
        d = co_await r.readuntil("aaa");
        EXPECT_EQ(d, "aaa");

        r.feed_data("Xaaa");
        d = co_await r.readuntil("aaa");
        EXPECT_EQ(d, "Xaaa");

        r.feed_data("XXX");
        r.feed_data("a");
        r.feed_data("a");
        r.feed_data("a");
        d = co_await r.readuntil("aaa");
        EXPECT_EQ(d, "XXXaaa");
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, ReaduntilWaitsForASeparatorArrivingInPieces) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> t = create_task(r.readuntil("aaa"));
        for (const char* piece : {"QWEaa", "XYa", "a"}) {
            co_await sleep(0);
            EXPECT_FALSE(t.done()) << piece;
            r.feed_data(piece);
        }
        co_await sleep(0);
        EXPECT_FALSE(t.done());
        r.feed_data("aMORE");
        std::string d = co_await t;
        EXPECT_EQ(d, "QWEaaXYaaa");
        std::string rest = co_await buffered_bytes(r);
        EXPECT_EQ(rest, "MORE");
    };
    run(main());
}

TEST(StreamReader, ReaduntilAtEofRaisesIncompleteReadErrorWithTheData) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("some dataAA");
        r.feed_eof();
        auto e = co_await error_of(r.readuntil("AAA"));
        auto x = as<IncompleteReadError>(e);
        CO_ASSERT(x.has_value());
        EXPECT_EQ(x->partial, "some dataAA");
        EXPECT_EQ(x->expected, -1);  // Python's None
        EXPECT_TRUE(contains(x->what(), "undefined expected bytes")) << x->what();
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, ReaduntilLimitOverrunWhenSeparatorNotFoundKeepsTheData) {
    auto main = []() -> Coro<void> {
        StreamReader r(3);
        r.feed_data("some dataAA");
        auto e = co_await error_of(r.readuntil("AAA"));
        auto x = as<LimitOverrunError>(e);
        CO_ASSERT(x.has_value());
        EXPECT_TRUE(contains(x->what(), "not found")) << x->what();
        EXPECT_EQ(x->consumed, 9u);  // 11 buffered bytes, minus what could start the separator
        EXPECT_EQ(r.buffered(), 11u);
    };
    run(main());
}

TEST(StreamReader, ReaduntilLimitOverrunWhenSeparatorFoundBeyondTheLimitKeepsTheData) {
    auto main = []() -> Coro<void> {
        StreamReader r(3);
        r.feed_data("some dataAA");
        co_await error_of(r.readuntil("AAA"));
        r.feed_data("A");
        auto e = co_await error_of(r.readuntil("AAA"));
        auto x = as<LimitOverrunError>(e);
        CO_ASSERT(x.has_value());
        EXPECT_TRUE(contains(x->what(), "is found")) << x->what();
        EXPECT_EQ(x->consumed, 9u);  // where the separator starts
        std::string rest = co_await buffered_bytes(r);
        EXPECT_EQ(rest, "some dataAAA");
    };
    run(main());
}

TEST(StreamReader, ReaduntilAcceptsDataUpToTheLimitBeforeTheSeparator) {
    auto main = []() -> Coro<void> {
        StreamReader r(4);
        r.feed_data("abcdXY");
        std::string d = co_await r.readuntil("XY");
        EXPECT_EQ(d, "abcdXY");
    };
    run(main());
}

TEST(StreamReader, ReaduntilRaisesTheSetException) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("a\n");
        r.set_exception(std::make_exception_ptr(TestError("boom")));
        auto e = co_await error_of(r.readuntil("\n"));
        EXPECT_TRUE(holds<TestError>(e)) << message_of(e);
    };
    run(main());
}

TEST(StreamReader, ReaduntilWithSeveralSeparatorsStopsAtWhicheverComesFirst) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("line 1\nline 2\r");
        auto seps = asyncio_test::list_of<std::string>("\r", "\n");
        std::string a = co_await r.readuntil(seps);
        std::string b = co_await r.readuntil(seps);
        EXPECT_EQ(a, "line 1\n");
        EXPECT_EQ(b, "line 2\r");
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, ReaduntilWithSeveralSeparatorsPrefersTheEarliestEndNotTheEarliestStart) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("ABCDEFG");
        auto seps = asyncio_test::list_of<std::string>("DEF", "BCDE");
        std::string d = co_await r.readuntil(seps);
        EXPECT_EQ(d, "ABCDE");
        std::string rest = co_await buffered_bytes(r);
        EXPECT_EQ(rest, "FG");
    };
    run(main());
}

TEST(StreamReader, ReaduntilWithSeveralSeparatorsWaitsAcrossFeeds) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        auto seps = asyncio_test::list_of<std::string>("\r\n", "\n\n");
        Task<std::string> t = create_task(r.readuntil(seps));
        co_await sleep(0);
        r.feed_data("header\r");
        co_await sleep(0);
        EXPECT_FALSE(t.done());
        r.feed_data("\nbody");
        std::string d = co_await t;
        EXPECT_EQ(d, "header\r\n");
        std::string rest = co_await buffered_bytes(r);
        EXPECT_EQ(rest, "body");
    };
    run(main());
}

TEST(StreamReader, ReaduntilWithSeveralSeparatorsAtEofRaisesIncompleteReadError) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("some dataAA");
        r.feed_eof();
        auto seps = asyncio_test::list_of<std::string>("AAA", "BBB");
        auto e = co_await error_of(r.readuntil(seps));
        auto x = as<IncompleteReadError>(e);
        CO_ASSERT(x.has_value());
        EXPECT_EQ(x->partial, "some dataAA");
        EXPECT_EQ(x->expected, -1);
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, ReaduntilWithSeveralSeparatorsReportsLimitOverrun) {
    auto main = []() -> Coro<void> {
        StreamReader r(3);
        r.feed_data("some dataAA");
        auto seps = asyncio_test::list_of<std::string>("AAA", "AAAA");
        auto e = co_await error_of(r.readuntil(seps));
        auto x = as<LimitOverrunError>(e);
        CO_ASSERT(x.has_value());
        EXPECT_TRUE(contains(x->what(), "not found")) << x->what();
        EXPECT_EQ(x->consumed, 8u);  // the longest separator could start 3 bytes back
        EXPECT_EQ(r.buffered(), 11u);

        r.feed_data("A");
        e = co_await error_of(r.readuntil(seps));
        x = as<LimitOverrunError>(e);
        CO_ASSERT(x.has_value());
        EXPECT_TRUE(contains(x->what(), "is found")) << x->what();
        EXPECT_EQ(x->consumed, 9u);
        std::string rest = co_await buffered_bytes(r);
        EXPECT_EQ(rest, "some dataAAA");
    };
    run(main());
}

// ---- readexactly ------------------------------------------------------------------------------

TEST(StreamReader, ReadexactlyZeroReturnsEmptyAndKeepsTheBuffer) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data(DATA);
        std::string d = co_await r.readexactly(0);
        EXPECT_EQ(d, "");
        EXPECT_EQ(r.buffered(), DATA.size());
    };
    run(main());
}

TEST(StreamReader, ReadexactlyWaitsUntilEnoughDataArrives) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        const std::size_t n = 2 * DATA.size();
        Task<std::string> t = create_task(r.readexactly(n));
        get_running_loop().call_soon([&r] {
            r.feed_data(DATA);
            r.feed_data(DATA);
            r.feed_data(DATA);
        });
        std::string d = co_await t;
        EXPECT_EQ(d, DATA + DATA);
        std::string rest = co_await buffered_bytes(r);
        EXPECT_EQ(rest, DATA);
    };
    run(main());
}

TEST(StreamReader, ReadexactlyKeepsWaitingWhileTheDataIsShort) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> t = create_task(r.readexactly(6));
        for (const char* piece : {"ab", "cd"}) {
            co_await sleep(0);
            r.feed_data(piece);
            co_await sleep(0);
            EXPECT_FALSE(t.done()) << piece;
        }
        r.feed_data("efgh");
        std::string d = co_await t;
        EXPECT_EQ(d, "abcdef");
        EXPECT_EQ(r.buffered(), 2u);
    };
    run(main());
}

TEST(StreamReader, ReadexactlyIsNotLimitedByTheLimit) {
    auto main = []() -> Coro<void> {
        StreamReader r(3);
        r.feed_data("chunk");
        std::string d = co_await r.readexactly(5);
        EXPECT_EQ(d, "chunk");
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, ReadexactlyAtEofRaisesIncompleteReadErrorWithPartialAndExpected) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        const std::size_t n = 2 * DATA.size();
        Task<std::string> t = create_task(r.readexactly(n));
        get_running_loop().call_soon([&r] {
            r.feed_data(DATA);
            r.feed_eof();
        });
        auto e = co_await error_of(t);
        auto x = as<IncompleteReadError>(e);
        CO_ASSERT(x.has_value());
        EXPECT_EQ(x->partial, DATA);
        EXPECT_EQ(x->expected, static_cast<std::ptrdiff_t>(n));
        EXPECT_STREQ(x->what(), "18 bytes read on a total of 36 expected bytes");
        EXPECT_EQ(r.buffered(), 0u);
    };
    run(main());
}

TEST(StreamReader, ReadexactlyOnAnEmptyEndedStreamRaisesWithEmptyPartial) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_eof();
        auto e = co_await error_of(r.readexactly(4));
        auto x = as<IncompleteReadError>(e);
        CO_ASSERT(x.has_value());
        EXPECT_EQ(x->partial, "");
        EXPECT_EQ(x->expected, 4);
        EXPECT_STREQ(x->what(), "0 bytes read on a total of 4 expected bytes");
    };
    run(main());
}

TEST(StreamReader, ReadexactlyWithEnoughDataBufferedSucceedsDespiteEof) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("abcdef");
        r.feed_eof();
        std::string d = co_await r.readexactly(6);
        EXPECT_EQ(d, "abcdef");
        EXPECT_TRUE(r.at_eof());
    };
    run(main());
}

TEST(StreamReader, ReadexactlyRaisesTheSetException) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("line\n");
        std::string d = co_await r.readexactly(2);
        EXPECT_EQ(d, "li");
        r.set_exception(std::make_exception_ptr(TestError("boom")));
        auto e = co_await error_of(r.readexactly(2));
        EXPECT_TRUE(holds<TestError>(e)) << message_of(e);
    };
    run(main());
}

TEST(IncompleteReadError, CarriesPartialExpectedAndPythonsMessage) {
    IncompleteReadError e("abc", 10);
    EXPECT_EQ(e.partial, "abc");
    EXPECT_EQ(e.expected, 10);
    EXPECT_STREQ(e.what(), "3 bytes read on a total of 10 expected bytes");
    IncompleteReadError u("ab", -1);
    EXPECT_STREQ(u.what(), "2 bytes read on a total of undefined expected bytes");
}

TEST(LimitOverrunError, CarriesConsumedAndTheMessage) {
    LimitOverrunError e("message", 10);
    EXPECT_EQ(e.consumed, 10u);
    EXPECT_STREQ(e.what(), "message");
}

// ---- exceptions, concurrent waiters, cancellation ---------------------------------------------

TEST(StreamReader, ExceptionIsNullUntilSetThenReturnsIt) {
    StreamReader r;
    EXPECT_FALSE(r.exception());
    auto exc = std::make_exception_ptr(TestError("boom"));
    r.set_exception(exc);
    EXPECT_EQ(r.exception(), exc);
}

TEST(StreamReader, SetExceptionWakesAWaitingReader) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> t = create_task(r.readline());
        co_await sleep(0);
        EXPECT_FALSE(t.done());
        r.set_exception(std::make_exception_ptr(TestError("boom")));
        auto e = co_await error_of(wait_for(t, 10.0));
        EXPECT_TRUE(holds<TestError>(e)) << message_of(e);
    };
    run(main());
}

TEST(StreamReader, SetExceptionAfterTheWaitingReaderWasCancelledIsSafe) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> t = create_task(r.readline());
        co_await sleep(0);
        t.cancel();
        co_await sleep(0);
        r.set_exception(std::make_exception_ptr(TestError("message")));
        co_await sleep(0);
        EXPECT_TRUE(t.cancelled());
        // The reader has no stale waiter: the next read raises the exception (no RuntimeError).
        auto e = co_await error_of(r.read(1));
        EXPECT_TRUE(holds<TestError>(e)) << message_of(e);
    };
    run(main());
}

TEST(StreamReader, SecondConcurrentReadRaisesRuntimeError) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> first = create_task(r.read(10));
        co_await sleep(0);
        auto e = co_await error_of(r.read(10));
        EXPECT_TRUE(holds<asyncio::RuntimeError>(e)) << message_of(e);
        EXPECT_EQ(message_of(e), "read() called while another coroutine is already waiting for incoming data");
        // The first reader is unaffected.
        r.feed_data("abc");
        std::string d = co_await first;
        EXPECT_EQ(d, "abc");
    };
    run(main());
}

TEST(StreamReader, ConcurrentReadexactlyRaisesRuntimeErrorNamingIt) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> first = create_task(r.read(10));
        co_await sleep(0);
        auto e = co_await error_of(r.readexactly(3));
        EXPECT_TRUE(holds<asyncio::RuntimeError>(e)) << message_of(e);
        EXPECT_EQ(message_of(e), "readexactly() called while another coroutine is already waiting for incoming data");
        r.feed_eof();
        co_await first;
    };
    run(main());
}

TEST(StreamReader, ConcurrentReadlineRaisesRuntimeErrorNamingReaduntil) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> first = create_task(r.readexactly(3));
        co_await sleep(0);
        auto e = co_await error_of(r.readline());
        EXPECT_TRUE(holds<asyncio::RuntimeError>(e)) << message_of(e);
        // readline() is readuntil() underneath, as in Python.
        EXPECT_EQ(message_of(e), "readuntil() called while another coroutine is already waiting for incoming data");
        r.feed_data("xyz");
        std::string d = co_await first;
        EXPECT_EQ(d, "xyz");
    };
    run(main());
}

TEST(StreamReader, ReadWithDataBufferedDoesNotConflictWithAWaiter) {
    // Only waiting for data conflicts: a read served from the buffer never checks.
    auto main = []() -> Coro<void> {
        StreamReader r;
        r.feed_data("ab");
        Task<std::string> first = create_task(r.readexactly(5));
        co_await sleep(0);
        EXPECT_FALSE(first.done());
        std::string d = co_await r.read(1);
        EXPECT_EQ(d, "a");
        r.feed_data("cdefg");
        std::string x = co_await first;
        EXPECT_EQ(x, "bcdef");
    };
    run(main());
}

TEST(StreamReader, CancelledReadLeavesTheReaderUsable) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> t = create_task(r.read(10));
        co_await sleep(0);
        t.cancel();
        auto e = co_await error_of(t);
        EXPECT_TRUE(holds<CancelledError>(e));
        // A new reader can wait (no "already waiting" error) and gets the data.
        Task<std::string> t2 = create_task(r.read(10));
        co_await sleep(0);
        EXPECT_FALSE(t2.done());
        r.feed_data("abc");
        std::string d = co_await t2;
        EXPECT_EQ(d, "abc");
    };
    run(main());
}

TEST(StreamReader, CancelledReadexactlyKeepsThePartialDataBuffered) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> t = create_task(r.readexactly(10));
        co_await sleep(0);
        r.feed_data("0123");
        co_await sleep(0);
        t.cancel();
        auto e = co_await error_of(t);
        EXPECT_TRUE(holds<CancelledError>(e));
        EXPECT_EQ(r.buffered(), 4u);
        r.feed_data("456789");
        std::string d = co_await r.readexactly(10);
        EXPECT_EQ(d, "0123456789");
    };
    run(main());
}

TEST(StreamReader, CancelledReaduntilKeepsTheDataBuffered) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        Task<std::string> t = create_task(r.readuntil("\r\n"));
        co_await sleep(0);
        r.feed_data("GET / HTTP/1.0\r");
        co_await sleep(0);
        t.cancel();
        auto e = co_await error_of(t);
        EXPECT_TRUE(holds<CancelledError>(e));
        r.feed_data("\n");
        std::string line = co_await r.readuntil("\r\n");
        EXPECT_EQ(line, "GET / HTTP/1.0\r\n");
    };
    run(main());
}

TEST(StreamReader, ReadTimedOutByWaitForLeavesTheReaderUsable) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        const double t0 = now();
        auto e = co_await error_of(wait_for(r.read(10), 0.5));
        EXPECT_TRUE(holds<asyncio::TimeoutError>(e)) << message_of(e);
        EXPECT_DOUBLE_EQ(now() - t0, 0.5);
        r.feed_data("late");
        std::string d = co_await wait_for(r.read(10), 1.0);
        EXPECT_EQ(d, "late");
    };
    run_virtual(main());
}

// =============================================================================================
// StreamReaderProtocol as a BufferedProtocol: the transport's get_buffer/buffer_updated rounds
// =============================================================================================

namespace {
/// One get_buffer(sizehint)/buffer_updated round carrying `bytes`, as a transport does it.
void deliver_round(detail::StreamReaderProtocol& p, std::size_t sizehint, std::string_view bytes) {
    std::span<char> buf = p.get_buffer(sizehint);
    ASSERT_GE(buf.size(), bytes.size());
    std::memcpy(buf.data(), bytes.data(), bytes.size());
    p.buffer_updated(bytes.size());
}
}  // namespace

TEST(StreamReaderProtocolBuffers, AnExactSizeHintGetsAtLeastThatMuchRoom) {
    // io_uring delivers bytes the kernel already received and passes their count as the hint:
    // the buffer must hold all of them in one round, whatever the reader's buffer held before.
    StreamReader r;
    detail::StreamReaderProtocol p(r);
    for (std::size_t n : {1, 100, 1024, 4000, 16383}) {
        std::span<char> buf = p.get_buffer(n);
        EXPECT_GE(buf.size(), n) << "sizehint " << n;
        p.buffer_updated(n);  // leave the bytes there: the next hint must fit behind them
    }
    EXPECT_EQ(r.buffered(), 1u + 100 + 1024 + 4000 + 16383);
}

TEST(StreamReaderProtocolBuffers, ExactHintsUnknownSizesAndLargeHintsKeepEveryByteInOrder) {
    auto main = []() -> Coro<void> {
        StreamReader r;
        detail::StreamReaderProtocol p(r);
        const std::string big = pattern(40000);
        std::string sent;
        auto round = [&](std::size_t hint, std::string_view bytes) {
            deliver_round(p, hint, bytes);
            sent += bytes;
        };
        round(5, "hello");                                          // exact hint: the reader's own buffer
        round(0, " world");                                         // unknown size: the scratch buffer
        round(3, "!!!");                                            // exact again, behind the scratch data
        round(big.size(), std::string_view(big).substr(0, 20000));  // large hint
        std::string_view rest = std::string_view(big).substr(20000);
        while (!rest.empty()) {  // the rest in as many rounds as the buffers take
            std::span<char> buf = p.get_buffer(rest.size());
            std::size_t n = std::min(buf.size(), rest.size());
            std::memcpy(buf.data(), rest.data(), n);
            p.buffer_updated(n);
            sent += rest.substr(0, n);
            rest.remove_prefix(n);
        }
        EXPECT_EQ(co_await r.read(8), "hello wo");  // a partial read in between
        round(2, "ok");
        r.feed_eof();
        EXPECT_EQ(co_await r.read(-1), sent.substr(8));
    };
    run(main());
}

// =============================================================================================
// StreamReader flow control (against a fake transport)
// =============================================================================================

TEST(StreamReaderFlowControl, FeedingMoreThanTwiceTheLimitPausesTheTransportOnce) {
    auto tr = std::make_shared<FakeTransport>();
    StreamReader r(4);
    r.set_transport(tr);
    r.feed_data("12345678");  // exactly 2 * limit: not over it
    EXPECT_EQ(tr->pauses, 0);
    r.feed_data("9");
    EXPECT_EQ(tr->pauses, 1);
    EXPECT_FALSE(tr->reading);
    r.feed_data("more");
    EXPECT_EQ(tr->pauses, 1);  // already paused
}

TEST(StreamReaderFlowControl, ReadingDownToTheLimitResumesTheTransport) {
    auto tr = std::make_shared<FakeTransport>();
    auto main = [tr]() -> Coro<void> {
        StreamReader r(4);
        r.set_transport(tr);
        r.feed_data("123456789");
        EXPECT_EQ(tr->pauses, 1);
        std::string a = co_await r.read(4);  // 5 left: still above the limit
        EXPECT_EQ(a, "1234");
        EXPECT_EQ(tr->resumes, 0);
        std::string b = co_await r.read(1);  // 4 left: at the limit
        EXPECT_EQ(b, "5");
        EXPECT_EQ(tr->resumes, 1);
        EXPECT_TRUE(tr->reading);
        std::string c = co_await r.read(4);
        EXPECT_EQ(c, "6789");
        EXPECT_EQ(tr->resumes, 1);
    };
    run(main());
}

TEST(StreamReaderFlowControl, ReadlineAndReadexactlyAlsoResumeTheTransport) {
    auto tr = std::make_shared<FakeTransport>();
    auto main = [tr]() -> Coro<void> {
        StreamReader r(4);
        r.set_transport(tr);
        r.feed_data("ab\ncdefgh");
        EXPECT_EQ(tr->pauses, 1);
        std::string line = co_await r.readline();  // 6 left
        EXPECT_EQ(line, "ab\n");
        EXPECT_EQ(tr->resumes, 0);
        std::string two = co_await r.readexactly(2);  // 4 left
        EXPECT_EQ(two, "cd");
        EXPECT_EQ(tr->resumes, 1);
    };
    run(main());
}

TEST(StreamReaderFlowControl, ReadlineDroppingAnOverlongLineResumesTheTransport) {
    auto tr = std::make_shared<FakeTransport>();
    auto main = [tr]() -> Coro<void> {
        StreamReader r(4);
        r.set_transport(tr);
        r.feed_data("0123456789\nok\n");
        EXPECT_EQ(tr->pauses, 1);
        auto e = co_await error_of(r.readline());
        EXPECT_TRUE(holds<std::invalid_argument>(e)) << message_of(e);
        EXPECT_EQ(tr->resumes, 1);
    };
    run(main());
}

TEST(StreamReaderFlowControl, WaitingForMoreDataResumesAPausedTransport) {
    auto tr = std::make_shared<FakeTransport>();
    auto main = [tr]() -> Coro<void> {
        StreamReader r(4);
        r.set_transport(tr);
        r.feed_data("123456789");
        EXPECT_EQ(tr->pauses, 1);
        // 9 bytes buffered, 20 wanted: the reader must let the transport read again, or it
        // would wait forever.
        Task<std::string> t = create_task(r.readexactly(20));
        co_await sleep(0);
        EXPECT_EQ(tr->resumes, 1);
        EXPECT_TRUE(tr->reading);
        EXPECT_FALSE(t.done());
        r.feed_data(std::string(11, 'x'));
        std::string d = co_await t;
        EXPECT_EQ(d.size(), 20u);
    };
    run(main());
}

TEST(StreamReaderFlowControl, TransportThatCannotPauseLetsTheBufferGrow) {
    auto tr = std::make_shared<FakeTransport>();
    tr->can_pause = false;
    auto main = [tr]() -> Coro<void> {
        StreamReader r(4);
        r.set_transport(tr);
        r.feed_data("123456789");  // pause_reading() throws: swallowed
        r.feed_data("abcdefghi");
        EXPECT_EQ(r.buffered(), 18u);
        std::string d = co_await r.read(18);
        EXPECT_EQ(d, "123456789abcdefghi");
        EXPECT_EQ(tr->resumes, 0);  // never paused, so never resumed
    };
    run(main());
}

TEST(StreamReaderFlowControl, TransportThatCannotPauseIsNotAskedAgain) {
    // Python's feed_data drops the transport after NotImplementedError from pause_reading().
    auto tr = std::make_shared<FakeTransport>();
    tr->can_pause = false;
    StreamReader r(4);
    r.set_transport(tr);
    r.feed_data("123456789");
    r.feed_data("abcdefghi");
    r.feed_data("jklmnopqr");
    EXPECT_EQ(tr->pauses, 1);
}

TEST(StreamReaderFlowControl, SetTransportTwiceIsRejected) {
    StreamReader r;
    r.set_transport(std::make_shared<FakeTransport>());
    EXPECT_THROW(r.set_transport(std::make_shared<FakeTransport>()), std::logic_error);
}

// =============================================================================================
// Real connections over loopback
// =============================================================================================

TEST(StreamConnection, OpenConnectionReadsALineThenTheRestUntilEof) {
    HandlerCapture handler;
    auto main = [&handler]() -> Coro<void> {
        handler.install(get_running_loop());
        Server server = co_await start_server(http_like, "127.0.0.1", 0);
        const int port = server.sockets().at(0).getsockname().port();
        auto [reader, writer] = co_await open_connection("127.0.0.1", port);
        writer.write("GET / HTTP/1.0\r\n\r\n");
        std::string status = co_await wait_for(reader.readline(), 10.0);
        EXPECT_EQ(status, "HTTP/1.0 200 OK\r\n");
        std::string rest = co_await wait_for(reader.read(), 10.0);
        EXPECT_TRUE(rest.ends_with("\r\n\r\nTest message")) << rest;
        EXPECT_TRUE(reader.at_eof());
        writer.close();
        co_await wait_for(writer.wait_closed(), 10.0);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty()) << handler.contexts.front().message;
}

TEST(StreamConnection, OpenUnixConnectionReadsALineThenTheRestUntilEof) {
    HandlerCapture handler;
    TempDir dir;
    const std::string path = dir.file("http.sock");
    auto main = [&handler, &path]() -> Coro<void> {
        handler.install(get_running_loop());
        Server server = co_await start_unix_server(http_like, path);
        auto [reader, writer] = co_await open_unix_connection(path);
        writer.write("GET / HTTP/1.0\r\n\r\n");
        std::string status = co_await wait_for(reader.readline(), 10.0);
        EXPECT_EQ(status, "HTTP/1.0 200 OK\r\n");
        std::string rest = co_await wait_for(reader.read(), 10.0);
        EXPECT_TRUE(rest.ends_with("\r\n\r\nTest message")) << rest;
        writer.close();
        co_await wait_for(writer.wait_closed(), 10.0);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty()) << handler.contexts.front().message;
}

TEST(StreamServer, StartServerEchoesALineThroughTheClientCallback) {
    HandlerCapture handler;
    auto main = [&handler]() -> Coro<void> {
        handler.install(get_running_loop());
        Server server = co_await start_server(echo_line, "127.0.0.1", 0);
        const int port = server.sockets().at(0).getsockname().port();
        auto [reader, writer] = co_await open_connection("127.0.0.1", port);
        writer.write("hello world!\n");
        std::string back = co_await wait_for(reader.readline(), 10.0);
        EXPECT_EQ(back, "hello world!\n");
        writer.close();
        co_await wait_for(writer.wait_closed(), 10.0);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty()) << handler.contexts.front().message;
}

TEST(StreamServer, StartUnixServerEchoesALineThroughTheClientCallback) {
    HandlerCapture handler;
    TempDir dir;
    const std::string path = dir.file("echo.sock");
    auto main = [&handler, &path]() -> Coro<void> {
        handler.install(get_running_loop());
        Server server = co_await start_unix_server(echo_line, path);
        auto [reader, writer] = co_await open_unix_connection(path);
        writer.write("hello world!\n");
        std::string back = co_await wait_for(reader.readline(), 10.0);
        EXPECT_EQ(back, "hello world!\n");
        writer.close();
        co_await wait_for(writer.wait_closed(), 10.0);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty()) << handler.contexts.front().message;
}

TEST(StreamServer, ServesSeveralClientsEachWithItsOwnStreams) {
    auto main = []() -> Coro<void> {
        Server server = co_await start_server(echo_line, "127.0.0.1", 0);
        const int port = server.sockets().at(0).getsockname().port();
        std::vector<std::pair<StreamReader, StreamWriter>> clients;
        for (int i = 0; i < 5; ++i) clients.push_back(co_await open_connection("127.0.0.1", port));
        for (int i = 4; i >= 0; --i) clients[i].second.write("client " + std::to_string(i) + "\n");
        for (int i = 0; i < 5; ++i) {
            std::string back = co_await wait_for(clients[i].first.readline(), 10.0);
            EXPECT_EQ(back, "client " + std::to_string(i) + "\n");
        }
        for (auto& c : clients) {
            c.second.close();
            co_await wait_for(c.second.wait_closed(), 10.0);
        }
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
}

TEST(StreamServer, EchoOfSmallAndLargeMessagesReturnsEveryByteInOrder) {
    // The echo benchmark's loop must be byte-exact for messages below, at and far above its
    // 64 KiB read size (several reads and writes per message).
    auto main = []() -> Coro<void> {
        Server server = co_await start_server(echo_until_eof, "127.0.0.1", 0);
        const int port = server.sockets().at(0).getsockname().port();
        auto [reader, writer] = co_await open_connection("127.0.0.1", port);
        for (std::size_t size : {std::size_t(1), std::size_t(4096), std::size_t(10240), std::size_t(65536),
                                 std::size_t(100 * 1024), std::size_t(300 * 1024), std::size_t(10240)}) {
            const std::string msg = pattern(size + 13).substr(13);  // a different phase each size
            writer.write(msg);
            co_await writer.drain();
            std::string back = co_await wait_for(reader.readexactly(size), 10.0);
            EXPECT_TRUE(back == msg) << "echo of " << size << " bytes differs";
        }
        writer.close();
        co_await wait_for(writer.wait_closed(), 10.0);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
}

TEST(StreamServer, ClientCallbackReturningLeavesTheConnectionOpen) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        co_await settle();  // the callback task has finished
        EXPECT_FALSE(c.sw.is_closing());
        c.cw.write("ping");
        std::string got = co_await wait_for(c.sr.readexactly(4), 10.0);
        EXPECT_EQ(got, "ping");
        c.sw.write("pong");
        std::string back = co_await wait_for(c.cr.readexactly(4), 10.0);
        EXPECT_EQ(back, "pong");
        co_await teardown(c);
    };
    run(main());
}

namespace {
struct HandlerFailure : std::runtime_error {
    using std::runtime_error::runtime_error;
};
Coro<void> failing_handler(StreamReader r, StreamWriter) {
    co_await r.readline();
    throw HandlerFailure("handler failed");
}

Coro<void> parked_handler(std::shared_ptr<Queue<AnyTask>> q, StreamReader, StreamWriter) {
    q->put_nowait(current_task());
    Event never;
    co_await never.wait();
}
}  // namespace

TEST(StreamServer, ClientCallbackExceptionIsReportedAndClosesTheConnection) {
    HandlerCapture handler;
    auto main = [&handler]() -> Coro<void> {
        handler.install(get_running_loop());
        Server server = co_await start_server(failing_handler, "127.0.0.1", 0);
        const int port = server.sockets().at(0).getsockname().port();
        auto [reader, writer] = co_await open_connection("127.0.0.1", port);
        writer.write("go\n");
        std::string got = co_await wait_for(reader.read(), 10.0);
        EXPECT_EQ(got, "");  // the server closed the connection
        EXPECT_TRUE(reader.at_eof());
        writer.close();
        co_await error_of(wait_for(writer.wait_closed(), 10.0));
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
    ASSERT_EQ(handler.contexts.size(), 1u);
    EXPECT_EQ(handler.contexts[0].message, "Unhandled exception in client_connected_cb");
    EXPECT_TRUE(holds<HandlerFailure>(handler.contexts[0].exception));
    EXPECT_EQ(message_of(handler.contexts[0].exception), "handler failed");
}

TEST(StreamServer, CancelledClientCallbackClosesTheConnectionSilently) {
    HandlerCapture handler;
    auto main = [&handler]() -> Coro<void> {
        handler.install(get_running_loop());
        auto tasks = std::make_shared<Queue<AnyTask>>();
        ClientConnectedCallback cb = [tasks](StreamReader r, StreamWriter w) {
            return parked_handler(tasks, std::move(r), std::move(w));
        };
        Server server = co_await start_server(cb, "127.0.0.1", 0);
        const int port = server.sockets().at(0).getsockname().port();
        auto [reader, writer] = co_await open_connection("127.0.0.1", port);
        AnyTask handler_task = co_await wait_for(tasks->get(), 10.0);
        handler_task.cancel();
        std::string got = co_await wait_for(reader.read(), 10.0);
        EXPECT_EQ(got, "");
        EXPECT_TRUE(handler_task.cancelled());
        writer.close();
        co_await error_of(wait_for(writer.wait_closed(), 10.0));
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty()) << handler.contexts.front().message;
}

TEST(StreamServer, StartServerPassesTheLimitToEachConnectionsReader) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback(100, 77);
        EXPECT_EQ(c.cr.limit(), 100u);
        EXPECT_EQ(c.sr.limit(), 77u);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamConnection, OpenConnectionToAClosedPortRaisesConnectionRefused) {
    auto main = []() -> Coro<void> {
        int port;
        {
            Socket s(AF_INET, SOCK_STREAM);
            s.bind(SockAddr("127.0.0.1", 0));
            port = s.getsockname().port();
        }  // closed, never listened
        auto e = co_await error_of(open_connection("127.0.0.1", port));
        EXPECT_EQ(errno_of(e), ECONNREFUSED) << message_of(e);
    };
    run(main());
}

TEST(StreamConnection, Ipv6LoopbackRoundTrip) {
    if (!asyncio_test::ipv6_available()) GTEST_SKIP() << "no IPv6 loopback";
    auto main = []() -> Coro<void> {
        Server server = co_await start_server(echo_line, "::1", 0);
        const int port = server.sockets().at(0).getsockname().port();
        auto [reader, writer] = co_await open_connection("::1", port);
        writer.write("six\n");
        std::string back = co_await wait_for(reader.readline(), 10.0);
        EXPECT_EQ(back, "six\n");
        auto peer = writer.get_extra_info<SockAddr>("peername", SockAddr());
        EXPECT_EQ(peer.family(), AF_INET6);
        EXPECT_EQ(peer.host(), "::1");
        writer.close();
        co_await wait_for(writer.wait_closed(), 10.0);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
}

TEST(StreamConnection, ConnectionLostWithAnErrorIsRaisedByTheReader) {
    HandlerCapture handler;
    auto main = [&handler]() -> Coro<void> {
        handler.install(get_running_loop());
        Loopback c = co_await loopback();
        // What Python's test does with writer._protocol.connection_lost(ZeroDivisionError()).
        c.cw.transport().get_protocol()->connection_lost(std::make_exception_ptr(TestError("lost")));
        auto e = co_await error_of(c.cr.read());
        EXPECT_TRUE(holds<TestError>(e)) << message_of(e);
        c.cw.close();
        co_await settle();
        co_await teardown(c);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty()) << handler.contexts.front().message;
}

TEST(StreamConnection, UnixConnectionLostWithAnErrorIsRaisedByTheReader) {
    HandlerCapture handler;
    TempDir dir;
    const std::string path = dir.file("lost.sock");
    auto main = [&handler, &path]() -> Coro<void> {
        handler.install(get_running_loop());
        auto q = std::make_shared<Accepted>();
        Server server = co_await start_unix_server(stash_into(q), path);
        auto [reader, writer] = co_await open_unix_connection(path);
        auto server_side = co_await wait_for(q->get(), 10.0);
        writer.transport().get_protocol()->connection_lost(std::make_exception_ptr(TestError("lost")));
        auto e = co_await error_of(reader.read());
        EXPECT_TRUE(holds<TestError>(e)) << message_of(e);
        writer.close();
        co_await settle();
        server_side.second.close();
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty()) << handler.contexts.front().message;
}

TEST(StreamConnection, WritelinesSendsThePiecesInOrder) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        c.cw.writelines({"one ", "two ", "three"});
        std::vector<std::string> more{" four", " five"};
        c.cw.writelines(more);
        c.cw.write_eof();
        std::string got = co_await wait_for(c.sr.read(), 10.0);
        EXPECT_EQ(got, "one two three four five");
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamConnection, GetExtraInfoGivesPeernameAndSockname) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        const SockAddr listening = c.server.sockets().at(0).getsockname();
        std::any peer = c.cw.get_extra_info("peername");
        CO_ASSERT(peer.has_value());
        EXPECT_EQ(std::any_cast<SockAddr>(peer), listening);
        const auto client_name = c.cw.get_extra_info<SockAddr>("sockname", SockAddr());
        const auto seen_by_server = c.sw.get_extra_info<SockAddr>("peername", SockAddr());
        EXPECT_EQ(client_name, seen_by_server);
        EXPECT_EQ(client_name.host(), "127.0.0.1");
        EXPECT_NE(client_name.port(), listening.port());
        EXPECT_EQ(c.sw.get_extra_info<SockAddr>("sockname", SockAddr()), listening);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamConnection, GetExtraInfoOfAnUnknownNameIsEmptyOrTheDefault) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        EXPECT_FALSE(c.cw.get_extra_info("no such thing").has_value());
        EXPECT_EQ(c.cw.get_extra_info<int>("no such thing", 42), 42);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamConnection, UnixGetExtraInfoPeernameIsTheServerPath) {
    TempDir dir;
    const std::string path = dir.file("name.sock");
    auto main = [&path]() -> Coro<void> {
        auto q = std::make_shared<Accepted>();
        Server server = co_await start_unix_server(stash_into(q), path);
        auto [reader, writer] = co_await open_unix_connection(path);
        auto peer = writer.get_extra_info<SockAddr>("peername", SockAddr());
        EXPECT_EQ(peer.family(), AF_UNIX);
        EXPECT_EQ(peer.host(), path);
        auto server_side = co_await wait_for(q->get(), 10.0);
        auto local = server_side.second.get_extra_info<SockAddr>("sockname", SockAddr());
        EXPECT_EQ(local.host(), path);
        writer.close();
        server_side.second.close();
        co_await wait_for(writer.wait_closed(), 10.0);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
}

// ---- EOF, half-close, close ---------------------------------------------------------------------

TEST(StreamConnection, PeerCloseGivesEofToTheReader) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        c.sw.write("last words");
        c.sw.close();
        std::string all = co_await wait_for(c.cr.read(), 10.0);
        EXPECT_EQ(all, "last words");
        EXPECT_TRUE(c.cr.at_eof());
        std::string line = co_await c.cr.readline();
        EXPECT_EQ(line, "");
        auto e = co_await error_of(c.cr.readexactly(1));
        auto x = as<IncompleteReadError>(e);
        CO_ASSERT(x.has_value());
        EXPECT_EQ(x->partial, "");
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamConnection, PeerCloseWakesAPendingRead) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        Task<std::string> t = create_task(c.cr.read(100));
        co_await sleep(0);
        EXPECT_FALSE(t.done());
        c.sw.close();
        std::string d = co_await wait_for(t, 10.0);
        EXPECT_EQ(d, "");
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamConnection, WriteEofHalfClosesAndThePeerCanStillReply) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        EXPECT_TRUE(c.cw.can_write_eof());
        c.cw.write("request body");
        c.cw.write_eof();
        std::string req = co_await wait_for(c.sr.read(), 10.0);
        EXPECT_EQ(req, "request body");
        EXPECT_TRUE(c.sr.at_eof());
        EXPECT_FALSE(c.sw.is_closing());  // TCP stays half-open
        c.sw.write("response");
        c.sw.close();
        std::string resp = co_await wait_for(c.cr.read(), 10.0);
        EXPECT_EQ(resp, "response");
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamConnection, WriteAfterWriteEofRaisesRuntimeError) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        c.cw.write_eof();
        EXPECT_THROW(c.cw.write("late"), asyncio::RuntimeError);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamConnection, IsClosingTurnsTrueAtCloseAndWaitClosedCompletes) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        c.cw.write("GET\n");
        std::string got = co_await wait_for(c.sr.readline(), 10.0);
        EXPECT_EQ(got, "GET\n");
        EXPECT_FALSE(c.cw.is_closing());
        c.cw.close();
        EXPECT_TRUE(c.cw.is_closing());
        co_await wait_for(c.cw.wait_closed(), 10.0);
        // The peer sees EOF.
        std::string eof = co_await wait_for(c.sr.read(), 10.0);
        EXPECT_EQ(eof, "");
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamConnection, WaitClosedWithUnreadDataCompletes) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        c.sw.write("line one\nline two\n");
        std::string first = co_await wait_for(c.cr.readline(), 10.0);
        EXPECT_EQ(first, "line one\n");
        c.cw.close();
        co_await wait_for(c.cw.wait_closed(), 10.0);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamConnection, WaitClosedCalledTwiceAfterCloseReturnsBothTimes) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        c.cw.close();
        co_await wait_for(c.cw.wait_closed(), 10.0);
        co_await wait_for(c.cw.wait_closed(), 10.0);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamConnection, ClosingTheWriterFeedsEofToItsOwnReader) {
    HandlerCapture handler;
    auto main = [&handler]() -> Coro<void> {
        handler.install(get_running_loop());
        Loopback c = co_await loopback();
        c.cw.close();
        co_await wait_for(c.cw.wait_closed(), 10.0);
        EXPECT_TRUE(c.cr.at_eof());
        std::string d = co_await c.cr.read();
        EXPECT_EQ(d, "");
        co_await teardown(c);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty()) << handler.contexts.front().message;
}

// ---- peer reset ---------------------------------------------------------------------------------

TEST(StreamConnection, PeerResetRaisesConnectionResetOnRead) {
    HandlerCapture handler;
    auto main = [&handler]() -> Coro<void> {
        handler.install(get_running_loop());
        Loopback c = co_await loopback();
        reset_on_close(c.sw);
        c.sw.close();
        auto e = co_await error_of(wait_for(c.cr.read(), 10.0));
        auto x = as<std::system_error>(e);
        CO_ASSERT(x.has_value());
        EXPECT_EQ(x->code(), std::errc::connection_reset) << x->what();
        EXPECT_EQ(x->code().category(), std::generic_category());
        // The error stays: every later read raises it too.
        auto again = co_await error_of(c.cr.readline());
        EXPECT_EQ(errno_of(again), ECONNRESET) << message_of(again);
        co_await teardown(c);
    };
    run(main());
    // A connection reset is not reported to the exception handler (Python: ConnectionError).
    EXPECT_TRUE(handler.contexts.empty()) << handler.contexts.front().message;
}

TEST(StreamConnection, PeerResetWakesAPendingReadWithConnectionReset) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        Task<std::string> t = create_task(c.cr.readexactly(10));
        co_await sleep(0);
        c.sw.write("0123");
        co_await wait_for(until([&c] { return c.cr.buffered() == 4; }), 10.0);
        reset_on_close(c.sw);
        c.sw.close();
        auto e = co_await error_of(wait_for(t, 10.0));
        EXPECT_EQ(errno_of(e), ECONNRESET) << message_of(e);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamConnection, WaitClosedReRaisesTheErrorTheConnectionWasLostWith) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        reset_on_close(c.sw);
        c.sw.close();
        co_await error_of(wait_for(c.cr.read(), 10.0));
        auto e = co_await error_of(wait_for(c.cw.wait_closed(), 10.0));
        EXPECT_EQ(errno_of(e), ECONNRESET) << message_of(e);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamConnection, DrainRaisesTheReadersException) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        c.cr.set_exception(std::make_exception_ptr(TestError("reader failed")));
        auto e = co_await error_of(c.cw.drain());
        EXPECT_TRUE(holds<TestError>(e)) << message_of(e);
        co_await teardown(c);
    };
    run(main());
}

// ---- drain and back-pressure ----------------------------------------------------------------

namespace {
Coro<void> set_flag(bool& flag) {
    flag = true;
    co_return;
}

/// Fills the client's write buffer far above its high-water mark: the client's send buffer is
/// shrunk and the server's reader (limit 1 KiB) soon pauses its transport, so the kernel takes
/// little. (Shrinking the receiving socket's SO_RCVBUF after the handshake is avoided: Linux
/// then drops segments already in flight and the connection crawls on retransmissions.)
std::string fill_client_buffer(Loopback& c, std::size_t bytes = 1024 * 1024) {
    set_buffer(c.cw, SO_SNDBUF, 4096);
    std::string payload = pattern(bytes);
    c.cw.write(payload);
    return payload;
}
}  // namespace

TEST(StreamDrain, DrainReturnsAtOnceWhenTheBufferIsBelowTheHighWaterMark) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        c.cw.write("small");
        bool other_ran = false;
        Task<void> other = create_task(set_flag(other_ran));
        co_await c.cw.drain();
        EXPECT_FALSE(other_ran);  // drain() did not yield to the loop
        co_await other;
        EXPECT_TRUE(other_ran);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamDrain, DrainBlocksUnderBackPressureUntilThePeerReads) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback(default_stream_limit, 1024);
        const std::string payload = fill_client_buffer(c);
        EXPECT_GT(c.cw.transport().get_write_buffer_size(), c.cw.transport().get_write_buffer_limits().second);
        Task<void> drain = create_task(c.cw.drain());
        co_await settle(10);
        EXPECT_FALSE(drain.done());
        std::string got = co_await wait_for(c.sr.readexactly(payload.size()), 10.0);
        co_await wait_for(drain, 10.0);
        EXPECT_TRUE(got == payload) << "payload corrupted";
        EXPECT_LE(c.cw.transport().get_write_buffer_size(), c.cw.transport().get_write_buffer_limits().first);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamDrain, SeveralConcurrentDrainsAllResumeTogether) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback(default_stream_limit, 1024);
        const std::string payload = fill_client_buffer(c);
        std::vector<Task<void>> drains;
        for (int i = 0; i < 10; ++i) drains.push_back(create_task(c.cw.drain()));
        co_await settle(10);
        for (auto& d : drains) EXPECT_FALSE(d.done());
        std::string got = co_await wait_for(c.sr.readexactly(payload.size()), 10.0);
        co_await wait_for(gather(drains), 10.0);
        for (auto& d : drains) EXPECT_TRUE(d.done() && !d.cancelled());
        EXPECT_TRUE(got == payload);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamDrain, CancelledDrainLeavesTheWriterUsable) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback(default_stream_limit, 1024);
        const std::string payload = fill_client_buffer(c);
        Task<void> drain = create_task(c.cw.drain());
        co_await settle(5);
        EXPECT_FALSE(drain.done());
        drain.cancel();
        auto e = co_await error_of(drain);
        EXPECT_TRUE(holds<CancelledError>(e));
        EXPECT_FALSE(c.cw.is_closing());
        // The data is still sent, in order, and a new drain works.
        c.cw.write("tail");
        Task<void> again = create_task(c.cw.drain());
        std::string got = co_await wait_for(c.sr.readexactly(payload.size() + 4), 10.0);
        co_await wait_for(again, 10.0);
        EXPECT_TRUE(got == payload + "tail");
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamDrain, DrainTimedOutByWaitForLeavesTheWriterUsable) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback(default_stream_limit, 1024);
        const std::string payload = fill_client_buffer(c);
        auto e = co_await error_of(wait_for(c.cw.drain(), 0.05));
        EXPECT_TRUE(holds<asyncio::TimeoutError>(e)) << message_of(e);
        Task<void> again = create_task(c.cw.drain());
        std::string got = co_await wait_for(c.sr.readexactly(payload.size()), 10.0);
        co_await wait_for(again, 10.0);
        EXPECT_TRUE(got == payload);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamDrain, DrainAfterCloseRaisesConnectionReset) {
    HandlerCapture handler;
    auto main = [&handler]() -> Coro<void> {
        handler.install(get_running_loop());
        Loopback c = co_await loopback();
        c.cw.close();
        c.cw.write("data");  // dropped: the transport is closing
        auto e = co_await error_of(c.cw.drain());
        auto x = as<std::system_error>(e);
        CO_ASSERT(x.has_value());
        EXPECT_EQ(x->code(), std::errc::connection_reset) << x->what();
        co_await teardown(c);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty()) << handler.contexts.front().message;
}

TEST(StreamDrain, WriteAndDrainInALoopFailsOnceThePeerHasClosed) {
    HandlerCapture handler;
    auto main = [&handler]() -> Coro<void> {
        handler.install(get_running_loop());
        Loopback c = co_await loopback();
        c.sw.close();
        co_await wait_for(c.sw.wait_closed(), 10.0);  // the peer's socket is really closed
        auto write_forever = [](StreamWriter w) -> Coro<void> {
            for (;;) {
                w.write("foo\n");
                co_await w.drain();
            }
        };
        // Must not spin forever: the write error surfaces through drain().
        auto e = co_await error_of(wait_for(write_forever(c.cw), 10.0));
        const int err = errno_of(e);
        EXPECT_TRUE(err == ECONNRESET || err == EPIPE || err == ECONNABORTED) << message_of(e);
        co_await teardown(c);
    };
    run(main());
    EXPECT_TRUE(handler.contexts.empty()) << handler.contexts.front().message;
}

TEST(StreamDrain, DrainWaitingWhenThePeerResetsRaises) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback(default_stream_limit, 1024);
        fill_client_buffer(c);
        Task<void> drain = create_task(c.cw.drain());
        co_await settle(5);
        EXPECT_FALSE(drain.done());
        reset_on_close(c.sw);
        c.sw.close();
        auto e = co_await error_of(wait_for(drain, 10.0));
        const int err = errno_of(e);
        EXPECT_TRUE(err == ECONNRESET || err == EPIPE) << message_of(e);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamDrain, DrainWaitingWhenTheTransportIsAbortedReturnsThenTheNextDrainRaises) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback(default_stream_limit, 1024);
        fill_client_buffer(c);
        Task<void> drain = create_task(c.cw.drain());
        co_await settle(5);
        EXPECT_FALSE(drain.done());
        c.cw.transport().abort();
        // Python's FlowControlMixin wakes the drain waiters with None on a clean loss.
        auto e = co_await error_of(wait_for(drain, 10.0));
        EXPECT_FALSE(e) << message_of(e);
        auto next = co_await error_of(c.cw.drain());
        EXPECT_EQ(errno_of(next), ECONNRESET) << message_of(next);
        co_await teardown(c);
    };
    run(main());
}

// ---- the reader's flow control on a real connection ------------------------------------------

TEST(StreamFlowControl, ReaderPausesTheTransportWhenItsBufferExceedsTwiceTheLimit) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback(default_stream_limit, 1024);
        const std::string payload = pattern(1024 * 1024);
        c.cw.write(payload);
        co_await wait_for(until([&c] { return !c.sw.transport().is_reading(); }), 10.0);
        EXPECT_GT(c.sr.buffered(), 2u * 1024u);
        // Paused: nothing more is received while nobody reads.
        const std::size_t held = c.sr.buffered();
        co_await settle(20);
        EXPECT_EQ(c.sr.buffered(), held);
        std::string got = co_await wait_for(c.sr.readexactly(payload.size()), 10.0);
        EXPECT_TRUE(got == payload);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamFlowControl, ReaderResumesTheTransportOnceReadDownToTheLimit) {
    auto main = []() -> Coro<void> {
        const std::size_t limit = 1024;
        Loopback c = co_await loopback(default_stream_limit, limit);
        const std::string payload = pattern(1024 * 1024);
        c.cw.write(payload);
        co_await wait_for(until([&c] { return !c.sw.transport().is_reading(); }), 10.0);
        std::string got = co_await c.sr.read(static_cast<std::ptrdiff_t>(c.sr.buffered() - limit - 1));
        EXPECT_FALSE(c.sw.transport().is_reading());  // limit + 1 bytes left
        got += co_await c.sr.read(1);
        EXPECT_TRUE(c.sw.transport().is_reading());  // limit bytes left
        got += co_await wait_for(c.sr.readexactly(payload.size() - got.size()), 10.0);
        EXPECT_TRUE(got == payload);
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamFlowControl, ReadAllWithATinyLimitReceivesEverything) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback(default_stream_limit, 16);
        const std::string payload = pattern(200 * 1024);
        c.cw.write(payload);
        c.cw.write_eof();
        std::string got = co_await wait_for(c.sr.read(-1), 10.0);
        EXPECT_EQ(got.size(), payload.size());
        EXPECT_TRUE(got == payload);
        co_await teardown(c);
    };
    run(main());
}

// ---- cancellation on a real connection ---------------------------------------------------------

TEST(StreamConnection, CancelledReadLeavesTheConnectionUsable) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        Task<std::string> t = create_task(c.cr.readline());
        co_await sleep(0);
        c.sw.write("partial ");
        co_await wait_for(until([&c] { return c.cr.buffered() == 8; }), 10.0);
        t.cancel();
        auto e = co_await error_of(t);
        EXPECT_TRUE(holds<CancelledError>(e));
        c.sw.write("line\n");
        std::string line = co_await wait_for(c.cr.readline(), 10.0);
        EXPECT_EQ(line, "partial line\n");
        c.cw.write("still writable\n");
        std::string back = co_await wait_for(c.sr.readline(), 10.0);
        EXPECT_EQ(back, "still writable\n");
        co_await teardown(c);
    };
    run(main());
}

TEST(StreamConnection, ReadTimedOutLeavesTheConnectionUsable) {
    auto main = []() -> Coro<void> {
        Loopback c = co_await loopback();
        auto e = co_await error_of(wait_for(c.cr.read(10), 0.01));
        EXPECT_TRUE(holds<asyncio::TimeoutError>(e)) << message_of(e);
        c.sw.write("hello");
        std::string d = co_await wait_for(c.cr.readexactly(5), 10.0);
        EXPECT_EQ(d, "hello");
        co_await teardown(c);
    };
    run(main());
}

// =============================================================================================
// The sock= forms: streams over a socket the caller made
// =============================================================================================

TEST(StreamSockArgument, OpenConnectionOverAConnectedSocketTalksToTheServer) {
    auto main = []() -> Coro<void> {
        Server server = co_await start_server(echo_line, "127.0.0.1", 0);
        const int port = server.sockets().at(0).getsockname().port();
        Socket sock(AF_INET, SOCK_STREAM);
        sock.setblocking(false);
        co_await get_running_loop().sock_connect(sock, SockAddr("127.0.0.1", port));
        auto [reader, writer] = co_await open_connection(std::move(sock));
        EXPECT_FALSE(sock.is_open());  // the streams own it now
        writer.write("over a socket\n");
        EXPECT_EQ(co_await wait_for(reader.readline(), 10.0), "over a socket\n");
        EXPECT_EQ(std::any_cast<SockAddr>(writer.get_extra_info("peername")).port(), port);
        writer.close();
        co_await wait_for(writer.wait_closed(), 10.0);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
}

TEST(StreamSockArgument, StartServerOnABoundSocketListensAndServesOnIt) {
    auto main = []() -> Coro<void> {
        Socket listening(AF_INET, SOCK_STREAM);
        listening.bind(SockAddr("127.0.0.1", 0));
        const int port = listening.getsockname().port();
        Server server = co_await start_server(echo_line, std::move(listening));
        EXPECT_TRUE(server.is_serving());
        EXPECT_EQ(server.sockets().size(), 1u);
        if (!server.sockets().empty()) {
            EXPECT_EQ(server.sockets()[0].getsockname().port(), port);
        }
        auto [reader, writer] = co_await open_connection("127.0.0.1", port);
        writer.write("hello\n");
        EXPECT_EQ(co_await wait_for(reader.readline(), 10.0), "hello\n");
        writer.close();
        co_await wait_for(writer.wait_closed(), 10.0);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
}

TEST(StreamSockArgument, StartServerWithoutStartServingListensOnlyWhenAsked) {
    auto main = []() -> Coro<void> {
        Socket listening(AF_INET, SOCK_STREAM);
        listening.bind(SockAddr("127.0.0.1", 0));
        const int port = listening.getsockname().port();
        ServerOptions opts;
        opts.start_serving = false;
        Server server = co_await start_server(echo_line, std::move(listening), opts);
        EXPECT_FALSE(server.is_serving());
        // Not listening yet: a connection attempt is refused.
        auto refused = co_await error_of(wait_for(open_connection("127.0.0.1", port), 10.0));
        EXPECT_EQ(errno_of(refused), ECONNREFUSED);
        co_await server.start_serving();
        EXPECT_TRUE(server.is_serving());
        auto [reader, writer] = co_await open_connection("127.0.0.1", port);
        writer.write("late\n");
        EXPECT_EQ(co_await wait_for(reader.readline(), 10.0), "late\n");
        writer.close();
        co_await wait_for(writer.wait_closed(), 10.0);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
}

TEST(StreamSockArgument, ADatagramSocketIsRejectedAsNotAStreamSocket) {
    auto main = []() -> Coro<void> {
        auto e1 = co_await error_of(open_connection(Socket(AF_INET, SOCK_DGRAM)));
        auto v1 = as<std::invalid_argument>(e1);
        EXPECT_TRUE(v1 && contains(v1->what(), "A Stream Socket was expected"));
        auto e2 = co_await error_of(start_server(echo_line, Socket(AF_INET, SOCK_DGRAM)));
        auto v2 = as<std::invalid_argument>(e2);
        EXPECT_TRUE(v2 && contains(v2->what(), "A Stream Socket was expected"));
    };
    run(main());
}

TEST(StreamSockArgument, AClosedSocketIsRejected) {
    auto main = []() -> Coro<void> {
        auto e = co_await error_of(open_connection(Socket()));
        auto v = as<std::invalid_argument>(e);
        EXPECT_TRUE(v && contains(v->what(), "closed"));
    };
    run(main());
}

TEST(StreamSockArgument, ARejectedSocketIsClosed) {
    auto main = []() -> Coro<void> {
        Socket sock(AF_INET, SOCK_DGRAM);
        const int fd = sock.fileno();
        auto e = co_await error_of(open_connection(std::move(sock)));
        EXPECT_TRUE(as<std::invalid_argument>(e).has_value());
        errno = 0;
        EXPECT_EQ(::fcntl(fd, F_GETFD), -1);  // nothing else opened an fd meanwhile
        EXPECT_EQ(errno, EBADF);
    };
    run(main());
}

#ifdef ASYNCIO_WITH_TLS  // (a build without TLS has no ssl::Context to give)
TEST(StreamSockArgument, SslWithoutServerHostnameIsRejected) {
    auto main = []() -> Coro<void> {
        ssl::Context ctx = ssl::Context::client();
        Server server = co_await start_server(echo_line, "127.0.0.1", 0);
        const int port = server.sockets().at(0).getsockname().port();
        Socket sock(AF_INET, SOCK_STREAM);
        sock.setblocking(false);
        co_await get_running_loop().sock_connect(sock, SockAddr("127.0.0.1", port));
        ConnectionOptions opts;
        opts.ssl = ctx;
        auto e = co_await error_of(open_connection(std::move(sock), opts));
        auto v = as<std::invalid_argument>(e);
        EXPECT_TRUE(v && contains(v->what(), "server_hostname"));
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
}
#endif

TEST(StreamSockArgument, OpenUnixConnectionOverAConnectedUnixSocket) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        const std::string path = dir.file("s");
        Server server = co_await start_unix_server(echo_line, path);
        Socket sock(AF_UNIX, SOCK_STREAM);
        sock.setblocking(false);
        co_await get_running_loop().sock_connect(sock, SockAddr::unix_path(path));
        auto [reader, writer] = co_await open_unix_connection(std::move(sock));
        writer.write("unix\n");
        EXPECT_EQ(co_await wait_for(reader.readline(), 10.0), "unix\n");
        writer.close();
        co_await wait_for(writer.wait_closed(), 10.0);
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
}

TEST(StreamSockArgument, UnixFormsRejectATcpSocket) {
    auto main = []() -> Coro<void> {
        auto e1 = co_await error_of(open_unix_connection(Socket(AF_INET, SOCK_STREAM)));
        auto v1 = as<std::invalid_argument>(e1);
        EXPECT_TRUE(v1 && contains(v1->what(), "A UNIX Domain Stream Socket was expected"));
        auto e2 = co_await error_of(start_unix_server(echo_line, Socket(AF_INET, SOCK_STREAM)));
        auto v2 = as<std::invalid_argument>(e2);
        EXPECT_TRUE(v2 && contains(v2->what(), "A UNIX Domain Stream Socket was expected"));
    };
    run(main());
}

TEST(StreamSockArgument, StartUnixServerOnABoundSocketServesAndRemovesItsFileAtClose) {
    auto main = []() -> Coro<void> {
        TempDir dir;
        const std::string path = dir.file("bound");
        Socket listening(AF_UNIX, SOCK_STREAM);
        listening.bind(SockAddr::unix_path(path));
        Server server = co_await start_unix_server(echo_line, std::move(listening));
        auto [reader, writer] = co_await open_unix_connection(path);
        writer.write("x\n");
        EXPECT_EQ(co_await wait_for(reader.readline(), 10.0), "x\n");
        writer.close();
        co_await wait_for(writer.wait_closed(), 10.0);
        EXPECT_TRUE(std::filesystem::exists(path));
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
        EXPECT_FALSE(std::filesystem::exists(path));
    };
    run(main());
}

// ---- connections whose every handle is dropped ---------------------------------------------------
// Python 3.13 closes a connection when its StreamWriter is collected; here, when the last
// StreamReader/StreamWriter handle of an open connection is gone.

namespace {
/// Says "bye" and returns without writer.close().
Coro<void> bye_without_close(StreamReader, StreamWriter w) {
    w.write("bye");
    co_return;
}

/// Reads until EOF (bounded).
Coro<std::string> read_to_eof(StreamReader r) { co_return co_await wait_for(r.read(), 10.0); }

/// A server with `handler` and one client connection to it.
struct Served {
    Server server;
    StreamReader reader;
    StreamWriter writer;
};
Coro<Served> serve_one(ClientConnectedCallback handler) {
    Served s;
    s.server = co_await start_server(std::move(handler), "127.0.0.1", 0);
    auto [r, w] = co_await open_connection("127.0.0.1", s.server.sockets().at(0).getsockname().port());
    s.reader = r;
    s.writer = w;
    co_return s;
}
}  // namespace

TEST(StreamUnclosed, AHandlerThatReturnsWithoutCloseClosesItsConnection) {
    auto main = []() -> Coro<void> {
        co_await settle();
        const std::size_t baseline = asyncio_test::open_fd_count();
        {
            Served s = co_await serve_one(bye_without_close);
            EXPECT_EQ(co_await read_to_eof(s.reader), "bye");  // what was written, then EOF
            s.writer.close();
            co_await wait_for(s.writer.wait_closed(), 10.0);
            s.server.close();
            co_await wait_for(s.server.wait_closed(), 10.0);  // no connection left behind
        }
        EXPECT_EQ(co_await asyncio_test::fd_count_settles_to(baseline), baseline);
    };
    run(main());
}

TEST(StreamUnclosed, DebugModeReportsTheUnclosedConnection) {
    asyncio_test::LogCapture log;
    auto main = []() -> Coro<void> {
        Served s = co_await serve_one(bye_without_close);
        EXPECT_EQ(co_await read_to_eof(s.reader), "bye");
        s.writer.close();
        s.server.close();
        co_await wait_for(s.server.wait_closed(), 10.0);
    };
    run(main(), RunOptions{.debug = true});
    EXPECT_TRUE(log.contains("unclosed <StreamWriter peername=127.0.0.1:")) << log.joined();
    EXPECT_TRUE(log.contains("call writer.close()")) << log.joined();
}

TEST(StreamUnclosed, AClosedConnectionIsNotReported) {
    asyncio_test::LogCapture log;
    auto main = []() -> Coro<void> {
        Served s = co_await serve_one(echo_line);
        s.writer.write("hi\n");
        EXPECT_EQ(co_await read_to_eof(s.reader), "hi\n");
        s.writer.close();
        co_await wait_for(s.writer.wait_closed(), 10.0);
        s.server.close();
        co_await wait_for(s.server.wait_closed(), 10.0);
    };
    run(main(), RunOptions{.debug = true});
    EXPECT_FALSE(log.contains("unclosed")) << log.joined();
}

TEST(StreamUnclosed, AHandleKeptByTheHandlerKeepsTheConnectionOpen) {
    auto main = []() -> Coro<void> {
        auto accepted = std::make_shared<Accepted>();
        Served s = co_await serve_one(stash_into(accepted));  // the handler returns at once
        auto [sr, sw] = co_await wait_for(accepted->get(), 10.0);
        co_await settle();
        sw.write("still here");
        EXPECT_EQ(co_await wait_for(s.reader.readexactly(10), 10.0), "still here");
        // Only the reader handle is left: still open.
        sw = StreamWriter();
        co_await settle();
        EXPECT_FALSE(s.reader.at_eof());
        s.writer.write("ping\n");
        EXPECT_EQ(co_await wait_for(sr.readline(), 10.0), "ping\n");
        // The last handle goes: closed.
        sr = StreamReader();
        EXPECT_EQ(co_await read_to_eof(s.reader), "");
        s.writer.close();
        s.server.close();
        co_await wait_for(s.server.wait_closed(), 10.0);
    };
    run(main());
}

TEST(StreamUnclosed, ClientHandlesDroppedWithoutCloseCloseTheConnection) {
    auto main = []() -> Coro<void> {
        auto accepted = std::make_shared<Accepted>();
        Server server = co_await start_server(stash_into(accepted), "127.0.0.1", 0);
        const int port = server.sockets().at(0).getsockname().port();
        {
            auto [r, w] = co_await open_connection("127.0.0.1", port);
            w.write("last words");
        }  // both handles dropped, never closed
        auto [sr, sw] = co_await wait_for(accepted->get(), 10.0);
        EXPECT_EQ(co_await read_to_eof(sr), "last words");  // the buffered bytes, then EOF
        sw.close();
        server.close();
        co_await wait_for(server.wait_closed(), 10.0);
    };
    run(main());
}

TEST(StreamUnclosed, HandlesOutlivingTheirLoopAreInert) {
    StreamWriter kept_writer;
    StreamReader kept_reader;
    {
        EventLoop loop;
        auto main = [&]() -> Coro<void> {
            Served s = co_await serve_one(bye_without_close);
            kept_writer = s.writer;
            kept_reader = s.reader;
        };
        loop.run_until_complete(main());
        loop.close();
    }
    EXPECT_TRUE(kept_writer.is_closing());
    kept_writer = StreamWriter();  // the last handles go after the loop: nothing to do, no crash
    kept_reader = StreamReader();
}
