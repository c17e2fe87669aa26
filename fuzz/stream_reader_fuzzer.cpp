// fuzz/stream_reader_fuzzer.cpp - StreamReader framing against a reference model.
//
// The input is a small program: a limit, a list of feed events (data chunks of any size,
// empty ones included, EOF, set_exception) and a list of operations (readline, readuntil with
// one separator or several, readexactly(n), read(n), read(-1), "feed the next n events now",
// "feed k events per wake-up"). Each read runs as a task on a loop, against a StreamReader not
// attached to a transport: whenever the task is stuck waiting for data, the driver feeds it
// the next k events (EOF once the events run out). The same program runs through a reference
// model - a std::string buffer following Python 3.13's documented semantics
// (Lib/asyncio/streams.py), written from the documentation rather than from our code: the
// match of readuntil is "the shortest prefix of the buffer that ends with any separator",
// found by brute force. After every operation the result (bytes, or the error and its
// fields), the buffered byte count, at_eof() and the number of events consumed must agree;
// any difference aborts with both sides printed.
//
// Input format (the seeds in fuzz/corpus/stream_reader/ come from
// fuzz/make_stream_reader_corpus.py, which writes it):
//   byte 0: limit = 1 + b % 64
//   then commands, each an opcode byte (b % 11) and its operands:
//     0 CHUNK len bytes...  queue a data event (len = one byte, 0..255; truncated at the end)
//     1 EOF                 queue feed_eof()
//     2 EXC                 queue set_exception(FuzzError)
//     3 FEED n              feed the next n % 8 queued events now (between operations)
//     4 BATCH k             from now on, feed 1 + k % 4 events per wake-up
//     5 READLINE
//     6 READUNTIL len sep   one separator (len % 5 bytes: 0 is a ValueError)
//     7 READUNTIL_N count (len sep)...  count % 5 separators (0: ValueError), each as in 6
//     8 READEXACTLY n       n = one byte
//     9 READ n              read(n), n = one byte (0 included)
//    10 READ_ALL            read(-1)
//   Events are queued in input order wherever they appear, so FEED and wake-ups take them
//   in that order. At most 64 operations run.
#include <asyncio/detail/event_loop.hpp>
#include <asyncio/exceptions.hpp>
#include <asyncio/streams.hpp>
#include <asyncio/tasks.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace asyncio;

/// The exception of EXC events, so the error we set is told apart from any other.
struct FuzzError : std::runtime_error {
    FuzzError() : std::runtime_error("fuzz error") {}
};

// ---- the program ---------------------------------------------------------------------------
struct Event {
    enum Kind { data, eof, exc } kind;
    std::string bytes;
};

struct Op {
    enum Kind { feed, batch, readline, readuntil, readuntil_n, readexactly, read, read_all } kind;
    std::size_t n = 0;
    std::vector<std::string> seps;
};

struct Program {
    std::size_t limit = 1;
    std::vector<Event> events;
    std::vector<Op> ops;
};

class Input {
public:
    Input(const std::uint8_t* p, std::size_t n) : p_(p), n_(n) {}
    bool empty() const { return n_ == 0; }
    std::uint8_t byte() {
        if (n_ == 0) return 0;
        --n_;
        return *p_++;
    }
    std::string bytes(std::size_t k) {
        k = std::min(k, n_);
        std::string s(reinterpret_cast<const char*>(p_), k);
        p_ += k;
        n_ -= k;
        return s;
    }

private:
    const std::uint8_t* p_;
    std::size_t n_;
};

Program parse(const std::uint8_t* data, std::size_t size) {
    Input in(data, size);
    Program prog;
    prog.limit = 1 + in.byte() % 64;
    while (!in.empty() && prog.ops.size() < 64) {
        switch (in.byte() % 11) {
            case 0: {
                std::size_t len = in.byte();
                prog.events.push_back({Event::data, in.bytes(len)});
                break;
            }
            case 1:
                prog.events.push_back({Event::eof, {}});
                break;
            case 2:
                prog.events.push_back({Event::exc, {}});
                break;
            case 3:
                prog.ops.push_back({Op::feed, in.byte() % 8u, {}});
                break;
            case 4:
                prog.ops.push_back({Op::batch, 1 + in.byte() % 4u, {}});
                break;
            case 5:
                prog.ops.push_back({Op::readline, 0, {}});
                break;
            case 6: {
                std::size_t len = in.byte() % 5;
                prog.ops.push_back({Op::readuntil, 0, {in.bytes(len)}});
                break;
            }
            case 7: {
                Op op{Op::readuntil_n, 0, {}};
                std::size_t count = in.byte() % 5;
                for (std::size_t i = 0; i < count; ++i) {
                    std::size_t len = in.byte() % 5;
                    op.seps.push_back(in.bytes(len));
                }
                prog.ops.push_back(std::move(op));
                break;
            }
            case 8:
                prog.ops.push_back({Op::readexactly, in.byte(), {}});
                break;
            case 9:
                prog.ops.push_back({Op::read, in.byte(), {}});
                break;
            case 10:
                prog.ops.push_back({Op::read_all, 0, {}});
                break;
        }
    }
    return prog;
}

// ---- outcomes ------------------------------------------------------------------------------
struct Outcome {
    enum Kind { ok, value_error, limit_overrun, incomplete, fuzz_error, other } kind = ok;
    std::string bytes;  // ok: the data; incomplete: .partial; errors: the message
    std::size_t consumed = 0;
    std::ptrdiff_t expected = 0;

    bool operator==(const Outcome&) const = default;
};

std::string quoted(std::string_view s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            out += static_cast<char>(c);
        } else {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        }
    }
    return out + "\"";
}

std::string describe(const Outcome& o) {
    static const char* const names[] = {"ok",        "ValueError",     "LimitOverrunError", "IncompleteReadError",
                                        "FuzzError", "other exception"};
    std::string s = std::string(names[o.kind]) + " " + quoted(o.bytes);
    if (o.kind == Outcome::limit_overrun) s += " consumed=" + std::to_string(o.consumed);
    if (o.kind == Outcome::incomplete) s += " expected=" + std::to_string(o.expected);
    return s;
}

/// The outcome of the exception in flight (called from a catch block).
Outcome current_exception_outcome() {
    try {
        throw;
    } catch (const FuzzError& e) {
        return {Outcome::fuzz_error, e.what()};
    } catch (const LimitOverrunError& e) {
        return {Outcome::limit_overrun, e.what(), e.consumed};
    } catch (const IncompleteReadError& e) {
        return {Outcome::incomplete, e.partial, 0, e.expected};
    } catch (const std::invalid_argument& e) {
        return {Outcome::value_error, e.what()};
    } catch (const std::exception& e) {
        return {Outcome::other, e.what()};
    }
}

// ---- the reference model -------------------------------------------------------------------
/// The events in input order, taken from the front (one cursor per side).
struct Schedule {
    const std::vector<Event>* events;
    std::size_t next = 0;
    std::size_t per_wake = 1;
    bool exhausted() const { return next == events->size(); }
};

/// Python 3.13's StreamReader over a std::string, synchronous: where Python awaits
/// _wait_for_data(), the model takes the next wake-up's events from its schedule.
class Model {
public:
    Model(std::size_t limit, const std::vector<Event>& events) : limit_(limit), sched_{&events} {}

    Schedule& schedule() { return sched_; }
    std::size_t buffered() const { return buf_.size(); }
    bool at_eof() const { return eof_ && buf_.empty(); }

    /// One event, as the driver feeds it (a data event after EOF: feed_data raises, and
    /// nothing changes).
    void apply(const Event& e) {
        switch (e.kind) {
            case Event::data:
                if (eof_ || e.bytes.empty()) return;
                buf_ += e.bytes;
                wake(false);
                return;
            case Event::eof:
                eof_ = true;
                wake(false);
                return;
            case Event::exc:
                exc_ = true;
                wake(true);
                return;
        }
    }
    void feed(std::size_t n) {
        for (std::size_t i = 0; i < n && !sched_.exhausted(); ++i) apply((*sched_.events)[sched_.next++]);
    }

    Outcome run(const Op& op) {
        try {
            return {Outcome::ok, perform(op)};
        } catch (...) {
            return current_exception_outcome();
        }
    }

private:
    std::string perform(const Op& op) {
        switch (op.kind) {
            case Op::readline:
                return readline();
            case Op::readuntil:
            case Op::readuntil_n:
                return readuntil(op.seps);
            case Op::readexactly:
                return readexactly(op.n);
            case Op::read:
                return read(static_cast<std::ptrdiff_t>(op.n));
            case Op::read_all:
                return read(-1);
            default:
                return {};
        }
    }

    void wake(bool with_exception) {
        if (!waiting_) return;
        waiting_ = false;
        woken_ = with_exception ? 2 : 1;
    }

    /// _wait_for_data: returns when woken by data or EOF, raises when woken by the exception.
    void wait_for_data() {
        waiting_ = true;
        woken_ = 0;
        while (woken_ == 0) {
            if (sched_.exhausted())
                apply({Event::eof, {}});  // the driver's EOF once the events run out
            else
                feed(sched_.per_wake);
        }
        if (woken_ == 2) throw FuzzError();
    }

    std::string take(std::size_t n) {
        std::string out = buf_.substr(0, n);
        buf_.erase(0, n);
        return out;
    }

    // "Read data from the stream until separator is found. [...] If an EOF occurs and the
    // complete separator is still not found, an IncompleteReadError exception will be
    // raised, and the internal buffer will be reset. [...] If the data cannot be read because
    // of over limit, a LimitOverrunError exception will be raised, and the data will be left
    // in the internal buffer. [...] the return value will be the shortest possible that has
    // any separator as the suffix. For the purposes of LimitOverrunError, the shortest
    // possible separator is considered to be the one that matched."
    std::string readuntil(const std::vector<std::string>& seps) {
        if (seps.empty()) throw std::invalid_argument("Separator should contain at least one element");
        std::size_t min_len = seps[0].size();
        std::size_t max_len = 0;
        for (const std::string& s : seps) {
            min_len = std::min(min_len, s.size());
            max_len = std::max(max_len, s.size());
        }
        if (min_len == 0) throw std::invalid_argument("Separator should be at least one-byte string");
        if (exc_) throw FuzzError();
        for (;;) {
            // The shortest prefix ending with a separator; among the separators ending there,
            // the shortest one is the match.
            for (std::size_t end = 1; end <= buf_.size(); ++end) {
                std::size_t best = 0;  // length of the shortest separator ending at `end`
                for (const std::string& s : seps)
                    if (s.size() <= end && buf_.compare(end - s.size(), s.size(), s) == 0 &&
                        (best == 0 || s.size() < best))
                        best = s.size();
                if (best == 0) continue;
                const std::size_t start = end - best;
                if (start > limit_)
                    throw LimitOverrunError("Separator is found, but chunk is longer than limit", start);
                return take(end);
            }
            // No separator: what cannot hold the start of one (all but the last
            // max_len - 1 bytes) is over the limit.
            if (buf_.size() + 1 > max_len && buf_.size() + 1 - max_len > limit_)
                throw LimitOverrunError("Separator is not found, and chunk exceed the limit",
                                        buf_.size() + 1 - max_len);
            if (eof_) throw IncompleteReadError(take(buf_.size()), -1);
            wait_for_data();
        }
    }

    // "If limit is reached, ValueError will be raised. In that case, if newline was found,
    // complete line including newline will be removed from internal buffer. Else, internal
    // buffer will be cleared."
    std::string readline() {
        try {
            return readuntil({"\n"});
        } catch (const IncompleteReadError& e) {
            return e.partial;
        } catch (const LimitOverrunError& e) {
            if (e.consumed < buf_.size() && buf_[e.consumed] == '\n')
                buf_.erase(0, e.consumed + 1);
            else
                buf_.clear();
            throw std::invalid_argument(e.what());
        }
    }

    std::string readexactly(std::size_t n) {
        if (exc_) throw FuzzError();
        if (n == 0) return {};
        while (buf_.size() < n) {
            if (eof_) throw IncompleteReadError(take(buf_.size()), static_cast<std::ptrdiff_t>(n));
            wait_for_data();
        }
        return take(n);
    }

    std::string read(std::ptrdiff_t n) {
        if (exc_) throw FuzzError();
        if (n == 0) return {};
        if (n < 0) {
            // Python: read(self._limit) until it returns b''.
            std::string all;
            for (;;) {
                std::string block = read(static_cast<std::ptrdiff_t>(limit_));
                if (block.empty()) return all;
                all += block;
            }
        }
        if (buf_.empty() && !eof_) wait_for_data();
        return take(static_cast<std::size_t>(n));
    }

    std::string buf_;
    std::size_t limit_;
    bool eof_ = false;
    bool exc_ = false;
    bool waiting_ = false;
    int woken_ = 0;  // 1: by data or EOF, 2: by the exception
    Schedule sched_;
};

// ---- the driver ----------------------------------------------------------------------------
[[noreturn]] void mismatch(const Program& prog, std::size_t op_index, const std::string& what) {
    std::fprintf(stderr, "stream_reader_fuzzer: MISMATCH at operation %zu (limit %zu): %s\n", op_index, prog.limit,
                 what.c_str());
    std::abort();
}

/// Feeds one event to the reader as a connection would.
void apply(StreamReader& r, const Event& e, bool& eof) {
    switch (e.kind) {
        case Event::data:
            if (eof) {
                try {
                    r.feed_data(e.bytes);
                } catch (const std::logic_error&) {
                    return;  // feed_data after feed_eof (Python: an assertion)
                }
                std::fprintf(stderr, "feed_data after feed_eof did not raise\n");
                std::abort();
            }
            r.feed_data(e.bytes);
            return;
        case Event::eof:
            eof = true;
            r.feed_eof();
            return;
        case Event::exc:
            r.set_exception(std::make_exception_ptr(FuzzError()));
            return;
    }
}

Coro<std::string> start(StreamReader& r, const Op& op) {
    switch (op.kind) {
        case Op::readline:
            return r.readline();
        case Op::readuntil:
            return r.readuntil(op.seps[0]);
        case Op::readuntil_n:
            return r.readuntil(op.seps);
        case Op::readexactly:
            return r.readexactly(op.n);
        case Op::read:
            return r.read(static_cast<std::ptrdiff_t>(op.n));
        default:
            return r.read(-1);
    }
}

Coro<void> drive(const Program& prog) {
    StreamReader r(prog.limit);
    Model model(prog.limit, prog.events);
    Schedule sched{&prog.events};
    bool eof = false;
    for (std::size_t i = 0; i < prog.ops.size(); ++i) {
        const Op& op = prog.ops[i];
        if (op.kind == Op::feed) {
            model.feed(op.n);
            for (std::size_t k = 0; k < op.n && !sched.exhausted(); ++k) apply(r, prog.events[sched.next++], eof);
        } else if (op.kind == Op::batch) {
            model.schedule().per_wake = op.n;
            sched.per_wake = op.n;
        } else {
            const Outcome expected = model.run(op);
            Outcome got;
            Task<std::string> task = create_task(start(r, op));
            // Let the task run until it is done or stuck waiting for data (no timers here,
            // so a few loop iterations tell), then feed it the next wake-up's events.
            for (std::size_t wakeups = 0;; ++wakeups) {
                for (int spin = 0; spin < 2 && !task.done(); ++spin) co_await sleep(0);
                if (task.done()) break;
                if (eof || wakeups > prog.events.size() + 2)
                    mismatch(prog, i, "the read hangs (model: " + describe(expected) + ")");
                if (sched.exhausted()) {
                    eof = true;
                    r.feed_eof();
                } else {
                    for (std::size_t k = 0; k < sched.per_wake && !sched.exhausted(); ++k)
                        apply(r, prog.events[sched.next++], eof);
                }
            }
            try {
                got = {Outcome::ok, co_await task};
            } catch (...) {
                got = current_exception_outcome();
            }
            if (!(got == expected)) mismatch(prog, i, "got " + describe(got) + ", model " + describe(expected));
        }
        if (sched.next != model.schedule().next)
            mismatch(
                prog, i,
                "events consumed: " + std::to_string(sched.next) + ", model " + std::to_string(model.schedule().next));
        if (r.buffered() != model.buffered())
            mismatch(prog, i,
                     "buffered: " + std::to_string(r.buffered()) + ", model " + std::to_string(model.buffered()));
        if (r.at_eof() != model.at_eof()) mismatch(prog, i, "at_eof differs");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static EventLoop loop(LoopOptions{.virtual_clock = true});
    const Program prog = parse(data, size);
    loop.run_until_complete(drive(prog));
    return 0;
}
