// tests/support/recording_protocol.hpp - the one recording stream protocol of the suites
// (plain sockets, TLS, pipes): it logs every callback, keeps what it received, and lets a
// test wait for a callback or act inside one.
#pragma once

#include <asyncio.hpp>

#include <cstddef>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace asyncio_test {

struct RecordingProtocol : asyncio::Protocol {
    std::shared_ptr<asyncio::Transport> transport;
    /// Every callback in order: "made", "data", "eof", "lost", "pause", "resume".
    std::vector<std::string> events;
    std::string data;  // everything data_received() got
    int made_calls = 0;
    int lost_calls = 0;
    int pause_calls = 0;
    int resume_calls = 0;
    std::exception_ptr lost_exc;
    bool writing_paused = false;
    std::size_t size_at_pause = 0;  // the transport's write buffer size at pause_writing()
    std::size_t size_at_resume = 0;

    // What the protocol does.
    bool keep_open = false;      // what eof_received() returns
    bool echo = false;           // writes back what it receives
    bool pause_on_made = false;  // pauses reading in connection_made
    std::function<void(RecordingProtocol&)> on_made;
    std::function<void(RecordingProtocol&, std::string_view)> on_data;
    std::function<void(RecordingProtocol&)> on_eof;
    std::function<void(RecordingProtocol&)> on_lost;
    std::function<void(RecordingProtocol&)> on_pause;
    std::function<void(RecordingProtocol&)> on_resume;

    // What a test can wait for.
    asyncio::Event changed;  // set by every callback (clear it, then wait)
    asyncio::Event made_ev, eof_ev, lost_ev, paused_ev, resumed_ev;
    asyncio::Event data_ev;  // set once `want` bytes have arrived
    std::size_t want = static_cast<std::size_t>(-1);

    void connection_made(std::shared_ptr<asyncio::Transport> t) override {
        transport = std::move(t);
        ++made_calls;
        record("made");
        if (pause_on_made) transport->pause_reading();
        made_ev.set();
        if (on_made) on_made(*this);
    }
    void data_received(std::string_view d) override {
        record("data");
        data += d;
        if (echo) transport->write(d);
        if (data.size() >= want) data_ev.set();
        if (on_data) on_data(*this, d);
    }
    bool eof_received() override {
        record("eof");
        eof_ev.set();
        if (on_eof) on_eof(*this);
        return keep_open;
    }
    void connection_lost(std::exception_ptr exc) override {
        ++lost_calls;
        lost_exc = exc;
        record("lost");
        lost_ev.set();
        if (on_lost) on_lost(*this);
    }
    void pause_writing() override {
        ++pause_calls;
        writing_paused = true;
        size_at_pause = transport ? transport->get_write_buffer_size() : 0;
        record("pause");
        resumed_ev.clear();
        paused_ev.set();
        if (on_pause) on_pause(*this);
    }
    void resume_writing() override {
        ++resume_calls;
        writing_paused = false;
        size_at_resume = transport ? transport->get_write_buffer_size() : 0;
        record("resume");
        paused_ev.clear();
        resumed_ev.set();
        if (on_resume) on_resume(*this);
    }

    /// The events with runs of the same one collapsed ("data", "data" -> "data").
    std::vector<std::string> collapsed() const {
        std::vector<std::string> out;
        for (const auto& e : events)
            if (out.empty() || out.back() != e) out.push_back(e);
        return out;
    }
    /// collapsed() without the flow-control events: the connection's life alone.
    std::vector<std::string> lifecycle() const {
        std::vector<std::string> out;
        for (const auto& e : collapsed())
            if (e != "pause" && e != "resume") out.push_back(e);
        return out;
    }

private:
    void record(const char* event) {
        events.emplace_back(event);
        changed.set();
    }
};

/// A list of event names, for comparing with events / collapsed().
inline std::vector<std::string> seq(std::initializer_list<const char*> names) { return {names.begin(), names.end()}; }

inline asyncio::Coro<void> until_loop(asyncio::Event& changed, std::function<bool()> pred) {
    while (!pred()) {
        changed.clear();
        co_await changed.wait();
    }
}

/// Waits (10 s at most, so a bug fails instead of hanging) until `pred()` holds; `changed`
/// is set whenever what pred() looks at may have changed.
inline asyncio::Coro<void> until(asyncio::Event& changed, std::function<bool()> pred) {
    co_await asyncio::wait_for(until_loop(changed, std::move(pred)), 10.0);
}

/// Waits until the protocol's connection_lost ran.
inline asyncio::Coro<void> until_lost(RecordingProtocol& p) {
    co_await until(p.changed, [&p] { return p.lost_calls > 0; });
}

}  // namespace asyncio_test
