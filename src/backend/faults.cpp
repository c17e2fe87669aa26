// src/backend/faults.cpp - see faults.hpp.
#include "faults.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace asyncio::detail::faults {

std::atomic<bool> active_flag{false};

namespace {

std::atomic<std::uint64_t> seed_{0};
std::atomic<std::uint64_t> threshold_{0};  // a call is faulted when its draw is below this
std::atomic<unsigned> kinds_{0};
std::atomic<std::uint64_t> calls_{0};
std::atomic<std::uint64_t> n_eintr{0}, n_eagain{0}, n_short{0}, n_reset{0}, n_emfile{0}, n_nomem{0};

std::uint64_t mix(std::uint64_t z) noexcept {  // splitmix64's finaliser
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/// A pipe, a pty or a stream socket: a transfer may be cut anywhere. Datagram sockets keep
/// message boundaries, so they are never shortened (that would truncate the message).
bool is_stream(int fd) noexcept {
    int type = 0;
    socklen_t len = sizeof type;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) return errno == ENOTSOCK;
    return type == SOCK_STREAM;
}
bool is_socket(int fd) noexcept {
    int type = 0;
    socklen_t len = sizeof type;
    return ::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
}

/// The kinds that make sense for `call`.
unsigned applicable(Call call) noexcept {
    switch (call) {
        case Call::read:
        case Call::recv:
            return eintr | eagain | short_io | reset;
        case Call::write:
        case Call::send:
            return eintr | eagain | short_io | reset | nomem;
        case Call::recvfrom:
            return eintr | eagain;
        case Call::sendto:
            return eintr | eagain | nomem;
        case Call::accept:
            return eintr | eagain | emfile;
        case Call::connect:
            return eagain;
        case Call::sendfile:
            return eintr | eagain | short_io | reset;
    }
    return 0;
}

const bool from_environment = [] {
    const char* env = std::getenv("ASYNCIO_FAULTS");
    if (env == nullptr || *env == '\0') return false;
    if (!compiled_in) {
        std::fprintf(stderr,
                     "ASYNCIO_FAULTS is set, but this build has no fault injection "
                     "(configure with -DASYNCIO_FAULT_INJECTION=ON, as the test presets do); ignored\n");
        return false;
    }
    Config config;
    if (!parse(env, config)) {
        std::fprintf(stderr,
                     "ASYNCIO_FAULTS=\"%s\" is not seed:rate:kinds (kinds: eintr,eagain,short,soft,"
                     "reset,emfile,nomem,hard); ignored\n",
                     env);
        return false;
    }
    set(config);
    const char* report = std::getenv("ASYNCIO_FAULTS_REPORT");
    if (report != nullptr && *report != '\0' && *report != '0') {
        std::atexit([] {
            const Counts c = counts();
            std::fprintf(stderr,
                         "ASYNCIO_FAULTS: %llu calls, injected eintr %llu, eagain %llu, short %llu, reset %llu, "
                         "emfile %llu, nomem %llu\n",
                         static_cast<unsigned long long>(c.calls), static_cast<unsigned long long>(c.eintr),
                         static_cast<unsigned long long>(c.eagain), static_cast<unsigned long long>(c.short_io),
                         static_cast<unsigned long long>(c.reset), static_cast<unsigned long long>(c.emfile),
                         static_cast<unsigned long long>(c.nomem));
        });
    }
    return true;
}();

}  // namespace

bool parse(const char* text, Config& out) noexcept {
    char* end = nullptr;
    errno = 0;
    const unsigned long long seed = std::strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != ':') return false;
    const char* p = end + 1;
    const double rate = std::strtod(p, &end);
    if (end == p || *end != ':' || !(rate >= 0 && rate <= 1)) return false;
    unsigned kinds = 0;
    std::string_view rest(end + 1);
    if (rest.empty()) return false;
    while (!rest.empty()) {
        const std::size_t comma = rest.find(',');
        const std::string_view word = rest.substr(0, comma);
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        if (word == "eintr")
            kinds |= eintr;
        else if (word == "eagain")
            kinds |= eagain;
        else if (word == "short")
            kinds |= short_io;
        else if (word == "soft")
            kinds |= soft;
        else if (word == "reset")
            kinds |= reset;
        else if (word == "emfile")
            kinds |= emfile;
        else if (word == "nomem")
            kinds |= nomem;
        else if (word == "hard")
            kinds |= hard;
        else
            return false;
    }
    out = Config{seed, rate, kinds};
    return true;
}

void set(const Config& config) noexcept {
    active_flag.store(false, std::memory_order_relaxed);
    seed_.store(mix(config.seed), std::memory_order_relaxed);
    const double r = config.rate < 0 ? 0 : config.rate > 1 ? 1 : config.rate;
    threshold_.store(r >= 1 ? ~std::uint64_t{0} : static_cast<std::uint64_t>(r * 18446744073709551616.0),
                     std::memory_order_relaxed);
    kinds_.store(config.kinds, std::memory_order_relaxed);
    calls_.store(0, std::memory_order_relaxed);
    for (auto* n : {&n_eintr, &n_eagain, &n_short, &n_reset, &n_emfile, &n_nomem}) n->store(0);
    active_flag.store(config.kinds != 0 && r > 0, std::memory_order_release);
}

void clear() noexcept { active_flag.store(false, std::memory_order_release); }

Counts counts() noexcept {
    return Counts{calls_.load(),  n_eintr.load(),  n_eagain.load(), n_short.load(),
                  n_reset.load(), n_emfile.load(), n_nomem.load()};
}

Snapshot snapshot() noexcept {
    return Snapshot{active_flag.load(std::memory_order_acquire), seed_.load(), threshold_.load(), kinds_.load(),
                    counts()};
}

void restore(const Snapshot& s) noexcept {
    active_flag.store(false, std::memory_order_relaxed);
    seed_.store(s.seed, std::memory_order_relaxed);
    threshold_.store(s.threshold, std::memory_order_relaxed);
    kinds_.store(s.kinds, std::memory_order_relaxed);
    calls_.store(s.counts.calls, std::memory_order_relaxed);
    n_eintr.store(s.counts.eintr);
    n_eagain.store(s.counts.eagain);
    n_short.store(s.counts.short_io);
    n_reset.store(s.counts.reset);
    n_emfile.store(s.counts.emfile);
    n_nomem.store(s.counts.nomem);
    active_flag.store(s.active, std::memory_order_release);
}

int decide(Call call, int fd, std::size_t& length) noexcept {
    const int saved_errno = errno;
    const std::uint64_t n = calls_.fetch_add(1, std::memory_order_relaxed);
    const std::uint64_t draw = mix(seed_.load(std::memory_order_relaxed) ^ (n * 0xD1B54A32D192ED03ull));
    if (draw >= threshold_.load(std::memory_order_relaxed)) return 0;
    unsigned allowed = kinds_.load(std::memory_order_relaxed) & applicable(call);
    if (allowed & (short_io | reset)) {
        // Shortening cuts a stream only; a reset only on a socket or a pipe being written.
        const bool stream = is_stream(fd);
        if (!stream || length <= 1) allowed &= ~short_io;
        if (!stream || ((call == Call::read) && !is_socket(fd))) allowed &= ~reset;
    }
    if (allowed == 0) {
        errno = saved_errno;
        return 0;
    }
    // Pick one of the allowed kinds with the draw's other bits.
    unsigned choices[6];
    int count = 0;
    for (unsigned bit = 1; bit <= nomem; bit <<= 1)
        if (allowed & bit) choices[count++] = bit;
    const unsigned kind = choices[mix(draw) % static_cast<unsigned>(count)];
    const bool second = (draw >> 7) & 1;  // which of two errors, for the kinds that have two
    errno = saved_errno;
    switch (kind) {
        case eintr:
            n_eintr.fetch_add(1, std::memory_order_relaxed);
            return EINTR;
        case eagain:
            n_eagain.fetch_add(1, std::memory_order_relaxed);
            return EAGAIN;
        case short_io:
            n_short.fetch_add(1, std::memory_order_relaxed);
            length = 1;
            return 0;
        case reset:
            n_reset.fetch_add(1, std::memory_order_relaxed);
            return call == Call::read || call == Call::recv ? ECONNRESET : EPIPE;
        case emfile:
            n_emfile.fetch_add(1, std::memory_order_relaxed);
            return second ? ENFILE : EMFILE;
        case nomem:
            n_nomem.fetch_add(1, std::memory_order_relaxed);
            return second ? ENOBUFS : ENOMEM;
    }
    return 0;
}

}  // namespace asyncio::detail::faults
