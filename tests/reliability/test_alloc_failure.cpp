// tests/reliability/test_alloc_failure.cpp - the allocation-failure sweep of issue 15.
//
// Each scenario (a task program on the virtual clock; a network program of stream and
// Protocol servers, clients, a datagram echo and sock_* calls, on epoll and io_uring) first
// runs un-armed, counting its allocations N (frame pool + operator new, one counter:
// asyncio/detail/alloc_faults.hpp, tests/support/alloc_fault_new.cpp). Then, for every n in
// 1..N, a forked child runs it with the n-th allocation failing (std::bad_alloc). Accepted:
// the scenario completes with the right result, or std::bad_alloc reaches the caller (alone,
// or inside an ExceptionGroup with the scenario's own planned errors), and whatever the
// loops' exception handlers receive is std::bad_alloc. Anything else fails the sweep, with n:
// a crash (std::terminate included) or hang (alarm), another exception or a wrong result, an
// fd left open, memory not given back (what the thread allocated while armed minus what it
// freed; under LSan also a leak check), or the same thread unable to run the scenario again
// un-armed right after.
//
// ASYNCIO_ALLOC_SWEEP_STRIDE=k sweeps every k-th n (default: every n, also under the
// sanitizers); ASYNCIO_ALLOC_SWEEP_ONLY=n runs that n alone (with its report printed), to
// reproduce a failure.
#include <gtest/gtest.h>

#include <asyncio/detail/alloc_faults.hpp>

#include "support.hpp"

#include "backend/faults.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <string>
#include <vector>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SWEEP_UNDER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SWEEP_UNDER_ASAN 1
#endif
#ifdef SWEEP_UNDER_ASAN
#include <sanitizer/lsan_interface.h>
#endif

using namespace asyncio;
namespace af = asyncio::detail::alloc_faults;

namespace {

/// The scenario saw a wrong result: always a bug.
struct WrongResult : std::runtime_error {
    using std::runtime_error::runtime_error;
};
/// The scenario's own planned failure (a TaskGroup child that raises on purpose).
struct Planned : std::runtime_error {
    using std::runtime_error::runtime_error;
};
/// A client saw its connection end early (EOF or a reset): acceptable only when a server-side
/// allocation failure was reported to the loop's exception handler (Python's behaviour: the
/// server's handler fails, the failure is reported, the connection is closed).
struct PeerGone : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void check(bool ok, const char* what) {
    if (!ok) throw WrongResult(what);
}

/// Whether every leaf of `e` (ExceptionGroups expanded) is std::bad_alloc or one of the
/// `also` kinds, with at least one std::bad_alloc.
enum Also : unsigned { none = 0, planned = 1, peer_gone = 2 };
bool leaves_ok(const std::exception_ptr& e, unsigned also, bool& saw_bad_alloc) {
    try {
        std::rethrow_exception(e);
    } catch (const std::bad_alloc&) {
        saw_bad_alloc = true;
        return true;
    } catch (const ExceptionGroup& g) {
        if (g.exceptions().empty()) return false;
        for (const auto& x : g.exceptions())
            if (!leaves_ok(x, also, saw_bad_alloc)) return false;
        return true;
    } catch (const Planned&) {
        return (also & planned) != 0;
    } catch (const PeerGone&) {
        return (also & peer_gone) != 0;
    } catch (...) {
        return false;
    }
}
bool is_allocation_failure(const std::exception_ptr& e, unsigned also = none, bool reported = false) {
    bool saw = reported;
    return e && leaves_ok(e, also, saw) && saw;
}

/// What the scenario's loops passed to their exception handler.
struct Reports {
    int bad_alloc = 0;                    ///< contexts holding std::bad_alloc
    std::vector<std::string> unexpected;  ///< any other context
};
Reports* reports = nullptr;

void install_handler(EventLoop& loop) {
    loop.set_exception_handler([](EventLoop&, const ExceptionContext& c) {
        if (!reports) return;
        if (is_allocation_failure(c.exception)) {
            ++reports->bad_alloc;
            return;
        }
        std::string what = c.message;
        if (c.exception) what += ": " + describe_exception(c.exception);
        reports->unexpected.push_back(std::move(what));
    });
}

// ---- the task scenario ------------------------------------------------------------------------

Coro<> produce(Queue<int>& q, int count) {
    for (int i = 1; i <= count; ++i) co_await q.put(i);
}
Coro<int> consume(Queue<int>& q, int count) {
    int sum = 0;
    for (int i = 0; i < count; ++i) sum += co_await q.get();
    co_return sum;
}
Coro<> add_under_lock(Lock& lock, int& counter, int k) {
    auto held = co_await lock.scoped_acquire();
    const int seen = counter;
    co_await sleep(0.01);
    counter = seen + k;  // lost updates if the lock let two in
}
Coro<int> when_set(Event& ev, int v) {
    co_await ev.wait();
    co_return v;
}
Coro<> fail_after(double delay) {
    co_await sleep(delay);
    throw Planned("planned");
}
/// The producer runs in the group: if it fails, the group cancels the body's gather (a
/// producer failing outside any group would leave the consumer waiting forever, in Python too).
Coro<> queue_round(TaskGroup& tg, Queue<int>& q, int& consumed, int& seven) {
    tg.create_task(produce(q, 6));
    auto [c, s] = co_await gather(consume(q, 6), asyncio_test::value_after(0.05, 7));
    consumed = c;
    seven = s;
}
Coro<> spawn_adders(TaskGroup& tg, Lock& lock, int& counter) {
    for (int k = 1; k <= 4; ++k) tg.create_task(add_under_lock(lock, counter, k));
    co_return;
}
Coro<> spawn_failing(TaskGroup& tg) {
    tg.create_task(fail_after(0.01));
    tg.create_task(asyncio_test::value_after(1.0, 1));
    co_return;
}

/// What the task program's tasks share. It lives outside asyncio::run (task_scenario()):
/// when a run fails, tasks the program started may still be pending (a gather's other
/// children go on after its first error, as in Python) until the runner cancels them, after
/// the program's own frame is gone.
struct TaskWorld {
    Queue<int> q{2};
    int consumed = 0, seven = 0;
    Lock lock;
    int counter = 0;
    Event ev;
};

Coro<long> task_program(TaskWorld& w) {
    install_handler(get_running_loop());
    long total = 0;

    // Queue + TaskGroup + gather.
    Queue<int>& q = w.q;
    int& consumed = w.consumed;
    int& seven = w.seven;
    co_await task_group([&](TaskGroup& tg) { return queue_round(tg, q, consumed, seven); });
    check(consumed == 21 && seven == 7, "queue/gather result");
    total += consumed + seven;

    // Lock under contention, in a TaskGroup.
    Lock& lock = w.lock;
    int& counter = w.counter;
    co_await task_group([&](TaskGroup& tg) { return spawn_adders(tg, lock, counter); });
    check(counter == 10 && !lock.locked(), "lock/task group result");
    total += counter;

    // Event.
    Event& ev = w.ev;
    Task<int> w1 = create_task(when_set(ev, 3));
    Task<int> w2 = create_task(when_set(ev, 4));
    co_await sleep(0);
    ev.set();
    const int a = co_await w1;
    const int b = co_await w2;
    check(a + b == 7, "event result");
    total += a + b;

    // wait_for that times out; timeout() that does not.
    bool timed_out = false;
    try {
        (void)co_await wait_for(asyncio_test::value_after(10.0, 1), 0.5);
    } catch (const TimeoutError&) {
        timed_out = true;
    }
    check(timed_out, "wait_for did not time out");
    const int eleven = co_await timeout(1.0, asyncio_test::value_after(0.1, 11));
    check(eleven == 11, "timeout result");
    total += eleven;

    // cancel().
    Task<int> sleeper = create_task(asyncio_test::value_after(100.0, 0));
    co_await sleep(0);
    check(sleeper.cancel("stop"), "cancel() returned false");
    bool cancelled = false;
    try {
        (void)co_await sleeper;
    } catch (const CancelledError&) {
        cancelled = true;
    }
    check(cancelled && sleeper.cancelled(), "cancelled task");

    // shield(): the outer wait times out, the inner task goes on.
    Task<int> inner = create_task(asyncio_test::value_after(0.2, 5));
    bool shield_timed_out = false;
    try {
        (void)co_await wait_for(shield(inner), 0.1);
    } catch (const TimeoutError&) {
        shield_timed_out = true;
    }
    const int five = co_await inner;
    check(shield_timed_out && five == 5, "shield result");
    total += five;

    // A failing TaskGroup: its ExceptionGroup holds the planned error.
    bool group_failed = false;
    try {
        co_await task_group([](TaskGroup& tg) { return spawn_failing(tg); });
    } catch (const ExceptionGroup& g) {
        bool only_planned = g.exceptions().size() == 1;
        for (const auto& x : g.exceptions()) only_planned = only_planned && asyncio_test::holds<Planned>(x);
        if (!only_planned) throw;
        group_failed = true;
    }
    check(group_failed, "task group did not fail");
    co_return total;
}

Coro<long> bounded_task_program(TaskWorld& w) { co_return co_await timeout(1000.0, task_program(w)); }

void task_scenario() {
    TaskWorld world;
    const long total = asyncio::run(bounded_task_program(world), RunOptions{.virtual_clock = true});
    check(total == 21 + 7 + 10 + 7 + 11 + 5, "task program total");
}

// ---- the network scenario ---------------------------------------------------------------------

constexpr int messages_per_client = 3;
constexpr int stream_clients = 3;

/// The stream server's handler. A client whose run failed (std::bad_alloc) may vanish with
/// unread data, so the kernel resets the connection: like any server, the handler then ends.
Coro<> echo_lines(StreamReader reader, StreamWriter writer) {
    try {
        while (true) {
            std::string line = co_await reader.readline();
            if (line.empty()) break;
            writer.write(line);
            co_await writer.drain();
        }
        writer.close();
        co_await writer.wait_closed();
    } catch (const std::system_error&) {
        writer.close();
    }
}

struct EchoProtocol : Protocol {
    std::shared_ptr<Transport> transport;
    void connection_made(std::shared_ptr<Transport> t) override { transport = std::move(t); }
    void data_received(std::string_view data) override { transport->write(data); }
    bool eof_received() override { return false; }  // close
    void connection_lost(std::exception_ptr) override { transport.reset(); }
};

struct DatagramEcho : DatagramProtocol {
    std::shared_ptr<DatagramTransport> transport;
    void connection_made(std::shared_ptr<DatagramTransport> t) override { transport = std::move(t); }
    void datagram_received(std::string_view d, const SockAddr& from) override { transport->sendto(d, from); }
    void connection_lost(std::exception_ptr) override { transport.reset(); }
};
struct DatagramClient : DatagramProtocol {
    Future<std::string> reply;
    std::shared_ptr<DatagramTransport> transport;
    void connection_made(std::shared_ptr<DatagramTransport> t) override {
        transport = std::move(t);
        transport->sendto("datagram");
    }
    void datagram_received(std::string_view d, const SockAddr&) override {
        if (!reply.done()) reply.set_result(std::string(d));
    }
    void connection_lost(std::exception_ptr) override { transport.reset(); }
};

/// A line the server echoes; "" (EOF) means the server side dropped the connection.
Coro<std::string> read_echo(StreamReader& reader) {
    std::string line;
    try {
        line = co_await reader.readline();
    } catch (const std::system_error& e) {
        throw PeerGone(e.what());
    }
    if (line.empty()) throw PeerGone("EOF before the echo");
    co_return line;
}

Coro<int> stream_client(int port, int id) {
    auto [reader, writer] = co_await open_connection("127.0.0.1", port);
    int echoed = 0;
    for (int i = 0; i < messages_per_client; ++i) {
        std::string msg = "client " + std::to_string(id) + " message " + std::to_string(i) + "\n";
        try {
            writer.write(msg);
            co_await writer.drain();
        } catch (const std::system_error& e) {
            throw PeerGone(e.what());  // EPIPE/ECONNRESET: the server side dropped the connection
        }
        std::string echo = co_await read_echo(reader);
        check(echo == msg, "stream echo differs");
        ++echoed;
    }
    writer.close();
    co_await writer.wait_closed();
    co_return echoed;
}

Coro<std::string> protocol_client(int port) {
    const std::string message = "to the protocol server";
    auto [reader, writer] = co_await open_connection("127.0.0.1", port);
    std::string all;
    try {
        writer.write(message);
        writer.write_eof();
        all = co_await reader.read();
    } catch (const std::system_error& e) {
        throw PeerGone(e.what());  // EPIPE/ECONNRESET: the server side dropped the connection
    }
    writer.close();
    co_await writer.wait_closed();
    // A strict prefix of the message, then EOF: the server's transport failed mid-echo (a
    // write that had to buffer its rest could not allocate: its fatal error closes the
    // connection, as Python's does). Only the message's own bytes, in order, are acceptable.
    if (all.size() < message.size() && message.compare(0, all.size(), all) == 0)
        throw PeerGone(all.empty() ? "EOF before the echo" : "EOF in the middle of the echo");
    co_return all;
}

Coro<std::string> sock_client(int port) {
    EventLoop& loop = get_running_loop();
    Socket s(AF_INET, SOCK_STREAM);
    s.setblocking(false);
    co_await loop.sock_connect(s, SockAddr("127.0.0.1", port));
    co_await loop.sock_sendall(s, "raw\n");
    std::string got;
    while (got.size() < 4) {
        std::string part;
        try {
            part = co_await loop.sock_recv(s, 64);
        } catch (const std::system_error& e) {
            throw PeerGone(e.what());
        }
        if (part.empty()) throw PeerGone("EOF before the echo");
        got += part;
    }
    co_return got;
}

Coro<std::string> datagram_round(EventLoop& loop) {
    DatagramOptions server_opts;
    server_opts.local_host = "127.0.0.1";
    server_opts.local_port = 0;
    auto make_echo = [] { return std::make_shared<DatagramEcho>(); };
    auto [st, sp] = co_await loop.create_datagram_endpoint(make_echo, server_opts);
    const int port = st->get_extra_info<SockAddr>("sockname", {}).port();
    DatagramOptions client_opts;
    client_opts.remote_host = "127.0.0.1";
    client_opts.remote_port = port;
    auto make_client = [] { return std::make_shared<DatagramClient>(); };
    auto [ct, cp] = co_await loop.create_datagram_endpoint(make_client, client_opts);
    std::string reply = co_await cp->reply;
    ct->close();
    st->close();
    co_return reply;
}

Coro<> network_program() {
    EventLoop& loop = get_running_loop();
    install_handler(loop);
    if (const char* backend = std::getenv("ASYNCIO_BACKEND")) check(loop.io_backend() == backend, "backend");
    Server streams = co_await start_server(echo_lines, "127.0.0.1", 0);
    const int stream_port = streams.sockets().at(0).getsockname().port();
    auto make_echo = [] { return std::make_shared<EchoProtocol>(); };
    Server protocols = co_await loop.create_server(make_echo, "127.0.0.1", 0);
    const int protocol_port = protocols.sockets().at(0).getsockname().port();

    std::vector<Coro<int>> clients;
    for (int id = 0; id < stream_clients; ++id) clients.push_back(stream_client(stream_port, id));
    std::vector<int> echoed = co_await gather(std::move(clients));
    for (int e : echoed) check(e == messages_per_client, "stream client count");

    std::string whole = co_await protocol_client(protocol_port);
    check(whole == "to the protocol server", "protocol echo differs");
    std::string raw = co_await sock_client(stream_port);
    check(raw == "raw\n", "sock_* echo differs");
    std::string datagram = co_await datagram_round(loop);
    check(datagram == "datagram", "datagram echo differs");

    streams.close();
    protocols.close();
    co_await streams.wait_closed();
    co_await protocols.wait_closed();
}

Coro<> bounded_network_program() { co_await timeout(5.0, network_program()); }

void network_scenario() {
    // The sweep's subject is allocation failure alone: its checks take a transfer to be whole
    // (an echo that stops short is a wrong result), so I/O fault injection ($ASYNCIO_FAULTS,
    // 1-byte transfers) is off here. Allocation failure under soft faults is not swept.
    asyncio::detail::faults::Suspended no_io_faults;
    asyncio::run(bounded_network_program());
}

// ---- the sweep --------------------------------------------------------------------------------

struct Scenario {
    const char* name;
    void (*run)();
    unsigned also;  ///< what may come with std::bad_alloc (Also bits)
};

/// What a child reports through its pipe.
struct Report {
    int verdict = 0;    ///< 0 accepted, else a failure (message says which)
    int completed = 0;  ///< 1: the armed run completed with the right result
    std::uint64_t allocations = 0, failed = 0;
    char message[512] = {};
};

void set_message(Report& r, const std::string& m) { std::snprintf(r.message, sizeof r.message, "%s", m.c_str()); }

/// One run of `s` with allocation `fail_at` failing (0: none), judged. In the child.
Report run_armed(const Scenario& s, std::uint64_t fail_at) {
    Report r;
    const std::size_t fds_before = asyncio_test::open_fd_count();
    af::arm(fail_at);
    {
        // Judged while still counting (later allocations succeed): what the outcome holds (an
        // ExceptionGroup's vector, the handler's records) is freed before the count is read.
        Reports seen;
        reports = &seen;
        std::exception_ptr error;
        try {
            s.run();
        } catch (...) {
            error = std::current_exception();
        }
        reports = nullptr;
        r.completed = error ? 0 : 1;
        unsigned also = s.also;
        if (seen.bad_alloc > 0) also |= peer_gone;  // a server's failure was reported: its client may see the close
        if (error && !is_allocation_failure(error, also, seen.bad_alloc > 0)) {
            r.verdict = 1;
            set_message(r, "the run ended with " + describe_exception(error));
        } else if (!seen.unexpected.empty()) {
            r.verdict = 2;
            set_message(r, "the exception handler got: " + seen.unexpected.front());
        }
    }
    const af::Counts c = af::disarm();
    r.allocations = c.allocations;
    r.failed = c.failed;
    const long long live = static_cast<long long>(c.allocations - c.failed) - static_cast<long long>(c.frees);
    if (r.verdict != 0) {
    } else if (live != 0) {
        r.verdict = 3;
        set_message(r, "memory not given back: " + std::to_string(live) + " allocation(s) of the run still live");
    } else if (asyncio_test::open_fd_count() != fds_before) {
        r.verdict = 4;
        set_message(r, "fds left open: " + std::to_string(asyncio_test::open_fd_count()) + " after, " +
                           std::to_string(fds_before) + " before");
    }
#ifdef SWEEP_UNDER_ASAN
    if (r.verdict == 0 && __lsan_do_recoverable_leak_check() != 0) {
        r.verdict = 5;
        set_message(r, "LeakSanitizer found a leak (report above)");
    }
#endif
    return r;
}

/// Forks a child that runs `s` with allocation n failing, then un-armed again; its report.
Report sweep_one(const Scenario& s, std::uint64_t n, int alarm_seconds) {
    int fds[2];
    if (::pipe(fds) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid == 0) {
        ::close(fds[0]);
        ::alarm(static_cast<unsigned>(alarm_seconds));
        Report r = run_armed(s, n);
        if (r.verdict == 0) {
            // The same thread runs the scenario again, un-armed: it must complete.
            try {
                s.run();
            } catch (...) {
                r.verdict = 6;
                set_message(r, "the un-armed run after it failed: " + describe_exception(std::current_exception()));
            }
        }
        (void)!::write(fds[1], &r, sizeof r);
        ::_exit(0);
    }
    ::close(fds[1]);
    Report r;
    std::size_t got = 0;
    while (got < sizeof r) {
        const ssize_t k = ::read(fds[0], reinterpret_cast<char*>(&r) + got, sizeof r - got);
        if (k > 0) {
            got += static_cast<std::size_t>(k);
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        break;
    }
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status)) {
        r = Report{};
        r.verdict = 7;
        const int sig = WTERMSIG(status);
        set_message(r, sig == SIGALRM ? std::string("hang (no end within the alarm)")
                                      : "crash: signal " + std::to_string(sig) + " (" + ::strsignal(sig) + ")");
    } else if (got != sizeof r) {
        r = Report{};
        r.verdict = 8;
        set_message(r, "the child exited with status " + std::to_string(WEXITSTATUS(status)) + " before reporting");
    }
    return r;
}

std::uint64_t env_number(const char* name, std::uint64_t fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

struct SweepFigures {
    std::uint64_t n_total = 0, runs = 0, completed = 0, reached_caller = 0, injected = 0;
    double seconds = 0;
};

/// Counts the scenario's allocations un-armed, then sweeps n; fails the test with each bug.
SweepFigures sweep(const Scenario& s, int alarm_seconds) {
    SweepFigures f;
    // Warm up (first-use statics), then count, both in this process: its children inherit it.
    s.run();
    const Report counted = run_armed(s, 0);
    EXPECT_EQ(counted.verdict, 0) << counted.message;
    EXPECT_EQ(counted.completed, 1);
    f.n_total = counted.allocations;
    EXPECT_GT(f.n_total, 100u) << "the scenario should allocate";
    const std::uint64_t only = env_number("ASYNCIO_ALLOC_SWEEP_ONLY", 0);
    const std::uint64_t stride = only ? 1 : std::max<std::uint64_t>(1, env_number("ASYNCIO_ALLOC_SWEEP_STRIDE", 1));
    const auto start = std::chrono::steady_clock::now();
    std::map<std::string, std::vector<std::uint64_t>> failures;  // message -> the n that failed so
    for (std::uint64_t n = only ? only : 1; n <= (only ? only : f.n_total); n += stride) {
        const Report r = sweep_one(s, n, alarm_seconds);
        ++f.runs;
        f.completed += r.completed;
        f.injected += r.failed;
        if (r.verdict == 0 && !r.completed) ++f.reached_caller;
        if (r.verdict != 0) failures[r.message].push_back(n);
        if (only)
            std::printf("n=%llu: verdict %d, completed %d, allocations %llu, failed %llu: %s\n",
                        static_cast<unsigned long long>(n), r.verdict, r.completed,
                        static_cast<unsigned long long>(r.allocations), static_cast<unsigned long long>(r.failed),
                        r.message);
    }
    f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const auto& [message, ns] : failures) {
        std::string list;
        for (std::size_t i = 0; i < ns.size() && i < 12; ++i) list += (i ? ", " : "") + std::to_string(ns[i]);
        if (ns.size() > 12) list += ", ...";
        ADD_FAILURE() << s.name << ": " << ns.size() << " run(s) failed: " << message << " (n = " << list << ")";
    }
    std::printf(
        "%s: N = %llu allocations; %llu runs (stride %llu) in %.1f s: %llu failures injected, %llu "
        "completed, %llu ended with std::bad_alloc\n",
        s.name, static_cast<unsigned long long>(f.n_total), static_cast<unsigned long long>(f.runs),
        static_cast<unsigned long long>(stride), f.seconds, static_cast<unsigned long long>(f.injected),
        static_cast<unsigned long long>(f.completed), static_cast<unsigned long long>(f.reached_caller));
    return f;
}

/// Sets $ASYNCIO_BACKEND for the test's duration (the loops the scenario makes use it).
class BackendEnv {
public:
    explicit BackendEnv(const char* backend) {
        if (const char* old = std::getenv("ASYNCIO_BACKEND")) old_ = old, had_ = true;
        ::setenv("ASYNCIO_BACKEND", backend, 1);
    }
    ~BackendEnv() {
        if (had_)
            ::setenv("ASYNCIO_BACKEND", old_.c_str(), 1);
        else
            ::unsetenv("ASYNCIO_BACKEND");
    }

private:
    std::string old_;
    bool had_ = false;
};

bool backend_usable() {
    try {
        EventLoop loop;
        loop.close();
        return true;
    } catch (const std::exception&) {
        return false;
    }
}

TEST(AllocFailure, TheInjectorFailsExactlyTheChosenAllocation) {
    ASSERT_TRUE(af::compiled_in);
    // Called directly (a new-expression's allocation may be elided by the optimiser).
    af::arm(3);
    void* a = ::operator new(16);
    void* b = ::operator new(16);
    EXPECT_THROW((void)::operator new(16), std::bad_alloc);
    void* d = ::operator new(16, std::nothrow);  // only the third fails
    EXPECT_NE(d, nullptr);
    ::operator delete(a);
    const af::Counts c = af::disarm();
    EXPECT_EQ(c.allocations, 4u);
    EXPECT_EQ(c.failed, 1u);
    EXPECT_EQ(c.frees, 1u);
    ::operator delete(b);
    ::operator delete(d);
    // The nothrow forms fail by returning null; with and_after, every allocation from n on fails.
    af::arm(2, true);
    void* e = ::operator new(16, std::nothrow);
    EXPECT_EQ(::operator new(16, std::nothrow), nullptr);
    EXPECT_EQ(::operator new[](16, std::nothrow), nullptr);
    EXPECT_THROW((void)::operator new(16, std::align_val_t{64}), std::bad_alloc);
    EXPECT_EQ(af::disarm().failed, 3u);
    EXPECT_NE(e, nullptr);
    ::operator delete(e);
    // The frame pool counts on the same counter: a coroutine frame is an allocation.
    af::arm(1);
    EXPECT_THROW((void)asyncio_test::value_after(0, 1), std::bad_alloc);
    EXPECT_EQ(af::disarm().failed, 1u);
    { Coro<int> warm = asyncio_test::value_after(0, 1); }  // the thread's first slab is made
    af::arm(0);
    { Coro<int> c2 = asyncio_test::value_after(0, 1); }
    const af::Counts pool = af::disarm();
    EXPECT_EQ(pool.allocations, 1u);
    EXPECT_EQ(pool.frees, 1u);
}

TEST(AllocFailure, TaskScenarioSurvivesEachAllocationFailing) {
    const Scenario s{"task scenario", task_scenario, planned};
    const SweepFigures f = sweep(s, 5);  // virtual clock: a run takes milliseconds
    if (env_number("ASYNCIO_ALLOC_SWEEP_ONLY", 0) == 0) {
        // Deterministic (virtual clock): every run injects its failure.
        EXPECT_EQ(f.injected, f.runs);
        EXPECT_GT(f.reached_caller, 0u);
    }
}

// ---- regressions: each bug the sweep found, on its own ------------------------------------------
//
// Each runs one operation with its k-th allocation failing, for k = 1, 2, ... until a run
// needs no failure (the operation then succeeded): every failing k must leave the state as
// before, and what the run allocated must be freed.

/// Runs `op()` with allocation k failing for k = 1, 2, ...: it returns whether the state is
/// right after it succeeded, or raises std::bad_alloc, having then freed what it allocated.
/// Returns how many k failed.
template <class Op>
int each_allocation_failing(Op op) {
    int injected = 0;
    for (std::uint64_t k = 1; k < 1000; ++k) {
        af::arm(k);
        bool threw = false;
        bool ok = false;
        try {
            ok = op();
        } catch (const std::bad_alloc&) {
            threw = true;
        }
        const af::Counts c = af::disarm();
        if (c.failed == 0) {
            EXPECT_TRUE(ok) << "the operation failed with no allocation failing";
            return injected;
        }
        ++injected;
        EXPECT_TRUE(threw || ok) << "allocation " << k << " failed and the operation neither raised nor succeeded";
        if (threw) {
            EXPECT_EQ(c.allocations - c.failed, c.frees) << "allocation " << k << ": memory not given back";
        }
    }
    ADD_FAILURE() << "the operation never ran without a failure";
    return injected;
}

TEST(AllocFailure, ALoopThatFailsToConstructClosesItsFdsAndFreesItsMemory) {
    { EventLoop warm; }
    const std::size_t fds = asyncio_test::open_fd_count();
    int failing = 0;
    for (std::uint64_t k = 1; k < 100; ++k) {
        af::arm(k);
        try {
            EventLoop loop;
        } catch (const std::bad_alloc&) {
        }
        const af::Counts c = af::disarm();
        if (c.failed == 0) break;
        ++failing;
        EXPECT_EQ(c.allocations - c.failed, c.frees) << "allocation " << k << ": memory not given back";
        EXPECT_EQ(asyncio_test::open_fd_count(), fds) << "allocation " << k << ": an fd left open";
    }
    EXPECT_GE(failing, 3);  // the anchor, the loop's state, the backend (at least)
}

Coro<int> one() { co_return 1; }
/// The running loop's pending tasks, counted without allocating (all_tasks() makes a vector).
std::size_t pending_task_count() { return asyncio::detail::LoopAccess::pending_tasks(get_running_loop()).size(); }

TEST(AllocFailure, CreateTaskThatFailsLeavesNoTaskBehind) {
    auto main = []() -> Coro<> {
        const int injected = each_allocation_failing([] {
            const std::size_t before = pending_task_count();
            try {
                Task<int> t = create_task(one());
                return pending_task_count() == before + 1;
            } catch (const std::bad_alloc&) {
                if (pending_task_count() != before) ADD_FAILURE() << "a task that failed to start is listed";
                throw;
            }
        });
        CO_ASSERT(injected >= 2);  // the frame, the task, the loop's list of tasks
        co_await sleep(0);         // the created tasks run; nothing else is left
        CO_ASSERT(pending_task_count() == 1);
    };
    asyncio_test::run_virtual(main());
}

TEST(AllocFailure, CallLaterThatFailsLeavesNoTimerBehind) {
    auto main = []() -> Coro<> {
        EventLoop& loop = get_running_loop();
        int fired = 0;
        std::size_t created = 0;
        std::vector<TimerHandle> handles;
        handles.reserve(100);
        each_allocation_failing([&] {
            const std::size_t timers = asyncio_test::timer_count(loop);
            try {
                handles.push_back(loop.call_later(1.0, [&fired] { ++fired; }));
                ++created;
                return asyncio_test::timer_count(loop) == timers + 1;
            } catch (const std::bad_alloc&) {
                if (asyncio_test::timer_count(loop) != timers) ADD_FAILURE() << "a failed call_later left a timer";
                throw;
            }
        });
        co_await sleep(2.0);
        CO_ASSERT(fired == static_cast<int>(created));
    };
    asyncio_test::run_virtual(main());
}

Coro<> sleeper_with_message_check(bool& woke) {
    co_await sleep(10.0);
    woke = true;
}

TEST(AllocFailure, CancelThatCannotStoreItsMessageLeavesTheTaskAsItWas) {
    // The failure: a sleeping task's timer was cancelled, then the message could not be
    // stored, and the task slept forever.
    auto main = []() -> Coro<> {
        bool woke = false;
        Task<> t = create_task(sleeper_with_message_check(woke));
        co_await sleep(0);
        af::arm(1);
        bool threw = false;
        try {
            t.cancel("a message long enough not to fit in a short string's buffer");
        } catch (const std::bad_alloc&) {
            threw = true;
        }
        CO_ASSERT(af::disarm().failed == 1);
        CO_ASSERT(threw);
        CO_ASSERT(t.cancelling() == 0);  // no cancellation was requested
        co_await sleep(20.0);            // the sleep still ends on time
        CO_ASSERT(woke && t.done() && !t.cancelled());
        // A cancel that can allocate works as usual.
        Task<> t2 = create_task(sleeper_with_message_check(woke));
        co_await sleep(0);
        CO_ASSERT(t2.cancel("now it fits in memory"));
        co_await asyncio_test::error_of(t2);
        CO_ASSERT(t2.cancelled());
    };
    asyncio_test::run_virtual(main());
}

Coro<> child_ok() { co_await sleep(0.1); }
/// What task_group(body) raised (null: nothing).
template <class Body>
Coro<std::exception_ptr> group_error(Body body) {
    try {
        co_await task_group(std::move(body));
    } catch (...) {
        co_return std::current_exception();
    }
    co_return nullptr;
}

Coro<> spawn_two(TaskGroup& tg, int& created) {
    for (int i = 0; i < 2; ++i) {
        tg.create_task(child_ok());
        ++created;
    }
    co_return;
}

TEST(AllocFailure, TaskGroupCreateTaskThatFailsLeavesNoChildBehindAndTheGroupEnds) {
    // The failure: the child was listed but its done callback could not be added, and the
    // group waited for it forever.
    auto main = []() -> Coro<> {
        for (std::uint64_t k = 1;; ++k) {
            int created = 0;
            af::arm(k);
            auto body = [&created](TaskGroup& tg) { return spawn_two(tg, created); };
            std::exception_ptr error;
            try {
                error = co_await group_error(body);
            } catch (...) {  // this coroutine's own frame
                error = std::current_exception();
            }
            const af::Counts c = af::disarm();
            if (c.failed == 0) {
                CO_ASSERT(!error && created == 2);
                break;
            }
            CO_ASSERT(!error || is_allocation_failure(error));
            EXPECT_EQ(current_task().cancelling(), 0) << "k = " << k << ": the group left its parent cancelled";
            co_await sleep(0);  // a child the group could not adopt was cancelled: it ends now
            EXPECT_EQ(pending_task_count(), 1u)
                << "k = " << k << ": a child left running outside its group, " << describe_exception(error);
            CO_ASSERT(pending_task_count() == 1);
            CO_ASSERT(k < 200);
        }
    };
    asyncio_test::run_virtual(main());
}

Coro<> child_fails() {
    co_await sleep(0.1);
    throw Planned("planned");
}
Coro<> spawn_failing_child(TaskGroup& tg) {
    tg.create_task(child_fails());
    tg.create_task(child_ok());
    co_await sleep(1.0);
}

TEST(AllocFailure, TaskGroupNeverLosesAChildsErrorToAnAllocationFailure) {
    // The failure: recording the child's error allocated; when that failed the error was lost
    // and the group ended as if every child had succeeded.
    auto main = []() -> Coro<> {
        for (std::uint64_t k = 1;; ++k) {
            af::arm(k);
            auto body = [](TaskGroup& tg) { return spawn_failing_child(tg); };
            std::exception_ptr error;
            try {
                error = co_await group_error(body);
            } catch (...) {  // this coroutine's own frame
                error = std::current_exception();
            }
            const af::Counts c = af::disarm();
            CO_ASSERT(error);  // the planned error, or std::bad_alloc: never a success
            EXPECT_TRUE(is_allocation_failure(error, planned) || asyncio_test::holds<ExceptionGroup>(error))
                << "k = " << k << ": " << describe_exception(error);
            CO_ASSERT(is_allocation_failure(error, planned) || asyncio_test::holds<ExceptionGroup>(error));
            EXPECT_EQ(current_task().cancelling(), 0) << "k = " << k << ": the group left its parent cancelled";
            CO_ASSERT(current_task().cancelling() == 0);
            if (c.failed == 0) break;
            CO_ASSERT(k < 200);
        }
    };
    asyncio_test::run_virtual(main());
}

Coro<> handler_never_made(StreamReader, StreamWriter) { co_return; }

TEST(AllocFailure, AStreamConnectionWhoseHandlerCannotStartIsReportedAndClosed) {
    // The failure: start_server's connection_made could not start the client_connected_cb
    // task (std::bad_alloc); the error went to the exception handler and the connection stayed
    // open, so the client waited for good and the server's wait_closed() never returned.
    auto main = []() -> Coro<> {
        EventLoop& loop = get_running_loop();
        asyncio_test::HandlerCapture handler;
        handler.install(loop);
        ClientConnectedCallback cb = [](StreamReader r, StreamWriter w) -> Coro<> {
            throw std::bad_alloc();  // as if the handler's frame could not be allocated
            return handler_never_made(std::move(r), std::move(w));
        };
        Server server = co_await start_server(cb, "127.0.0.1", 0);
        const int port = server.sockets().at(0).getsockname().port();
        auto [reader, writer] = co_await open_connection("127.0.0.1", port);
        std::exception_ptr error;
        std::string got;
        try {
            got = co_await timeout(5.0, reader.read());  // EOF or a reset: the server closed it
        } catch (const std::system_error&) {
            error = std::current_exception();
        }
        CO_ASSERT(got.empty());
        writer.close();
        co_await asyncio_test::error_of(writer.wait_closed());
        server.close();
        co_await timeout(5.0, server.wait_closed());
        CO_ASSERT(handler.contexts.size() == 1);
        CO_ASSERT(asyncio_test::holds<std::bad_alloc>(handler.contexts[0].exception));
    };
    asyncio::run(main());
}

TEST(AllocFailure, ClosingATransportNeedsNoMemory) {
    // The failure: close() queued connection_lost with call_soon(), which allocates; when that
    // failed the transport never called connection_lost, kept its fd and itself, and the
    // server's wait_closed() waited for good. The callback is now made when the transport starts.
    auto main = []() -> Coro<> {
        Server server = co_await start_server(echo_lines, "127.0.0.1", 0);
        const int port = server.sockets().at(0).getsockname().port();
        auto [reader, writer] = co_await open_connection("127.0.0.1", port);
        af::arm(1, /*and_after=*/true);  // every allocation fails
        bool threw = false;
        try {
            writer.close();
        } catch (const std::bad_alloc&) {
            threw = true;
        }
        const af::Counts c = af::disarm();
        CO_ASSERT(!threw);
        CO_ASSERT(c.allocations == 0);
        co_await timeout(5.0, writer.wait_closed());
        server.close();
        co_await timeout(5.0, server.wait_closed());
    };
    asyncio::run(main());
}

class NetworkSweep : public ::testing::TestWithParam<const char*> {};

TEST_P(NetworkSweep, NetworkScenarioSurvivesEachAllocationFailing) {
    BackendEnv env(GetParam());
    if (!backend_usable()) GTEST_SKIP() << GetParam() << " is not usable here";
    const Scenario s{"network scenario", network_scenario, none};
    const SweepFigures f = sweep(s, 20);
    if (env_number("ASYNCIO_ALLOC_SWEEP_ONLY", 0) == 0) {
        // Timing decides some allocations (how reads split), so a run may allocate less than
        // the count run did; most runs still inject.
        EXPECT_GT(f.injected * 10, f.runs * 9);
        EXPECT_GT(f.reached_caller, 0u);
    }
}

INSTANTIATE_TEST_SUITE_P(Backends, NetworkSweep, ::testing::Values("epoll", "io_uring"),
                         [](const ::testing::TestParamInfo<const char*>& info) { return std::string(info.param); });

}  // namespace
