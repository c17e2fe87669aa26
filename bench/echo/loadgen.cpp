// Echo benchmark: the one load generator used for every server (plain C++20 + epoll; it does
// not use asyncio-cpp). Modelled on PhotonLibOS's net-perf client.
//
//   --mode pingpong   C connections; each writes one S-byte message, waits until all S bytes
//                     have been echoed, and repeats. Reports round trips per second.
//   --mode streaming  C connections; each keeps writing S-byte messages back to back while
//                     reading the echo. Writes are batched: one write() hands the socket as
//                     many whole messages as fit in 64 KiB (at least one), since TCP carries a
//                     byte stream and the server sees the same bytes either way; this keeps
//                     the generator's syscalls per byte below the server's. Reports messages
//                     echoed per second (echoed bytes / S).
//   --mode idle       opens C connections one after the other; on each writes a 16-byte
//                     message and waits for its echo (so the server has really accepted and
//                     served it), prints "ready ..." once all are established, then holds them
//                     open until stdin reaches EOF (or a signal ends the process).
//
// pingpong and streaming run for --warmup seconds (not counted), then --duration seconds
// measured, in one thread: level-triggered epoll, TCP_NODELAY, one shared receive buffer,
// messages written from one shared pattern buffer (nothing allocated per message). Output is
// one line of key=value pairs on stdout, e.g.
//   mode=pingpong size=1024 conns=100 seconds=3.000 requests=... bytes=... requests_per_s=...
//   mib_per_s=... client_cpu=0.97 server_cpu=1.00 machine_cpu=1.98
// where mib_per_s counts echoed bytes (one direction), client_cpu is this process's CPU time
// over the measured window / the window, server_cpu the same for --server-pid (from
// /proc/PID/stat; -1 if not given), machine_cpu the busy CPUs of the whole machine (from
// /proc/stat: so machine_cpu - client_cpu - server_cpu is what everything else used), and
// server_user_cpu the user-space part of server_cpu (the rest is the kernel's work for it).
// client_cpu near 1 with server_cpu well below 1 means the load generator, not the server,
// is the bottleneck.
// SIGUSR1 makes pingpong and streaming print one line "progress requests=N bytes=B" at once
// (counts since the start, warm-up included; requests in streaming = echoed bytes / S):
// instructions.py uses it to count the round trips inside a profiling window.
// --verify checks every echoed byte against what was sent (costs a memcmp per read).
// Errors (refused, reset, closed by the server, short echo, no progress for --timeout s) go
// to stderr and make the exit status non-zero.
//
// Usage: loadgen --port P [--host 127.0.0.1] [--mode pingpong|streaming|idle] [--size S]
//                [--conns C] [--duration D] [--warmup W] [--timeout T] [--verify]
//                [--server-pid PID]

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

constexpr std::size_t kRecvBuf = 256 * 1024;
constexpr std::size_t kStreamChunk = 64 * 1024;
constexpr std::size_t kIdleMsg = 16;

volatile sig_atomic_t progress_requested = 0;
extern "C" void on_sigusr1(int) { progress_requested = 1; }

struct Options {
    std::string host = "127.0.0.1";
    int port = -1;
    std::string mode = "pingpong";
    std::size_t size = 1024;
    int conns = -1;  // default depends on the mode
    double duration = 3.0;
    double warmup = 0.5;
    double timeout = 10.0;
    bool verify = false;
    long server_pid = -1;
};

[[noreturn]] __attribute__((format(printf, 1, 2))) void fail(const char* fmt, ...) {
    std::fprintf(stderr, "loadgen: ");
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fprintf(stderr, "\n");
    std::exit(1);
}

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: loadgen --port P [--host H] [--mode pingpong|streaming|idle] [--size S]\n"
                 "               [--conns C] [--duration D] [--warmup W] [--timeout T] [--verify]\n"
                 "               [--server-pid PID]\n");
    std::exit(2);
}

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double self_cpu_s() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// utime + stime of another process, in seconds (utime alone in *user); -1 if unavailable.
double proc_cpu_s(long pid, double* user = nullptr) {
    if (pid <= 0) return -1.0;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE* f = std::fopen(path, "r");
    if (!f) return -1.0;
    char buf[1024];
    std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    const char* p = std::strrchr(buf, ')');  // comm may contain spaces
    if (!p) return -1.0;
    unsigned long utime = 0, stime = 0;
    // after ")": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15)
    if (std::sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2) return -1.0;
    if (user) *user = static_cast<double>(utime) / static_cast<double>(sysconf(_SC_CLK_TCK));
    return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Busy CPU time of the whole machine (all CPUs, everything but idle and iowait), in seconds.
double machine_busy_s() {
    FILE* f = std::fopen("/proc/stat", "r");
    if (!f) return -1.0;
    unsigned long long v[10] = {};
    int n = std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                        &v[5], &v[6], &v[7], &v[8], &v[9]);
    std::fclose(f);
    if (n < 8) return -1.0;
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return static_cast<double>(busy) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

void raise_nofile(std::size_t need) {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && need + 16 > rl.rlim_cur)
        fail("RLIMIT_NOFILE hard limit %ld is too low for %zu connections (raise ulimit -Hn)",
             static_cast<long>(rl.rlim_cur), need);
}

// Blocking connect (with send/receive timeouts), TCP_NODELAY set.
int connect_one(const sockaddr_in& addr, double timeout) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket: %s", std::strerror(errno));
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout);
    tv.tv_usec = static_cast<suseconds_t>((timeout - static_cast<double>(tv.tv_sec)) * 1e6);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // also bounds connect()
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0)
        fail("connect: %s", std::strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

void set_nonblocking(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) fail("fcntl: %s", std::strerror(errno));
}

struct Conn {
    int fd = -1;
    std::uint64_t sent = 0;  // pingpong: bytes of the current message written; streaming: total
    std::uint64_t rcvd = 0;  // pingpong: bytes of the current message echoed; streaming: total
    bool want_out = false;   // EPOLLOUT in the interest set (pingpong)
};

class Runner {
public:
    Runner(const Options& o, const sockaddr_in& addr) : o_(o), streaming_(o.mode == "streaming") {
        // pattern[i] = f(i mod S), long enough that any message offset + any read or write
        // length used below stays inside it.
        chunk_ = streaming_ ? std::max<std::size_t>(1, kStreamChunk / o.size) * o.size : o.size;
        pattern_.resize(o.size + std::max(kRecvBuf, chunk_));
        for (std::size_t i = 0; i < pattern_.size(); ++i) pattern_[i] = static_cast<char>((i % o.size) % 251);
        rbuf_.resize(kRecvBuf);
        epfd_ = epoll_create1(EPOLL_CLOEXEC);
        if (epfd_ < 0) fail("epoll_create1: %s", std::strerror(errno));
        conns_.resize(static_cast<std::size_t>(o.conns));
        for (std::size_t i = 0; i < conns_.size(); ++i) {
            Conn& c = conns_[i];
            c.fd = connect_one(addr, o.timeout);
            set_nonblocking(c.fd);
            epoll_event ev{};
            ev.events = streaming_ ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
            ev.data.u64 = i;
            if (epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd, &ev) < 0) fail("epoll_ctl: %s", std::strerror(errno));
        }
    }

    int run() {
        if (!streaming_)
            for (Conn& c : conns_) send_msg(c);
        std::vector<epoll_event> events(std::min<std::size_t>(conns_.size(), 1024));
        const double start = now_s();
        const double t0 = start + o_.warmup;
        const double t1 = t0 + o_.duration;
        bool measuring = false;
        std::uint64_t req0 = 0, bytes0 = 0;
        double m0 = 0, cpu0 = 0, scpu0 = 0, ucpu0 = 0, mcpu0 = 0;
        double last_progress = start;
        std::uint64_t last_bytes = 0;
        for (;;) {
            double now = now_s();
            if (!measuring && now >= t0) {
                measuring = true;
                m0 = now;
                req0 = requests_;
                bytes0 = bytes_;
                cpu0 = self_cpu_s();
                scpu0 = proc_cpu_s(o_.server_pid, &ucpu0);
                mcpu0 = machine_busy_s();
            }
            if (measuring && now >= t1) {
                double secs = now - m0;
                double cpu = (self_cpu_s() - cpu0) / secs;
                double ucpu1 = 0;
                double scpu1 = proc_cpu_s(o_.server_pid, &ucpu1);
                double scpu = (scpu0 >= 0 && scpu1 >= 0) ? (scpu1 - scpu0) / secs : -1.0;
                double ucpu = (scpu0 >= 0 && scpu1 >= 0) ? (ucpu1 - ucpu0) / secs : -1.0;
                double mcpu1 = machine_busy_s();
                double mcpu = (mcpu0 >= 0 && mcpu1 >= 0) ? (mcpu1 - mcpu0) / secs : -1.0;
                std::uint64_t reqs = requests_ - req0;
                std::uint64_t bytes = bytes_ - bytes0;
                if (streaming_) reqs = bytes / o_.size;  // whole messages echoed in the window
                std::printf(
                    "mode=%s size=%zu conns=%zu seconds=%.3f requests=%llu bytes=%llu "
                    "requests_per_s=%.1f mib_per_s=%.2f client_cpu=%.3f server_cpu=%.3f machine_cpu=%.3f "
                    "server_user_cpu=%.3f\n",
                    o_.mode.c_str(), o_.size, conns_.size(), secs, static_cast<unsigned long long>(reqs),
                    static_cast<unsigned long long>(bytes), static_cast<double>(reqs) / secs,
                    static_cast<double>(bytes) / secs / (1024.0 * 1024.0), cpu, scpu, mcpu, ucpu);
                std::fflush(stdout);
                return 0;
            }
            if (bytes_ != last_bytes) {
                last_bytes = bytes_;
                last_progress = now;
            } else if (now - last_progress > o_.timeout) {
                fail("no echo received for %.1f s: server stalled", o_.timeout);
            }
            double next = measuring ? t1 : t0;
            int wait_ms = static_cast<int>((next - now) * 1000.0) + 1;
            if (progress_requested) {
                progress_requested = 0;
                std::uint64_t reqs = streaming_ ? bytes_ / o_.size : requests_;
                std::printf("progress requests=%llu bytes=%llu\n", static_cast<unsigned long long>(reqs),
                            static_cast<unsigned long long>(bytes_));
                std::fflush(stdout);
            }
            int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), wait_ms);
            if (n < 0) {
                if (errno == EINTR) continue;
                fail("epoll_wait: %s", std::strerror(errno));
            }
            for (int i = 0; i < n; ++i) {
                Conn& c = conns_[events[i].data.u64];
                std::uint32_t ev = events[i].events;
                if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
                if (ev & EPOLLOUT) on_writable(c);
            }
        }
    }

private:
    void set_out(Conn& c, bool want) {
        if (c.want_out == want) return;
        c.want_out = want;
        epoll_event ev{};
        ev.events = want ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
        ev.data.u64 = static_cast<std::uint64_t>(&c - conns_.data());
        if (epoll_ctl(epfd_, EPOLL_CTL_MOD, c.fd, &ev) < 0) fail("epoll_ctl: %s", std::strerror(errno));
    }

    // Returns bytes written (0 if the socket is full).
    std::size_t write_some(Conn& c, const char* p, std::size_t len) {
        ssize_t n = send(c.fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return 0;
            fail("send: %s", std::strerror(errno));
        }
        return static_cast<std::size_t>(n);
    }

    // pingpong: write (the rest of) the current message.
    void send_msg(Conn& c) {
        std::size_t off = static_cast<std::size_t>(c.sent);
        c.sent += write_some(c, pattern_.data() + off, o_.size - off);
        set_out(c, c.sent < o_.size);
    }

    void on_writable(Conn& c) {
        if (!streaming_) {
            if (c.sent < o_.size) send_msg(c);
            return;
        }
        std::size_t off = static_cast<std::size_t>(c.sent % o_.size);
        c.sent += write_some(c, pattern_.data() + off, chunk_);
    }

    void on_readable(Conn& c) {
        ssize_t n = recv(c.fd, rbuf_.data(), rbuf_.size(), 0);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
            if (n == 0) fail("the server closed a connection");
            fail("recv: %s", std::strerror(errno));
        }
        std::size_t got = static_cast<std::size_t>(n);
        std::size_t off = static_cast<std::size_t>(c.rcvd % o_.size);
        if (c.rcvd + got > c.sent) fail("the server echoed more bytes than were sent");
        if (o_.verify && std::memcmp(rbuf_.data(), pattern_.data() + off, got) != 0)
            fail("echoed bytes differ from the bytes sent");
        c.rcvd += got;
        bytes_ += got;
        if (!streaming_ && c.rcvd == o_.size) {
            ++requests_;
            c.sent = c.rcvd = 0;
            send_msg(c);
        }
    }

    const Options& o_;
    const bool streaming_;
    std::size_t chunk_ = 0;
    std::vector<char> pattern_;
    std::vector<char> rbuf_;
    std::vector<Conn> conns_;
    int epfd_ = -1;
    std::uint64_t requests_ = 0;
    std::uint64_t bytes_ = 0;
};

int run_idle(const Options& o, const sockaddr_in& addr) {
    const char msg[kIdleMsg] = {'i', 'd', 'l', 'e', '-', 'c', 'o', 'n', 'n', 'e', 'c', 't', 'i', 'o', 'n'};
    std::vector<int> fds;
    fds.reserve(static_cast<std::size_t>(o.conns));
    double t0 = now_s();
    for (int i = 0; i < o.conns; ++i) {
        int fd = connect_one(addr, o.timeout);
        if (send(fd, msg, sizeof msg, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof msg))
            fail("send: %s", std::strerror(errno));
        char back[kIdleMsg];
        std::size_t got = 0;
        while (got < sizeof back) {
            ssize_t n = recv(fd, back + got, sizeof back - got, 0);
            if (n == 0) fail("the server closed idle connection #%d", i);
            if (n < 0) {
                if (errno == EINTR) continue;
                fail("recv (no echo on an idle connection): %s", std::strerror(errno));
            }
            got += static_cast<std::size_t>(n);
        }
        if (std::memcmp(back, msg, sizeof msg) != 0) fail("echoed bytes differ on idle connection #%d", i);
        fds.push_back(fd);
    }
    std::printf("ready conns=%zu seconds=%.3f\n", fds.size(), now_s() - t0);
    std::fflush(stdout);
    char buf[256];
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EINTR)) break;
    }
    for (int fd : fds) close(fd);
    return 0;
}

double to_double(const char* s) {
    char* end = nullptr;
    double v = std::strtod(s, &end);
    if (!end || *end) usage();
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        auto val = [&]() -> const char* {
            if (i + 1 >= argc) usage();
            return argv[++i];
        };
        if (a == "--host")
            o.host = val();
        else if (a == "--port")
            o.port = std::atoi(val());
        else if (a == "--mode")
            o.mode = val();
        else if (a == "--size")
            o.size = static_cast<std::size_t>(std::atol(val()));
        else if (a == "--conns")
            o.conns = std::atoi(val());
        else if (a == "--duration")
            o.duration = to_double(val());
        else if (a == "--warmup")
            o.warmup = to_double(val());
        else if (a == "--timeout")
            o.timeout = to_double(val());
        else if (a == "--server-pid")
            o.server_pid = std::atol(val());
        else if (a == "--verify")
            o.verify = true;
        else
            usage();
    }
    if (o.port <= 0 || o.port > 65535 || o.size == 0 || o.duration <= 0 || o.warmup < 0 || o.timeout <= 0) usage();
    if (o.mode != "pingpong" && o.mode != "streaming" && o.mode != "idle") usage();
    if (o.conns < 0) o.conns = o.mode == "pingpong" ? 100 : o.mode == "streaming" ? 10 : 10000;
    if (o.conns == 0) usage();
    signal(SIGPIPE, SIG_IGN);
    struct sigaction usr1 {};
    usr1.sa_handler = on_sigusr1;  // no SA_RESTART: epoll_wait returns EINTR and the loop prints
    sigaction(SIGUSR1, &usr1, nullptr);
    raise_nofile(static_cast<std::size_t>(o.conns));

    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(o.port));
    if (inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr) != 1) fail("bad --host %s", o.host.c_str());

    if (o.mode == "idle") return run_idle(o, addr);
    Runner r(o, addr);
    return r.run();
}
