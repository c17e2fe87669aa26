// asyncio/detail/event_loop.hpp - the declaration of EventLoop and of what its signature needs
// (handles, the options of its methods, the loop's private doors for the layers above).
//
// Include <asyncio/events.hpp>, not this header: the loop's member templates (create_task,
// run_until_complete, create_connection, run_in_executor, ...) are defined by the layers they
// belong to (tasks.hpp, base_events.hpp, threads.hpp), and events.hpp brings them all. Those
// layers include this header, so the class is declared once and no header includes another
// at its bottom.
#pragma once

#include <asyncio/detail/frame_pool.hpp>
#include <asyncio/detail/ready_queue.hpp>
#include <asyncio/detail/ref_ptr.hpp>
#include <asyncio/exceptions.hpp>

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace asyncio {

class EventLoop;
template <class T>
class Coro;
template <class T>
class Task;
template <class T>
class Future;
class AnyTask;
class Executor;
class Socket;
class SockAddr;
struct AddrInfo;
class Transport;
class SubprocessTransport;
class DatagramTransport;
class BaseProtocol;
class Server;

namespace detail {
class TaskBase;
class FutureStateBase;
struct LoopAccess;
struct IoAccess;
struct AsyncGenHook;

/// Which way add_reader/add_writer watch an fd (also the index of the watch's per-direction
/// state).
enum class Watch : unsigned char { readable = 0, writable = 1 };

/// Converts a Python-style delay (double seconds) or any chrono duration to seconds.
template <class D>
double to_seconds(D d) {
    if constexpr (std::is_arithmetic_v<D>)
        return static_cast<double>(d);
    else
        return std::chrono::duration_cast<std::chrono::duration<double>>(d).count();
}

template <class D>
concept Delay =
    std::is_arithmetic_v<D> || requires(D d) { std::chrono::duration_cast<std::chrono::duration<double>>(d); };

/// Lets handles, futures and tasks find out whether their loop still exists and is open.
/// Handles (call_soon_threadsafe returns them to other threads) count atomically; futures and
/// tasks, which live on the loop's thread, count in `local_refs` without atomics - creating a
/// task must not cost two locked instructions. The loop's own reference passes to the local
/// holders when the loop is destroyed before them.
struct HandleState;
struct LoopAnchor {
    std::atomic<std::uint32_t> refs{1};
    std::uint32_t local_refs = 0;
    EventLoop* loop = nullptr;
    std::atomic<bool> closed{false};

    // The call_soon_threadsafe inbox lives here rather than in the loop: another thread that
    // holds the anchor can post safely even while the loop closes or after it is gone - the
    // post is then refused. `closed` changes under `inbox_mutex`.
    std::mutex inbox_mutex;
    std::vector<HandleState*> inbox;  // each holds one reference
    std::atomic<bool> wakeup_pending{false};
    int wakeup_fd = -1;  // the loop's eventfd; -1 once closed
    /// Queues `h` (taking over one reference) and wakes the loop; false when closed.
    bool post(HandleState* h);

    void add_ref() noexcept { refs.fetch_add(1, std::memory_order_relaxed); }
    void release() noexcept {
        if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
    }
    void add_local_ref() noexcept { ++local_refs; }
    void release_local_ref() noexcept {
        if (--local_refs == 0 && loop == nullptr) release();
    }
    /// ~EventLoop: the loop is gone; its reference is dropped now or by the last local holder.
    void detach_loop() noexcept {
        loop = nullptr;
        if (local_refs == 0) release();
    }
    /// The loop, or RuntimeError("Event loop is closed").
    EventLoop& open_loop() const {
        if (closed.load(std::memory_order_relaxed) || loop == nullptr) [[unlikely]]
            throw_closed();
        return *loop;
    }
    [[noreturn]] static void throw_closed();
};

/// A future's or task's (non-atomic) reference to its loop's anchor.
class LocalAnchorRef {
public:
    explicit LocalAnchorRef(LoopAnchor* a) noexcept : a_(a) { a_->add_local_ref(); }
    LocalAnchorRef(const LocalAnchorRef&) = delete;
    LocalAnchorRef& operator=(const LocalAnchorRef&) = delete;
    ~LocalAnchorRef() { a_->release_local_ref(); }
    LoopAnchor* operator->() const noexcept { return a_; }
    LoopAnchor* get() const noexcept { return a_; }

private:
    LoopAnchor* a_;
};

/// Something the timer queue can fire: a ready item whose ops have the timer_* functions.
/// Embedded in handles and tasks (sleep) so timers never allocate. `generation` is bumped on
/// cancellation: a queued entry whose generation no longer matches is skipped (O(1)
/// cancellation; the queue compacts when stale entries pile up).
struct TimerNode : ReadyItem {
    std::uint32_t generation = 0;
};

/// Shared state of Handle/TimerHandle.
/// Handles made on the loop's thread (call_soon, call_later) are counted without atomics, like
/// futures; only call_soon_threadsafe's (`shared`) may be held by other threads and pay for
/// atomic counting.
///
/// The callable is stored inline in the derived CallbackHandle<F> (no std::function, no
/// second allocation); these three functions reach it.
struct HandleState : TimerNode {
    struct Callable {
        void (*invoke)(HandleState*);          // moves the callable out, then calls it
        void (*reset)(HandleState*) noexcept;  // destroys the callable (cancel)
        void (*destroy)(HandleState*) noexcept;
    };
    HandleState(LoopAnchor* a, bool is_shared, const Callable* c) noexcept : shared(is_shared), anchor(a), callable(c) {
        if (shared)
            anchor->add_ref();
        else
            anchor->add_local_ref();
    }
    HandleState(const HandleState&) = delete;
    HandleState& operator=(const HandleState&) = delete;
    std::atomic<std::uint32_t> refs{1};
    std::atomic<bool> cancelled{false};
    const bool shared;
    bool is_timer = false;
    double when = 0;
    LoopAnchor* const anchor;
    const Callable* const callable;

    void add_ref() noexcept {
        if (shared)
            refs.fetch_add(1, std::memory_order_relaxed);
        else
            refs.store(refs.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
    void release() noexcept {
        if (shared) {
            if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) free_state();
        } else {
            std::uint32_t n = refs.load(std::memory_order_relaxed) - 1;
            refs.store(n, std::memory_order_relaxed);
            if (n == 0) free_state();
        }
    }
    static const ReadyItemOps ready_ops;

protected:
    ~HandleState() {
        if (shared)
            anchor->release();
        else
            anchor->release_local_ref();
    }

private:
    void free_state() noexcept { callable->destroy(this); }
};

/// A handle with its callable `F` inline.
template <class F>
struct CallbackHandle final : HandleState, PoolAllocated {
    CallbackHandle(LoopAnchor* a, bool is_shared, F&& f) : HandleState(a, is_shared, &table), fn(std::move(f)) {}
    std::optional<F> fn;
    static const Callable table;
};
template <class F>
const HandleState::Callable CallbackHandle<F>::table = {
    /*invoke=*/[](HandleState* h) {
        auto* self = static_cast<CallbackHandle*>(h);
        if (!self->fn) return;
        // Moved out first: the callback may cancel (and so reset) its own handle.
        F f = std::move(*self->fn);
        self->fn.reset();
        f();
    },
    /*reset=*/[](HandleState* h) noexcept { static_cast<CallbackHandle*>(h)->fn.reset(); },
    /*destroy=*/[](HandleState* h) noexcept { delete static_cast<CallbackHandle*>(h); },
};

template <class F>
HandleState* make_handle_state(LoopAnchor* anchor, bool shared, F&& fn) {
    using Fn = std::decay_t<F>;
    static_assert(std::is_invocable_v<Fn&>, "a loop callback must be callable with no arguments");
    return new CallbackHandle<Fn>(anchor, shared, Fn(std::forward<F>(fn)));
}
}  // namespace detail

/// What call_exception_handler() receives; Python's context dict as a struct.
struct ExceptionContext {
    std::string message;           ///< always set
    std::exception_ptr exception;  ///< may be null
    std::string future;            ///< repr of the task/future involved, or ""
    std::string handle;            ///< repr of the callback handle involved, or ""
};

/// A callback scheduled with call_soon(). cancel() prevents it from running.
class Handle {
public:
    Handle() = default;
    void cancel();
    bool cancelled() const noexcept { return state_ && state_->cancelled.load(); }
    explicit operator bool() const noexcept { return bool(state_); }

protected:
    friend class EventLoop;
    explicit Handle(detail::RefPtr<detail::HandleState> s) : state_(std::move(s)) {}
    detail::RefPtr<detail::HandleState> state_;
};

/// A callback scheduled with call_later()/call_at(); when() is its absolute loop time.
class TimerHandle : public Handle {
public:
    TimerHandle() = default;
    double when() const noexcept { return state_ ? state_->when : 0.0; }

private:
    friend class EventLoop;
    using Handle::Handle;
};

/// Marker accepted by EventLoop::set_task_factory(): every create_task() starts eagerly
/// (Python 3.12's asyncio.eager_task_factory).
struct EagerTaskFactory {};
inline constexpr EagerTaskFactory eager_task_factory{};

// ---- options of the loop's connection methods (Python's keyword arguments; documented with
// the methods in base_events.hpp) ---------------------------------------------------------------
namespace ssl {
class Context;

/// The `ssl=` option: a TLS context, or none. Accepts the context itself or a pointer, so
/// both `{.ssl = ctx}` (as in Python and API.md) and `{.ssl = &ctx}` work. It refers to the
/// caller's Context only until the call that receives it is made: that call (and the server
/// or connection it makes) takes its own copy of the handle at once, so the caller's Context
/// may be destroyed at any time after. Trivially destructible, like the option structs.
class ContextRef {
public:
    constexpr ContextRef() noexcept = default;
    constexpr ContextRef(std::nullptr_t) noexcept {}
    constexpr ContextRef(Context& context) noexcept : p_(&context) {}
    constexpr ContextRef(Context* context) noexcept : p_(context) {}
    constexpr explicit operator bool() const noexcept { return p_ != nullptr; }
    constexpr Context& operator*() const noexcept { return *p_; }
    constexpr Context* operator->() const noexcept { return p_; }
    constexpr Context* get() const noexcept { return p_; }

private:
    Context* p_ = nullptr;
};
}  // namespace ssl

/// Options of create_connection/open_connection (Python's keyword arguments). Trivially
/// destructible on purpose (see docs/compilers.md): strings are views, copied at once.
struct ConnectionOptions {
    /// TLS: the context to use (client side), or null for plain TCP (the call keeps a copy).
    ssl::ContextRef ssl;
    /// TLS: the name to check the certificate against and send as SNI (default: host).
    std::string_view server_hostname{};
    int family = 0;  ///< AF_INET, AF_INET6 or 0 (any)
    int proto = 0;
    int flags = 0;  ///< getaddrinfo flags
    /// local_addr: bind to this host/port before connecting (port 0: any).
    std::string_view local_host{};
    int local_port = -1;  ///< -1: no local_addr
    /// Happy Eyeballs (RFC 8305): delay in seconds before starting the next attempt in
    /// parallel; < 0 (the default) tries the addresses one after the other, as Python's None.
    double happy_eyeballs_delay = -1;
    /// Interleave address families (first family count); 0 = Python's default (1 when
    /// happy_eyeballs_delay is set).
    int interleave = 0;
    /// When every attempt failed: raise an ExceptionGroup of all errors instead of one.
    bool all_errors = false;
    double ssl_handshake_timeout = 60.0;
    double ssl_shutdown_timeout = 30.0;
};

/// Options of create_server/start_server.
struct ServerOptions {
    int family = 0;  ///< AF_INET, AF_INET6, or 0: every family the host resolves to
    int flags = 0;   ///< getaddrinfo flags (AI_PASSIVE is always added)
    int backlog = 100;
    bool reuse_address = true;  ///< SO_REUSEADDR (Python's default on Unix)
    bool reuse_port = false;    ///< SO_REUSEPORT: several servers (one per loop/core) on one port
    bool keep_alive = false;    ///< SO_KEEPALIVE on accepted connections
    bool start_serving = true;  ///< accept at once (else on start_serving()/serve_forever())
    ssl::ContextRef ssl;        ///< TLS (server side) or none (the server keeps a copy)
    double ssl_handshake_timeout = 60.0;
    double ssl_shutdown_timeout = 30.0;
    /// create_unix_server: remove the socket file when the server closes (Python 3.13's
    /// cleanup_socket).
    bool cleanup_socket = true;
};

/// Options of create_datagram_endpoint. With family = AF_UNIX, local_host and remote_host
/// are socket paths (Python's str addresses; "" means none, a leading '\0' an abstract name)
/// and the ports stay -1.
struct DatagramOptions {
    std::string_view local_host{};   ///< bind here (with local_port) ...
    int local_port = -1;             ///< ... -1: don't bind
    std::string_view remote_host{};  ///< connect() to this peer (with remote_port) ...
    int remote_port = -1;            ///< ... -1: unconnected
    int family = 0;                  ///< AF_INET, AF_INET6, AF_UNIX, or 0: the addresses' family
    int proto = 0;
    int flags = 0;
    bool reuse_port = false;
    bool allow_broadcast = false;
};

namespace detail {
template <class F>
using factory_result_t = std::invoke_result_t<F&>;
}  // namespace detail

/// Options of EventLoop::start_tls (Python's keyword arguments of loop.start_tls). Trivially
/// destructible on purpose (see docs/compilers.md): the name is a view, copied at once.
struct StartTlsOptions {
    bool server_side = false;
    /// Client side: the name to send as SNI and to check the certificate against (required
    /// when the context has check_hostname on).
    std::string_view server_hostname{};
    double ssl_handshake_timeout = 60.0;
    double ssl_shutdown_timeout = 30.0;
};

// ---- subprocesses (Python's asyncio.subprocess and loop.subprocess_exec) ---------------------

/// Where a child's stdin/stdout/stderr goes (Python's subprocess constants, same values):
/// a new pipe, /dev/null, or - for stderr - wherever its stdout goes. Any other value >= 0 is
/// an fd of ours the child gets; unset means the child inherits ours.
inline constexpr int PIPE = -1;
inline constexpr int STDOUT = -2;
inline constexpr int DEVNULL = -3;

/// The environment a child gets instead of ours: a view of a map (or of an optional map, as
/// Python's `env=`) that the call copies at once. Empty: the child inherits our environment.
class EnvRef {
public:
    using Map = std::map<std::string, std::string>;
    EnvRef() noexcept = default;
    EnvRef(std::nullopt_t) noexcept {}
    EnvRef(const Map& map) noexcept : map_(&map) {}
    EnvRef(const std::optional<Map>& map) noexcept : map_(map ? &*map : nullptr) {}
    explicit operator bool() const noexcept { return map_ != nullptr; }
    const Map* get() const noexcept { return map_; }

private:
    const Map* map_ = nullptr;
};

/// Options of create_subprocess_exec/_shell and loop.subprocess_exec/_shell (Python's keyword
/// arguments, in API.md's order). Trivially destructible on purpose, so that it can be written
/// inside a co_await expression (docs/compilers.md): cwd, env and pass_fds are views, copied
/// when the call is made.
struct SubprocessOptions {
    std::optional<int> stdin_ = {};
    std::optional<int> stdout_ = {};
    std::optional<int> stderr_ = {};
    std::string_view cwd = {};  // empty: ours
    EnvRef env = {};
    bool start_new_session = false;         // setsid() in the child
    std::optional<int> process_group = {};  // setpgid(0, n) in the child (0: a new group)
    /// The fds (besides 0, 1, 2) the child keeps; every other one is closed in the child.
    std::span<const int> pass_fds = {};
    /// The buffer limit of the Process's StreamReaders (create_subprocess_* only).
    std::size_t limit = 64 * 1024;
};

/// Construction options of an EventLoop.
struct LoopOptions {
    bool debug = false;
    /// Test clock: time() only advances when the loop would otherwise sleep, and then jumps
    /// straight to the next timer (like CPython's test_utils.TestLoop). Deterministic, instant.
    bool virtual_clock = false;
};

class EventLoop {
public:
    using ExceptionHandler = std::function<void(EventLoop&, const ExceptionContext&)>;

    EventLoop();
    explicit EventLoop(LoopOptions options);
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // ---- running and stopping -----------------------------------------------------------
    /// Runs until stop() is called.
    void run_forever();
    /// Runs the coroutine as a task (or waits for the task/future) and returns its result.
    template <class T>
    T run_until_complete(Coro<T> coro);
    template <class T>
    T run_until_complete(Task<T> task);
    template <class T>
    T run_until_complete(Future<T> future);
    /// Stops the loop after the current iteration.
    void stop() noexcept;
    bool is_running() const noexcept { return running_; }
    bool is_closed() const noexcept { return closed_; }
    /// Closes the loop: pending callbacks are dropped, pending tasks' coroutines destroyed.
    /// RuntimeError if running. Idempotent.
    void close();

    // ---- time and callbacks -------------------------------------------------------------
    /// Monotonic time in seconds (virtual time with LoopOptions::virtual_clock).
    double time() const noexcept;
    /// Python passes `*args`; pass a lambda. The callable is stored inline (no std::function)
    /// and may be move-only.
    template <class F>
    Handle call_soon(F&& fn) {
        check_closed();
        return call_soon_impl(detail::make_handle_state(anchor_, false, std::forward<F>(fn)));
    }
    template <detail::Delay D, class F>
    TimerHandle call_later(D delay, F&& fn) {
        check_closed();
        return call_at_impl(time() + detail::to_seconds(delay),
                            detail::make_handle_state(anchor_, false, std::forward<F>(fn)));
    }
    template <class F>
    TimerHandle call_at(double when, F&& fn) {
        check_closed();
        return call_at_impl(when, detail::make_handle_state(anchor_, false, std::forward<F>(fn)));
    }
    /// The only method callable from another thread.
    template <class F>
    Handle call_soon_threadsafe(F&& fn) {
        if (anchor_->closed.load()) throw RuntimeError("Event loop is closed");
        return call_soon_threadsafe_impl(detail::make_handle_state(anchor_, true, std::forward<F>(fn)));
    }

    // ---- tasks --------------------------------------------------------------------------
    template <class T>
    Task<T> create_task(Coro<T> coro, std::string_view name = {});
    /// create_task() of any other awaitable: wrapped in a coroutine first (asyncio/tasks.hpp).
    template <class A>
    auto create_task(A aw, std::string_view name = {});
    /// Python's loop.create_future(): a Future<T> bound to this loop.
    template <class T = void>
    Future<T> create_future();
    void set_task_factory(EagerTaskFactory) noexcept { eager_tasks_ = true; }
    void set_task_factory(std::nullptr_t) noexcept { eager_tasks_ = false; }
    bool eager_task_factory_enabled() const noexcept { return eager_tasks_; }

    // ---- errors and debugging -----------------------------------------------------------
    void set_exception_handler(ExceptionHandler handler);
    void set_exception_handler(std::nullptr_t) { set_exception_handler(ExceptionHandler{}); }
    const ExceptionHandler& get_exception_handler() const noexcept;
    /// Logs the context to the asyncio logger (stderr by default).
    void default_exception_handler(const ExceptionContext& context);
    /// Calls the installed handler, or the default one. Never throws.
    void call_exception_handler(const ExceptionContext& context) noexcept;
    void set_debug(bool enabled) noexcept { debug_ = enabled; }
    bool get_debug() const noexcept { return debug_; }
    /// In debug mode, a callback or task step that runs longer than this is logged.
    double slow_callback_duration() const noexcept { return slow_callback_duration_; }
    void set_slow_callback_duration(double seconds) noexcept { slow_callback_duration_ = seconds; }
    /// The I/O backend under this loop: "epoll" (the default) or "io_uring" (chosen when the
    /// loop is made, from $ASYNCIO_BACKEND). Behaviour is the same on both.
    std::string_view io_backend() const noexcept;

    // ---- Unix signals (main thread only, like Python) -------------------------------------
    /// Runs `fn` on the loop (as a callback) whenever signal `sig` arrives.
    /// std::invalid_argument for an invalid signal, RuntimeError outside the main thread.
    template <class F>
    void add_signal_handler(int sig, F&& fn) {
        add_signal_handler_impl(sig, std::function<void()>(std::forward<F>(fn)));
    }
    /// Removes the handler for `sig`; false if there was none. The default disposition (or
    /// ignoring, for SIGINT's KeyboardInterrupt default) is restored.
    bool remove_signal_handler(int sig);

    // ---- watching file descriptors (Python's add_reader & co) ----------------------------
    /// Calls `fn` (as a loop callback) whenever `fd` is readable - level-triggered, like
    /// Python's: again on every iteration while it stays readable. Replaces a previous reader.
    template <class F>
    void add_reader(int fd, F&& fn) {
        add_watch(fd, detail::Watch::readable, std::function<void()>(std::forward<F>(fn)));
    }
    /// Stops watching `fd` for reading; false if it was not watched.
    bool remove_reader(int fd) { return remove_watch(fd, detail::Watch::readable); }
    template <class F>
    void add_writer(int fd, F&& fn) {
        add_watch(fd, detail::Watch::writable, std::function<void()>(std::forward<F>(fn)));
    }
    bool remove_writer(int fd) { return remove_watch(fd, detail::Watch::writable); }

    // ---- low-level socket operations (asyncio/sockets.hpp) -------------------------------
    // Python's loop.sock_*: the socket must be non-blocking; the Socket must outlive the
    // operation. Errors are std::system_error with the errno (Python's OSError).
    /// Receives up to `n` bytes; "" means the peer closed its side.
    Coro<std::string> sock_recv(Socket& sock, std::size_t n);
    /// Receives into `buffer`; returns the number of bytes (0 at EOF).
    Coro<std::size_t> sock_recv_into(Socket& sock, std::span<char> buffer);
    /// Receives one datagram of up to `n` bytes and the sender's address.
    Coro<std::pair<std::string, SockAddr>> sock_recvfrom(Socket& sock, std::size_t n);
    /// Receives one datagram into the first `nbytes` bytes of `buffer` (0: all of it); returns
    /// the bytes written and the sender's address. A longer datagram is truncated, as by
    /// recvfrom(2). std::invalid_argument (Python's ValueError) when nbytes > buffer.size().
    Coro<std::pair<std::size_t, SockAddr>> sock_recvfrom_into(Socket& sock, std::span<char> buffer,
                                                              std::size_t nbytes = 0);
    /// Sends all of `data` (waiting for the socket to drain as needed).
    Coro<void> sock_sendall(Socket& sock, std::string_view data);
    /// Sends one datagram to `address`; returns the bytes sent.
    Coro<std::size_t> sock_sendto(Socket& sock, std::string_view data, const SockAddr& address);
    /// Accepts a connection: the new (non-blocking) socket and the peer's address.
    Coro<std::pair<Socket, SockAddr>> sock_accept(Socket& sock);
    /// Connects to `address`.
    Coro<void> sock_connect(Socket& sock, const SockAddr& address);
    /// Sends `count` bytes (all to the end when nullopt) of the file open on `fd`, from
    /// `offset`, with sendfile(2); when that is not possible and `fallback` is true, reads and
    /// sends in chunks. Returns the bytes sent; the file position ends after them, as Python's.
    Coro<std::size_t> sock_sendfile(Socket& sock, int fd, std::size_t offset = 0,
                                    std::optional<std::size_t> count = std::nullopt, bool fallback = true);
    /// getaddrinfo(3) in the default executor (it may block on DNS), like Python's.
    /// `port` may be a number or a service name; "" / 0 means none.
    Coro<std::vector<AddrInfo>> getaddrinfo(std::string host, std::string port, int family, int type, int proto,
                                            int flags);
    Coro<std::vector<AddrInfo>> getaddrinfo(std::string host, int port);
    /// getnameinfo(3) in the default executor: (host, service).
    Coro<std::pair<std::string, std::string>> getnameinfo(const SockAddr& address, int flags);

    // ---- connections and servers (asyncio/base_events.hpp) --------------------------------
    /// Connects to host:port (resolved with getaddrinfo; each address tried in turn, or with
    /// Happy Eyeballs) and returns (transport, protocol) once the protocol's connection_made
    /// has run. TCP_NODELAY is set, as Python does.
    template <class F>
    Coro<std::pair<std::shared_ptr<Transport>, detail::factory_result_t<F>>> create_connection(
        F factory, std::string host, int port, ConnectionOptions opts = {});
    template <class F>
    Coro<std::pair<std::shared_ptr<Transport>, detail::factory_result_t<F>>> create_unix_connection(
        F factory, std::string path, ConnectionOptions opts = {});
    /// Python's create_connection(sock=...): wraps an already connected stream socket (the
    /// client side of TLS with opts.ssl, which then needs opts.server_hostname). The
    /// transport owns the socket from the start: on failure it is closed.
    template <class F>
    Coro<std::pair<std::shared_ptr<Transport>, detail::factory_result_t<F>>> create_connection(
        F factory, Socket sock, ConnectionOptions opts = {});
    /// Python's create_unix_connection(sock=...): the same for a connected AF_UNIX socket.
    template <class F>
    Coro<std::pair<std::shared_ptr<Transport>, detail::factory_result_t<F>>> create_unix_connection(
        F factory, Socket sock, ConnectionOptions opts = {});
    /// Wraps an already connected socket (Python's connect_accepted_socket).
    template <class F>
    Coro<std::pair<std::shared_ptr<Transport>, detail::factory_result_t<F>>> connect_accepted_socket(
        F factory, Socket sock, ConnectionOptions opts = {});
    /// Python's connect_read_pipe: a read transport over `fd` (a pipe, FIFO, character device
    /// such as a pty, or stream socket), returned once connection_made has run. The factory's
    /// protocol is a Protocol or a BufferedProtocol. The transport owns the fd (made
    /// non-blocking, closed after connection_lost). Any other kind of fd (a regular file):
    /// std::invalid_argument, and the fd stays the caller's, as in Python. The transport's
    /// writing methods throw RuntimeError (docs/python-to-cpp.md).
    template <class F>
    Coro<std::pair<std::shared_ptr<Transport>, detail::factory_result_t<F>>> connect_read_pipe(F factory, int fd);
    /// Python's connect_write_pipe: the same for the writing end. The reader going away is
    /// noticed even while nothing is written (pipes, FIFOs, sockets): connection_lost(nullptr),
    /// or std::system_error EPIPE when data was still buffered. A write never raises SIGPIPE.
    /// The transport's reading methods throw RuntimeError.
    template <class F>
    Coro<std::pair<std::shared_ptr<Transport>, detail::factory_result_t<F>>> connect_write_pipe(F factory, int fd);
    /// Listens on host:port ("" = every interface; port 0 = any free port) and creates a
    /// protocol and transport per accepted connection.
    template <class F>
    Coro<Server> create_server(F factory, std::string host, int port, ServerOptions opts = {});
    /// Listens on several hosts at once.
    template <class F>
    Coro<Server> create_server(F factory, std::vector<std::string> hosts, int port, ServerOptions opts = {});
    /// Python's create_server(sock=...): serves on a bound stream socket (listen() is called
    /// with opts.backlog when serving starts). The server owns the socket.
    template <class F>
    Coro<Server> create_server(F factory, Socket sock, ServerOptions opts = {});
    template <class F>
    Coro<Server> create_unix_server(F factory, std::string path, ServerOptions opts = {});
    /// Python's create_unix_server(sock=...): serves on a bound AF_UNIX stream socket; its
    /// socket file is removed when the server closes, as for a path (Python 3.13).
    template <class F>
    Coro<Server> create_unix_server(F factory, Socket sock, ServerOptions opts = {});
    /// A datagram endpoint: bound to opts' local address, connected to its remote address,
    /// or, with family alone, neither. With family AF_UNIX the addresses are socket paths.
    template <class F>
    Coro<std::pair<std::shared_ptr<DatagramTransport>, detail::factory_result_t<F>>> create_datagram_endpoint(
        F factory, DatagramOptions opts);
    /// Python's create_datagram_endpoint(sock=...): an endpoint over the caller's datagram
    /// socket, as it is (bound, connected or neither). `opts` must not ask for anything that
    /// would set the socket up (addresses, family, proto, flags, reuse_port,
    /// allow_broadcast): std::invalid_argument, as Python's ValueError. The transport owns
    /// the socket from the start: on failure it is closed.
    template <class F>
    Coro<std::pair<std::shared_ptr<DatagramTransport>, detail::factory_result_t<F>>> create_datagram_endpoint(
        F factory, Socket sock, DatagramOptions opts = {});
    /// Upgrades an open connection to TLS (Python's loop.start_tls): returns the new transport
    /// that `protocol` must use from now on, once the handshake is done. `protocol` is not told
    /// connection_made again. `transport` must be a stream transport made by this library (TCP,
    /// Unix, or TLS itself); std::invalid_argument otherwise. Handshake errors are raised
    /// (ssl::SSLCertVerificationError...); on any failure, including cancellation, the
    /// transport is closed. The call keeps its own copy of the context handle. Defined in
    /// src/tls/sslproto.cpp; see asyncio/ssl.hpp.
    Coro<std::shared_ptr<Transport>> start_tls(std::shared_ptr<Transport> transport,
                                               std::shared_ptr<BaseProtocol> protocol, ssl::Context context,
                                               StartTlsOptions opts = {});

    /// Python's loop.sendfile(transport, file, ...): sends a file over a transport (natively
    /// with sendfile(2) for plain sockets, else by chunks with the transport's flow control).
    /// The transport must not be written to meanwhile (RuntimeError).
    Coro<std::size_t> sendfile(std::shared_ptr<Transport> transport, int fd, std::size_t offset = 0,
                               std::optional<std::size_t> count = std::nullopt, bool fallback = true);

    // ---- subprocesses (asyncio/subprocess.hpp) -----------------------------------------------
    /// Starts `argv` (argv[0] searched in PATH) as a child process (Python's
    /// loop.subprocess_exec): the factory's SubprocessProtocol hears about its pipes and its
    /// exit. Without options, stdin, stdout and stderr are pipes (Python's defaults); with
    /// options, an unset stream is inherited. A program that cannot be started throws
    /// std::system_error with the child's errno (ENOENT, EACCES...), leaking nothing.
    template <class F>
    Coro<std::pair<std::shared_ptr<SubprocessTransport>, detail::factory_result_t<F>>> subprocess_exec(
        F protocol_factory, std::vector<std::string> argv);
    template <class F>
    Coro<std::pair<std::shared_ptr<SubprocessTransport>, detail::factory_result_t<F>>> subprocess_exec(
        F protocol_factory, std::vector<std::string> argv, SubprocessOptions opts);
    /// `/bin/sh -c cmd` (Python's loop.subprocess_shell).
    template <class F>
    Coro<std::pair<std::shared_ptr<SubprocessTransport>, detail::factory_result_t<F>>> subprocess_shell(
        F protocol_factory, std::string cmd);
    template <class F>
    Coro<std::pair<std::shared_ptr<SubprocessTransport>, detail::factory_result_t<F>>> subprocess_shell(
        F protocol_factory, std::string cmd, SubprocessOptions opts);

    // ---- executors (asyncio/threads.hpp) ---------------------------------------------------
    /// Runs `fn()` on `executor` (nullptr: the default executor) and returns a Future for its
    /// result, set on this loop when the work is done. Defined in <asyncio/threads.hpp>.
    template <class F>
    auto run_in_executor(Executor* executor, F fn) -> Future<std::invoke_result_t<F&>>;
    /// The default executor: a ThreadPoolExecutor created on first use.
    Executor& default_executor();
    /// Replaces the default executor (Python's loop.set_default_executor).
    void set_default_executor(std::unique_ptr<Executor> executor);

    // ---- shutdown hooks used by asyncio::run / Runner ------------------------------------
    /// Finalizes the async generators that were started on this loop and are still open
    /// (Python's shutdown_asyncgens; asyncio::run calls it).
    void shutdown_asyncgens() noexcept;
    /// Shuts the default executor down, waiting for its threads without blocking the loop
    /// (a helper thread joins them; the loop keeps delivering their results meanwhile).
    Coro<void> shutdown_default_executor();

private:
    friend struct detail::LoopAccess;
    friend struct detail::IoAccess;
    struct Impl;

    // Each takes ownership of `h` (one reference).
    Handle call_soon_impl(detail::HandleState* h);
    TimerHandle call_at_impl(double when, detail::HandleState* h);
    Handle call_soon_threadsafe_impl(detail::HandleState* h);
    void add_signal_handler_impl(int sig, std::function<void()> fn);
    void add_watch(int fd, detail::Watch direction, std::function<void()> fn);
    bool remove_watch(int fd, detail::Watch direction);
    void dispatch_signals();
    void check_closed() const {
        if (closed_) [[unlikely]]
            detail::LoopAnchor::throw_closed();
    }
    void run_once();
    void run_ready_batch();
    void run_after_batch();
    void drain_threadsafe_inbox();
    void process_timers();
    void run_item(detail::ReadyItem* item);  // debug mode: runs and times one item

    detail::ItemList ready_;
    detail::ItemList after_batch_;  // see LoopAccess::schedule_after_batch
    detail::TaskBase* current_task_ = nullptr;
    // Pending tasks: the loop owns them (the loop core sees only ReadyItems it can abandon).
    std::vector<detail::ReadyItem*> tasks_;
    std::uint64_t task_counter_ = 0;  // for default task names "Task-N"
    detail::LoopAnchor* anchor_;
    bool running_ = false;
    bool stopping_ = false;
    bool closed_ = false;
    bool debug_ = false;
    bool eager_tasks_ = false;
    double slow_callback_duration_ = 0.1;
    std::unique_ptr<Impl> impl_;
};

namespace detail {
/// The running loop of this thread (nullptr when none); set by run_forever.
extern thread_local constinit EventLoop* tl_running_loop;
[[noreturn]] void throw_no_running_loop();
}  // namespace detail

/// The loop running in this thread; RuntimeError("no running event loop") outside one.
inline EventLoop& get_running_loop() {
    if (EventLoop* loop = detail::tl_running_loop) [[likely]]
        return *loop;
    detail::throw_no_running_loop();
}
/// Like get_running_loop() but returns nullptr instead of throwing.
inline EventLoop* get_running_loop_or_null() noexcept { return detail::tl_running_loop; }

/// Where the runtime's log messages go (Python's "asyncio" logger). The default writes to
/// stderr. Set an empty function to restore the default.
using LogHandler = std::function<void(std::string_view message)>;
void set_log_handler(LogHandler handler);
/// The level of a log message (Python's logging levels for the same messages).
enum class LogLevel { debug, info, warning, error };
/// Like LogHandler, with each message's level; when set, it takes the messages instead (the
/// Python face sends them to Python's "asyncio" logger). Set an empty function to remove it.
using LogSink = std::function<void(LogLevel level, std::string_view message)>;
void set_log_sink(LogSink sink);
void log_message(std::string_view message, LogLevel level = LogLevel::warning);

namespace detail {
/// The runtime's private door into the loop, used by tasks, futures and awaiters.
struct LoopAccess {
    static void schedule(EventLoop& loop, ReadyItem* item) noexcept { loop.ready_.push_back(item); }
    /// Runs `item` once the current iteration's callbacks have run, before the loop polls
    /// again (libuv's "check" phase): what an iteration left to do in bulk - the Python face
    /// sends each transport's writes of one iteration with one system call. Items run in the
    /// order they were added; a loop that closes discards them.
    static void schedule_after_batch(EventLoop& loop, ReadyItem* item) noexcept { loop.after_batch_.push_back(item); }
    /// Like schedule(), for a new call_soon() from a layer above: what other threads posted
    /// with call_soon_threadsafe() before it goes first, as call_soon() guarantees.
    static void schedule_soon(EventLoop& loop, ReadyItem* item) {
        if (loop.anchor_->wakeup_pending.load(std::memory_order_acquire)) [[unlikely]]
            loop.drain_threadsafe_inbox();
        loop.ready_.push_back(item);
    }
    static TaskBase*& current_task(EventLoop& loop) noexcept { return loop.current_task_; }
    static LoopAnchor* anchor(EventLoop& loop) noexcept { return loop.anchor_; }
    /// Queues a callback made beforehand (make_handle_state): allocates nothing, for what must
    /// not fail for want of memory (a transport's connection_lost).
    static Handle call_soon_prepared(EventLoop& loop, HandleState* h) { return loop.call_soon_impl(h); }
    static void add_timer(EventLoop& loop, TimerNode* node, double when);
    /// Whether the caller is on the thread that created (or last ran) the loop.
    static bool on_loop_thread(const EventLoop& loop) noexcept;
    /// Futures waiting for executor work: kept by the loop (on its thread) under an id, so a
    /// worker thread carries only the id, never a handle. The loop drops them when it closes.
    /// (src/runtime/loop_state.cpp)
    static std::uint64_t park_future(EventLoop& loop, FutureStateBase* f);
    static RefPtr<FutureStateBase> unpark_future(EventLoop& loop, std::uint64_t id) noexcept;
    static void cancel_timer(EventLoop& loop, TimerNode* node) noexcept;
    static void register_task(EventLoop& loop, TaskBase* task);
    static void unregister_task(EventLoop& loop, TaskBase* task) noexcept;
    /// The pending tasks, as the loop holds them (each a TaskBase).
    static const std::vector<ReadyItem*>& pending_tasks(EventLoop& loop) noexcept { return loop.tasks_; }
    static std::uint64_t next_task_number(EventLoop& loop) noexcept { return ++loop.task_counter_; }
    static void check_open(const EventLoop& loop) { loop.check_closed(); }
    /// The checks run_until_complete() makes before anything else (closed, running).
    static void check_can_run_until_complete(const EventLoop& loop);
    /// The number of callbacks in the ready queue and of live timers (for tests).
    static std::size_t ready_count(const EventLoop& loop) noexcept { return loop.ready_.size(); }
    static std::size_t timer_count(const EventLoop& loop) noexcept;
    /// Calls `visit(item, arg)` once for each reference the ready queue and the timer heap
    /// hold (an item queued twice is seen twice, a cancelled timer's entry until the heap
    /// drops it), stopping at the first non-zero result, which it returns. For a garbage
    /// collector above (the Python face's tp_traverse), which must see exactly the references
    /// the loop holds: an item is always taken out of the queue or heap before its reference
    /// is dropped.
    static int visit_queued(const EventLoop& loop, int (*visit)(ReadyItem* item, void* arg), void* arg);
};
}  // namespace detail

}  // namespace asyncio
