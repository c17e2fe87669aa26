// src/net/streams.cpp - StreamReader, StreamWriter, StreamReaderProtocol and the stream
// functions: Python's asyncio/streams.py, line by line where it matters (the limit rules of
// readuntil/readline, flow control, pause/resume of the transport).
#include <asyncio/streams.hpp>
#include <asyncio/exceptions.hpp>
#include <asyncio/ssl.hpp>
#include <asyncio/tasks.hpp>

#include "tls_seam.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <span>
#include <cerrno>
#include <stdexcept>
#include <system_error>

#include <sys/mman.h>

namespace asyncio {

namespace detail {

namespace {
/// What read() to EOF collects grows to the whole stream; past this size its block is
/// pre-faulted in bulk (below: see append_prefaulted).
constexpr std::size_t prefault_min = 8 * 1024 * 1024;
/// How far ahead of the data the block is pre-faulted at a time.
constexpr std::size_t prefault_step = 4 * 1024 * 1024;
std::atomic<bool> prefault_unsupported{false};

/// Asks the kernel to fault in [begin, end) for writing at once (MADV_POPULATE_WRITE, Linux
/// 5.14): one call instead of a page fault per 4 KiB page. Only a hint - the contents are never
/// changed, and a kernel without it (EINVAL) is not asked again.
void prefault(char* begin, char* end) noexcept {
#ifdef MADV_POPULATE_WRITE
    if (prefault_unsupported.load(std::memory_order_relaxed)) return;
    constexpr std::uintptr_t page = 4096;
    // Whole pages inside the range only: the page around `begin` may hold someone else's block.
    auto b = (reinterpret_cast<std::uintptr_t>(begin) + page - 1) & ~(page - 1);
    auto e = reinterpret_cast<std::uintptr_t>(end) & ~(page - 1);
    if (e <= b) return;
    if (::madvise(reinterpret_cast<void*>(b), e - b, MADV_POPULATE_WRITE) < 0 && errno == EINVAL)
        prefault_unsupported.store(true, std::memory_order_relaxed);
#else
    (void)begin;
    (void)end;
#endif
}

/// out += data, for read() to EOF. Past prefault_min the string's block is pre-faulted just
/// before it is written - the whole copy into a grown block, then the tail prefault_step at a
/// time - instead of taking a page fault per page (the copy into a grown block and the kernel's
/// zeroing are the same; the fault entries are what goes). `faulted`: how much of out's block
/// is known to be faulted in. Never beyond what the string owns, so the memory in use does not
/// change. 1 GiB through `cat` in C (bench/subprocess/floor/communicate_floor.c, copygrow
/// without and with populate): 2.1-2.2 s -> 1.8 s.
void append_prefaulted(std::string& out, std::string_view data, std::size_t& faulted) {
    const std::size_t need = out.size() + data.size();
    if (need > out.capacity()) {
        const std::size_t cap = std::max(need, 2 * out.capacity());
        if (cap < prefault_min) {
            out.reserve(cap);
        } else {
            std::string grown;
            grown.reserve(cap);
            faulted = std::min(need + prefault_step, grown.capacity());
            prefault(grown.data(), grown.data() + faulted);
            grown.append(out);
            out.swap(grown);
        }
    }
    if (out.capacity() >= prefault_min && need > faulted) {
        const std::size_t upto = std::min(need + prefault_step, out.capacity());
        prefault(out.data() + faulted, out.data() + upto);
        faulted = upto;
    }
    out.append(data);
}
}  // namespace

/// The reader's bytes: [begin, end) of an uninitialised heap block (no zero-filling, unlike
/// std::string::resize), so the transport can receive straight into the free tail.
class ByteBuffer {
public:
    std::size_t size() const noexcept { return end_ - begin_; }
    std::size_t capacity() const noexcept { return cap_; }
    std::string_view view() const noexcept { return {data_.get() + begin_, end_ - begin_}; }
    /// Free room after the data, moving the data to the front first when that is cheap. On a
    /// connection that receives large chunks (see note_receive) the block also grows to give
    /// `want` bytes of room, so those chunks are received in place instead of being received
    /// elsewhere and copied in; a connection of small messages keeps a small block (an idle
    /// connection must stay cheap).
    std::span<char> tail(std::size_t want) {
        if (cap_ - end_ < want) {
            if (begin_ > 0 && size() <= cap_ / 4) compact();
            if (cap_ - end_ < want && receives_large_) grow(want);
        }
        return {data_.get() + end_, cap_ - end_};
    }
    /// Room for at least `n` more bytes after the data (moving or growing the block).
    std::span<char> room_for(std::size_t n) {
        if (cap_ - end_ < n) grow(n);
        return {data_.get() + end_, cap_ - end_};
    }
    /// A receive of `n` bytes happened outside the block (it had too little room).
    void note_receive(std::size_t n) noexcept {
        if (n >= large_receive) receives_large_ = true;
    }
    void commit(std::size_t n) noexcept { end_ += n; }
    void append(std::string_view s) {
        if (cap_ - end_ < s.size()) grow(s.size());
        std::memcpy(data_.get() + end_, s.data(), s.size());
        end_ += s.size();
    }
    /// Removes and returns the first n bytes (n <= size()).
    std::string take(std::size_t n, std::size_t retained_capacity) {
        std::string out(data_.get() + begin_, n);
        begin_ += n;
        if (begin_ == end_) {
            // Keep the block for the next data unless it is large: an idle connection must not
            // hold a big buffer.
            begin_ = end_ = 0;
            if (cap_ > retained_capacity) release();
        }
        return out;
    }
    /// Appends everything to `out` and empties the buffer (same retention rule as take()).
    /// `faulted`: see append_prefaulted.
    void take_all_into(std::string& out, std::size_t& faulted, std::size_t retained_capacity) {
        append_prefaulted(out, view(), faulted);
        begin_ = end_ = 0;
        if (cap_ > retained_capacity) release();
    }
    void clear() noexcept { begin_ = end_ = 0; }

private:
    void compact() noexcept {
        std::memmove(data_.get(), data_.get() + begin_, size());
        end_ -= begin_;
        begin_ = 0;
    }
    void grow(std::size_t more) {
        if (begin_ > 0 && cap_ - size() >= more) {
            compact();
            return;
        }
        std::size_t cap = std::max({cap_ * 2, size() + more, std::size_t(256)});
        std::unique_ptr<char[]> block(new char[cap]);
        if (size()) std::memcpy(block.get(), data_.get() + begin_, size());
        end_ = size();
        begin_ = 0;
        data_ = std::move(block);
        cap_ = cap;
    }
    void release() noexcept {
        data_.reset();
        cap_ = begin_ = end_ = 0;
    }
    /// A receive at least this large makes the connection keep room for direct receives.
    static constexpr std::size_t large_receive = 4096;
    std::unique_ptr<char[]> data_;
    bool receives_large_ = false;
    std::size_t cap_ = 0;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
};

struct StreamReaderState {
    explicit StreamReaderState(std::size_t l) : limit(l) {}
    ByteBuffer buf;
    std::size_t limit;
    bool eof = false;
    bool paused = false;  // transport.pause_reading() done by us
    std::exception_ptr exception;
    std::optional<Future<void>> waiter;
    std::shared_ptr<Transport> transport;

    /// The buffer keeps its block between reads up to this size: a fresh block per read costs
    /// page faults and heap trims, more than the copy (streaming echo: 0.5x -> 1.0x the C
    /// server).
    static constexpr std::size_t retained_capacity = 256 * 1024;
    std::size_t size() const noexcept { return buf.size(); }
    std::string_view view() const noexcept { return buf.view(); }
    std::string take(std::size_t n) { return buf.take(n, retained_capacity); }
    void take_all_into(std::string& out, std::size_t& faulted) { buf.take_all_into(out, faulted, retained_capacity); }
    void clear() noexcept { buf.clear(); }

    /// feed_data's second half: wake the reader, pause the transport above 2 * limit.
    void after_feed();

    void wakeup_waiter() {
        if (waiter) {
            if (!waiter->done()) waiter->set_result();
            waiter.reset();
        }
    }

    void maybe_resume_transport() {
        if (paused && size() <= limit) {
            paused = false;
            if (transport) transport->resume_reading();
        }
    }

    /// Python's _wait_for_data: `co_await s.wait_for_data("read")` suspends until data or EOF
    /// is fed (or the reader gets an exception). An awaiter rather than a coroutine: every
    /// read that finds the buffer empty passes here, and a nested coroutine frame per read
    /// costs more than the rest of the read.
    struct DataWaiter {
        StreamReaderState* s;
        decltype(std::declval<const Future<void>&>().operator co_await()) inner;
        bool await_ready() const noexcept { return inner.await_ready(); }
        void await_suspend(std::coroutine_handle<> h) { inner.await_suspend(h); }
        void await_resume() {
            s->waiter.reset();  // Python: finally: self._waiter = None
            inner.await_resume();
        }
    };
    DataWaiter wait_for_data(const char* func_name) {
        if (waiter)
            throw RuntimeError(std::string(func_name) +
                               "() called while another coroutine is already waiting for incoming data");
        if (paused) {
            paused = false;
            if (transport) transport->resume_reading();
        }
        waiter.emplace();
        return DataWaiter{this, waiter->operator co_await()};
    }
};
}  // namespace detail

// ---- StreamReader --------------------------------------------------------------------------
StreamReader::StreamReader(std::size_t limit) {
    if (limit == 0) throw std::invalid_argument("Limit cannot be <= 0");
    state_ = std::make_shared<detail::StreamReaderState>(limit);
}

std::size_t StreamReader::limit() const noexcept { return state_->limit; }
std::size_t StreamReader::buffered() const noexcept { return state_->size(); }
std::exception_ptr StreamReader::exception() const noexcept { return state_->exception; }
bool StreamReader::at_eof() const noexcept { return state_->eof && state_->size() == 0; }

void StreamReader::set_exception(std::exception_ptr exc) {
    auto& s = *state_;
    s.exception = exc;
    if (s.waiter) {
        if (!s.waiter->done()) s.waiter->set_exception(exc);
        s.waiter.reset();
    }
}

void StreamReader::set_transport(std::shared_ptr<Transport> transport) {
    if (state_->transport) throw std::logic_error("Transport already set");
    state_->transport = std::move(transport);
}

void StreamReader::feed_eof() {
    state_->eof = true;
    state_->wakeup_waiter();
}

void StreamReader::feed_data(std::string_view data) {
    auto& s = *state_;
    if (s.eof) throw std::logic_error("feed_data after feed_eof");
    if (data.empty()) return;
    s.buf.append(data);
    s.after_feed();
}

void detail::StreamReaderState::after_feed() {
    StreamReaderState& s = *this;
    s.wakeup_waiter();
    if (s.transport && !s.paused && s.size() > 2 * s.limit) {
        try {
            s.transport->pause_reading();
            s.paused = true;
        } catch (const std::logic_error&) {
            // The transport cannot pause (Python: NotImplementedError): let the buffer grow,
            // and never ask it again.
            s.transport.reset();
        }
    }
}

Coro<std::string> StreamReader::read(std::ptrdiff_t n) {
    auto keep = state_;
    auto& s = *keep;
    if (s.exception) std::rethrow_exception(s.exception);
    if (n == 0) co_return std::string();
    if (n < 0) {
        // Everything until EOF. Python reads limit-sized blocks and joins them, so that the
        // transport keeps being resumed; taking the whole buffer at each wake-up does that
        // too, with one copy per byte instead of two.
        // Python's order for each block: the exception, then a wait if the buffer is empty,
        // then EOF ends the read. An exception set after the EOF that woke us (feed_eof then
        // set_exception before the reader runs) is not raised: Python returns the data.
        std::string all;
        std::size_t faulted = 0;
        for (;;) {
            if (s.exception) std::rethrow_exception(s.exception);
            if (s.size() == 0 && !s.eof) co_await s.wait_for_data("read");
            if (s.size() == 0) break;  // EOF (the wait ends only with data or EOF)
            if (s.exception) {
                // Set after the data that woke us: Python's read(limit) takes one block, then
                // the next one raises (the block is lost with the raise; the rest stays).
                s.take(std::min(s.limit, s.size()));
                s.maybe_resume_transport();
                continue;
            }
            s.take_all_into(all, faulted);
            s.maybe_resume_transport();
        }
        co_return all;
    }
    if (s.size() == 0 && !s.eof) co_await s.wait_for_data("read");
    std::string data = s.take(std::min(static_cast<std::size_t>(n), s.size()));
    s.maybe_resume_transport();
    co_return data;
}

Coro<std::string> StreamReader::readexactly(std::size_t n) {
    auto keep = state_;
    auto& s = *keep;
    if (s.exception) std::rethrow_exception(s.exception);
    if (n == 0) co_return std::string();
    while (s.size() < n) {
        if (s.eof) {
            std::string partial = s.take(s.size());
            throw IncompleteReadError(std::move(partial), static_cast<std::ptrdiff_t>(n));
        }
        co_await s.wait_for_data("readexactly");
    }
    std::string data = s.take(n);
    s.maybe_resume_transport();
    co_return data;
}

Coro<std::string> StreamReader::readuntil(std::string separator) {
    std::vector<std::string> seps;
    seps.push_back(std::move(separator));
    co_return co_await readuntil(std::move(seps));
}

Coro<std::string> StreamReader::readuntil(std::vector<std::string> separators) {
    auto keep = state_;
    auto& s = *keep;
    if (separators.empty()) throw std::invalid_argument("Separator should contain at least one element");
    std::sort(separators.begin(), separators.end(), [](const auto& a, const auto& b) { return a.size() < b.size(); });
    const std::size_t min_seplen = separators.front().size();
    const std::size_t max_seplen = separators.back().size();
    if (min_seplen == 0) throw std::invalid_argument("Separator should be at least one-byte string");
    if (s.exception) std::rethrow_exception(s.exception);

    // Python's algorithm: search from `offset`, which only moves forward past data that
    // cannot hold the start of a separator.
    std::size_t offset = 0;
    std::size_t match_start = 0;
    std::size_t match_end = 0;
    for (;;) {
        const std::size_t buflen = s.size();
        if (buflen - std::min(offset, buflen) >= min_seplen) {
            bool found = false;
            std::string_view buf = s.view();
            for (const std::string& sep : separators) {
                std::size_t isep = buf.find(sep, offset);
                if (isep != std::string_view::npos) {
                    std::size_t end = isep + sep.size();
                    if (!found || end < match_end) {
                        found = true;
                        match_end = end;
                        match_start = isep;
                    }
                }
            }
            if (found) break;
            offset = buflen + 1 > max_seplen ? buflen + 1 - max_seplen : 0;
            if (offset > s.limit) throw LimitOverrunError("Separator is not found, and chunk exceed the limit", offset);
        }
        if (s.eof) {
            std::string chunk = s.take(s.size());
            throw IncompleteReadError(std::move(chunk), -1);
        }
        co_await s.wait_for_data("readuntil");
    }
    if (match_start > s.limit)
        throw LimitOverrunError("Separator is found, but chunk is longer than limit", match_start);
    std::string chunk = s.take(match_end);
    s.maybe_resume_transport();
    co_return chunk;
}

Coro<std::string> StreamReader::readline() {
    auto keep = state_;
    auto& s = *keep;
    std::string message;
    try {
        std::string newline = "\n";  // named: GCC 12 (docs/compilers.md)
        co_return co_await readuntil(std::move(newline));
    } catch (const IncompleteReadError& e) {
        co_return e.partial;
    } catch (const LimitOverrunError& e) {
        // Python drops the over-long line (through its separator, if it is there).
        std::string_view buf = s.view();
        if (buf.substr(std::min(e.consumed, buf.size())).starts_with("\n"))
            s.take(e.consumed + 1);
        else
            s.clear();
        s.maybe_resume_transport();
        message = e.what();
    }
    throw std::invalid_argument(message);
}

// ---- the handles of one connection ----------------------------------------------------------
namespace detail {
/// What the StreamReader and StreamWriter handles of one connection share (Python 3.13's
/// StreamWriter.__del__). When the last of them is gone while the connection is open,
/// nothing can read, write or close it any more: it is closed here (what is buffered is still
/// sent), and debug mode says so. Not while the loop closes: the loop releases it then.
struct StreamConnectionGuard {
    std::weak_ptr<Transport> transport;  // the writer's current one (start_tls replaces it)
    EventLoop* loop;                     // alive while the transport is open

    StreamConnectionGuard(std::weak_ptr<Transport> t, EventLoop* l) : transport(std::move(t)), loop(l) {}
    StreamConnectionGuard(const StreamConnectionGuard&) = delete;
    StreamConnectionGuard& operator=(const StreamConnectionGuard&) = delete;
    ~StreamConnectionGuard() {
        std::shared_ptr<Transport> t = transport.lock();
        if (!t || t->is_closing() || loop->is_closed()) return;
        try {
            if (loop->get_debug())
                log_message(
                    "unclosed <StreamWriter peername=" + t->get_extra_info<SockAddr>("peername", {}).to_string() +
                    ">: every StreamReader and StreamWriter handle of this open connection was dropped, so "
                    "it is closed now; call writer.close() when done with a connection");
            t->close();
        } catch (...) {
            // Nothing to report to: a destructor. The transport's own close path logs.
        }
    }
};

struct StreamWriterState {
    std::shared_ptr<Transport> transport;
    std::shared_ptr<StreamReaderProtocol> protocol;
    std::optional<StreamReader> reader;
    std::shared_ptr<StreamConnectionGuard> guard;
};

struct StreamAccess {
    /// A handle of `reader` that keeps `writer`'s connection open while it lives, like the
    /// writer's own handles.
    static StreamReader guarded(const StreamReader& reader, const StreamWriter& writer) {
        StreamReader r = reader;
        r.guard_ = writer.state_->guard;
        return r;
    }
};
}  // namespace detail

// ---- StreamReaderProtocol ------------------------------------------------------------------
namespace detail {
StreamReaderProtocol::StreamReaderProtocol(StreamReader reader, ClientConnectedCallback cb)
    : reader_(std::move(reader)), cb_(std::move(cb)) {}

void StreamReaderProtocol::connection_made(std::shared_ptr<Transport> transport) {
    transport_ = transport;
    reader_.set_transport(transport);
    over_ssl = transport->get_extra_info("sslcontext").has_value();
    if (!cb_) return;
    try {
        start_client_connected_cb(transport);
    } catch (...) {
        // No task serves this connection (the callback raised, or std::bad_alloc): it is
        // closed rather than left open with a client waiting for good, and the error is
        // reported as the loop reports any callback's. (Python leaves it open.)
        transport->abort();
        throw;
    }
}

void StreamReaderProtocol::start_client_connected_cb(const std::shared_ptr<Transport>& transport) {
    StreamWriter writer(transport, shared_from_this(), reader_);
    StreamReader reader = StreamAccess::guarded(reader_, writer);
    EventLoop& loop = get_running_loop();
    Task<void> task = loop.create_task(cb_(std::move(reader), std::move(writer)));
    std::weak_ptr<Transport> weak = transport;
    task.add_done_callback([weak](const Task<void>& t) {
        auto tr = weak.lock();
        if (t.cancelled()) {
            if (tr) tr->close();
            return;
        }
        if (std::exception_ptr exc = const_cast<Task<void>&>(t).exception()) {
            get_running_loop().call_exception_handler({"Unhandled exception in client_connected_cb", exc, {}, {}});
            if (tr) tr->close();
        }
    });
}

void StreamReaderProtocol::connection_lost(std::exception_ptr exc) {
    if (exc)
        reader_.set_exception(exc);
    else
        reader_.feed_eof();
    closed_done_ = true;
    closed_error_ = exc;
    for (auto& w : close_waiters_)
        if (!w.done()) exc ? w.set_exception(exc) : w.set_result();
    close_waiters_.clear();
    // FlowControlMixin.connection_lost
    connection_lost_ = true;
    if (paused_) {
        for (auto& w : drain_waiters_)
            if (!w.done()) exc ? w.set_exception(exc) : w.set_result();
    }
    transport_.reset();  // break the transport <-> protocol cycle
}

void StreamReaderProtocol::data_received(std::string_view data) { reader_.feed_data(data); }

namespace {
/// Receive straight into the reader's buffer when at least this much room is free there.
constexpr std::size_t direct_receive_min = 16 * 1024;
constexpr std::size_t scratch_size = 256 * 1024;
char* scratch_buffer() {
    thread_local std::unique_ptr<char[]> scratch(new char[scratch_size]);
    return scratch.get();
}
}  // namespace

std::span<char> StreamReaderProtocol::get_buffer(std::size_t sizehint) {
    StreamReaderState& s = *reader_.state_;
    if (sizehint > 0 && sizehint < direct_receive_min) {
        // The transport already holds these bytes and says how many (io_uring's multishot
        // receive delivers what the kernel put in its ring): room for exactly them in the
        // reader's buffer - grown as append() would grow it - saves the copy through the
        // scratch buffer, and there is no receive to cut short.
        scratch_ = false;
        return s.buf.room_for(sizehint);
    }
    std::span<char> room = s.buf.tail(direct_receive_min);
    scratch_ = room.size() < direct_receive_min;
    if (scratch_) return {scratch_buffer(), scratch_size};
    return room;
}

void StreamReaderProtocol::buffer_updated(std::size_t nbytes) {
    if (scratch_) {
        reader_.state_->buf.note_receive(nbytes);
        reader_.feed_data(std::string_view(scratch_buffer(), nbytes));
        return;
    }
    StreamReaderState& s = *reader_.state_;
    if (s.eof) throw std::logic_error("feed_data after feed_eof");
    if (nbytes == 0) return;
    s.buf.commit(nbytes);
    s.after_feed();
}

bool StreamReaderProtocol::eof_received() {
    reader_.feed_eof();
    // A TLS transport cannot be half-open; a TCP one stays open for writing.
    return !over_ssl;
}

void StreamReaderProtocol::pause_writing() { paused_ = true; }

void StreamReaderProtocol::resume_writing() {
    paused_ = false;
    for (auto& w : drain_waiters_)
        if (!w.done()) w.set_result();
}

Coro<void> StreamReaderProtocol::drain_helper() {
    if (connection_lost_) throw std::system_error(ECONNRESET, std::generic_category(), "Connection lost");
    if (!paused_) co_return;
    auto keep = shared_from_this();
    Future<void> w;
    drain_waiters_.push_back(w);
    struct Remove {
        StreamReaderProtocol* p;
        Future<void>* w;
        ~Remove() {
            auto& v = p->drain_waiters_;
            v.erase(std::remove_if(v.begin(), v.end(),
                                   [&](const Future<void>& f) { return f.state_ptr() == w->state_ptr(); }),
                    v.end());
        }
    } remove{this, &w};
    co_await w;
}

Coro<void> StreamReaderProtocol::wait_closed() {
    auto keep = shared_from_this();
    if (!closed_done_) {
        Future<void> w;
        close_waiters_.push_back(w);
        co_await w;
        co_return;
    }
    if (closed_error_) std::rethrow_exception(closed_error_);
}
}  // namespace detail

// ---- StreamWriter --------------------------------------------------------------------------

StreamWriter::StreamWriter(std::shared_ptr<Transport> transport, std::shared_ptr<detail::StreamReaderProtocol> protocol,
                           std::optional<StreamReader> reader)
    : state_(std::make_shared<detail::StreamWriterState>(
          detail::StreamWriterState{std::move(transport), std::move(protocol), std::move(reader), nullptr})) {
    if (EventLoop* loop = get_running_loop_or_null(); loop && state_->transport)
        state_->guard = std::make_shared<detail::StreamConnectionGuard>(state_->transport, loop);
}

Transport& StreamWriter::transport() const {
    if (!state_ || !state_->transport) throw InvalidStateError("empty StreamWriter handle");
    return *state_->transport;
}

void StreamWriter::write(std::string_view data) { transport().write(data); }
void StreamWriter::writelines(std::initializer_list<std::string_view> pieces) { transport().writelines(pieces); }
void StreamWriter::writelines(const std::vector<std::string>& pieces) { transport().writelines(pieces); }
void StreamWriter::write_eof() { transport().write_eof(); }
bool StreamWriter::can_write_eof() const { return transport().can_write_eof(); }
void StreamWriter::close() { transport().close(); }
bool StreamWriter::is_closing() const { return transport().is_closing(); }
std::any StreamWriter::get_extra_info(std::string_view name) const { return transport().get_extra_info(name); }

Coro<void> StreamWriter::wait_closed() {
    transport();  // InvalidStateError for an empty handle
    auto p = state_->protocol;
    co_await p->wait_closed();
}

Coro<void> StreamWriter::drain() {
    transport();  // InvalidStateError for an empty handle
    detail::StreamWriterState& st = *state_;
    if (st.reader) {
        if (std::exception_ptr exc = st.reader->exception()) std::rethrow_exception(exc);
    }
    // Nothing to wait for - the transport keeps up, the usual case: return without the
    // helper's coroutine. Nothing was awaited yet, so nothing needs keeping alive.
    if (!st.transport->is_closing() && !st.protocol->drain_must_wait()) co_return;
    auto keep = state_;
    auto t = keep->transport;
    auto p = keep->protocol;
    if (t->is_closing()) {
        // Let connection_lost() run, so its error (or ConnectionResetError) is raised below.
        co_await sleep(0);
    }
    co_await p->drain_helper();
}

Coro<void> StreamWriter::start_tls(ssl::Context context, ConnectionOptions opts) {
    // Python's StreamWriter.start_tls. Python takes the side from the protocol (server side
    // when it has a client_connected_cb); a context is for one side only, so it tells the same.
    transport();  // InvalidStateError for an empty handle
    auto st = state_;
    auto t = st->transport;
    auto p = st->protocol;
    StartTlsOptions o;
    o.server_side = detail::is_server_context(context);
    std::string hostname(opts.server_hostname);
    o.ssl_handshake_timeout = opts.ssl_handshake_timeout;
    o.ssl_shutdown_timeout = opts.ssl_shutdown_timeout;
    co_await drain();
    o.server_hostname = hostname;
    std::shared_ptr<Transport> new_transport = co_await get_running_loop().start_tls(t, p, context, o);
    st->transport = new_transport;
    if (st->guard) st->guard->transport = new_transport;
    // Python's StreamReaderProtocol._replace_transport.
    p->over_ssl = new_transport->get_extra_info("sslcontext").has_value();
}

// ---- the stream functions ------------------------------------------------------------------
namespace {
/// What open_connection and its variants share: a reader of `limit`, its protocol, and a
/// writer around the transport that `connect(factory)` makes with the loop.
template <class Connect>
Coro<std::pair<StreamReader, StreamWriter>> open_streams(std::size_t limit, Connect connect) {
    StreamReader reader(limit);
    auto protocol = std::make_shared<detail::StreamReaderProtocol>(reader);
    // Named, not a temporary: GCC 12 destroys a capturing lambda temporary in a co_await
    // expression twice (docs/compilers.md).
    auto factory = [protocol] { return protocol; };
    auto [transport, p] = co_await connect(get_running_loop(), std::move(factory));
    StreamWriter writer(transport, protocol, reader);
    StreamReader handle = detail::StreamAccess::guarded(reader, writer);
    co_return std::pair<StreamReader, StreamWriter>(std::move(handle), std::move(writer));
}

/// What start_server and its variants share: one StreamReaderProtocol (and a task running
/// the callback) per connection of the server that `serve(loop, factory)` makes.
template <class Serve>
Coro<Server> serve_streams(ClientConnectedCallback cb, std::size_t limit, const char* what, Serve serve) {
    if (!cb) throw std::invalid_argument(std::string(what) + ": client_connected_cb is empty");
    auto factory = [cb = std::move(cb), limit] {
        return std::make_shared<detail::StreamReaderProtocol>(StreamReader(limit), cb);
    };
    co_return co_await serve(get_running_loop(), std::move(factory));
}
}  // namespace

// Each takes its own reference to a TLS context when called (src/net/tls_seam.hpp): the
// connect/serve function keeps it until the loop's call has taken its own.
Coro<std::pair<StreamReader, StreamWriter>> open_connection(std::string host, int port, ConnectionOptions opts,
                                                            std::size_t limit) {
    detail::HeldContext held = detail::hold_context(opts.ssl);
    auto connect = [host = std::move(host), port, opts, held = std::move(held)](EventLoop& loop, auto factory) {
        return loop.create_connection(std::move(factory), host, port, opts);
    };
    return open_streams(limit, std::move(connect));
}

Coro<std::pair<StreamReader, StreamWriter>> open_connection(Socket sock, ConnectionOptions opts, std::size_t limit) {
    detail::HeldContext held = detail::hold_context(opts.ssl);
    auto connect = [sock = std::move(sock), opts, held = std::move(held)](EventLoop& loop, auto factory) mutable {
        return loop.create_connection(std::move(factory), std::move(sock), opts);
    };
    return open_streams(limit, std::move(connect));
}

Coro<std::pair<StreamReader, StreamWriter>> open_unix_connection(std::string path, ConnectionOptions opts,
                                                                 std::size_t limit) {
    detail::HeldContext held = detail::hold_context(opts.ssl);
    auto connect = [path = std::move(path), opts, held = std::move(held)](EventLoop& loop, auto factory) {
        return loop.create_unix_connection(std::move(factory), path, opts);
    };
    return open_streams(limit, std::move(connect));
}

Coro<std::pair<StreamReader, StreamWriter>> open_unix_connection(Socket sock, ConnectionOptions opts,
                                                                 std::size_t limit) {
    detail::HeldContext held = detail::hold_context(opts.ssl);
    auto connect = [sock = std::move(sock), opts, held = std::move(held)](EventLoop& loop, auto factory) mutable {
        return loop.create_unix_connection(std::move(factory), std::move(sock), opts);
    };
    return open_streams(limit, std::move(connect));
}

Coro<Server> start_server(ClientConnectedCallback client_connected_cb, std::string host, int port, ServerOptions opts,
                          std::size_t limit) {
    detail::HeldContext held = detail::hold_context(opts.ssl);
    auto serve = [host = std::move(host), port, opts, held = std::move(held)](EventLoop& loop, auto factory) {
        return loop.create_server(std::move(factory), host, port, opts);
    };
    return serve_streams(std::move(client_connected_cb), limit, "start_server", std::move(serve));
}

Coro<Server> start_server(ClientConnectedCallback client_connected_cb, Socket sock, ServerOptions opts,
                          std::size_t limit) {
    detail::HeldContext held = detail::hold_context(opts.ssl);
    auto serve = [sock = std::move(sock), opts, held = std::move(held)](EventLoop& loop, auto factory) mutable {
        return loop.create_server(std::move(factory), std::move(sock), opts);
    };
    return serve_streams(std::move(client_connected_cb), limit, "start_server", std::move(serve));
}

Coro<Server> start_unix_server(ClientConnectedCallback client_connected_cb, std::string path, ServerOptions opts,
                               std::size_t limit) {
    detail::HeldContext held = detail::hold_context(opts.ssl);
    auto serve = [path = std::move(path), opts, held = std::move(held)](EventLoop& loop, auto factory) {
        return loop.create_unix_server(std::move(factory), path, opts);
    };
    return serve_streams(std::move(client_connected_cb), limit, "start_unix_server", std::move(serve));
}

Coro<Server> start_unix_server(ClientConnectedCallback client_connected_cb, Socket sock, ServerOptions opts,
                               std::size_t limit) {
    detail::HeldContext held = detail::hold_context(opts.ssl);
    auto serve = [sock = std::move(sock), opts, held = std::move(held)](EventLoop& loop, auto factory) mutable {
        return loop.create_unix_server(std::move(factory), std::move(sock), opts);
    };
    return serve_streams(std::move(client_connected_cb), limit, "start_unix_server", std::move(serve));
}

}  // namespace asyncio
