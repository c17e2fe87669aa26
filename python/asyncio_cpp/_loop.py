"""asyncio_cpp.Loop: an asyncio event loop on asyncio-cpp's C++ core.

The native base (asyncio_cpp._core.Loop) schedules and runs callbacks, keeps the timers,
watches file descriptors and makes futures and tasks (CPython's own asyncio.Future and
asyncio.Task, so every task semantic is CPython's). This class adds what runs once per
program or on rare paths, with the stock loop's behaviour and messages: the set-up around
run_forever() (the running loop, async generator hooks, coroutine origin tracking),
run_until_complete(), the exception handler, executors, name resolution and signals.
"""

import asyncio
import concurrent.futures
import errno
import io
import logging
import os
import signal
import socket
import sys
import threading
import warnings
import weakref

from asyncio import base_events, constants, coroutines, events, exceptions, futures, tasks, trsock

try:
    import ssl
except ImportError:  # Python built without OpenSSL
    ssl = None

from . import _core

logger = logging.getLogger("asyncio")

__all__ = ("Loop", "Server")


def _run_until_complete_cb(fut):
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            # The loop stops by the exception itself, leaving run_forever().
            return
    fut.get_loop().stop()


_unset = object()
# Whether create_unix_server() removes its socket file when the server closes: Python 3.13's
# cleanup_socket=True; earlier versions leave the file, and so do we under them.
_CLEANUP_SOCKET_DEFAULT = sys.version_info >= (3, 13)
# create_datagram_endpoint(sock=<a stream socket>)'s message, as each version words it.
_DATAGRAM_SOCKET_EXPECTED = ("A datagram socket was expected" if sys.version_info >= (3, 13)
                             else "A UDP Socket was expected")


def _transport_socket(fd):
    """get_extra_info('socket') and Server.sockets: an asyncio.trsock.TransportSocket over a
    socket object of a duplicate of the fd (options set through it apply to the same socket;
    closing it leaves the transport's fd open)."""
    return trsock.TransportSocket(socket.socket(fileno=os.dup(fd)))


def _wrap_socket(sock):
    """The caller's own socket object (sock=) as a transport's 'socket' extra."""
    return trsock.TransportSocket(sock)


async def _with_sock(sock, made):
    """Awaits a connection or server made on a duplicate of `sock`'s fd: the caller's socket
    object stays usable (getsockname...) and is closed with the transport or server; if
    making it fails, it is closed now, as the stock loop closes it."""
    try:
        return await made
    except BaseException:
        sock.close()
        raise


def _port_number(port):
    if port is None:
        return 0
    if isinstance(port, str):
        return int(port) if port.isdigit() else socket.getservbyname(port)
    return int(port)


def _no_tls(what):
    raise NotImplementedError(
        f"asyncio_cpp: {what} with TLS (ssl=) is not implemented yet (issue 16, part 2); "
        f"use the stock loop for TLS meanwhile")


class Server(events.AbstractServer):
    """A listening server (asyncio.Server's interface): close(), serve_forever(),
    wait_closed(), sockets, close_clients(), abort_clients(), async with."""

    def __init__(self, loop, handle, sock=None):
        self._loop = loop
        self._handle = handle
        self._sockets = None
        self._sock = sock  # create_server(sock=): the caller's socket, closed with the server

    def __repr__(self):
        return f"<{self.__class__.__name__} sockets={self.sockets!r}>"

    def get_loop(self):
        return self._loop

    def is_serving(self):
        return self._handle.is_serving()

    @property
    def sockets(self):
        fds = self._handle.fds()
        if not fds:
            self._drop_sockets()
            return ()
        if self._sockets is None:
            if self._sock is not None:
                self._sockets = (trsock.TransportSocket(self._sock),)
            else:
                self._sockets = tuple(_transport_socket(fd) for fd in fds)
        return self._sockets

    def _drop_sockets(self):
        if self._sockets:
            for s in self._sockets:
                s._sock.close()
        self._sockets = None
        if self._sock is not None and not self._handle.fds():
            self._sock.close()

    def close(self):
        self._handle.close()
        self._drop_sockets()

    def close_clients(self):
        self._handle.close_clients()

    def abort_clients(self):
        self._handle.abort_clients()

    async def start_serving(self):
        await self._handle.start_serving()

    async def serve_forever(self):
        try:
            await self._handle.serve_forever()
        finally:
            self._drop_sockets()

    async def wait_closed(self):
        await self._handle.wait_closed()


def _check_file_range(offset, count):
    """sendfile()'s and sock_sendfile()'s checks of offset and count, with Python's messages."""
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")
    if not isinstance(offset, int):
        raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
    if offset < 0:
        raise ValueError(f"offset must be a non-negative integer (got {offset!r})")


def _not_yet(name):
    def method(self, *args, **kwargs):
        raise NotImplementedError(
            f"asyncio_cpp.Loop.{name}() is not implemented yet; use the stock loop for it "
            f"(asyncio.new_event_loop()) meanwhile")

    method.__name__ = name
    return method


class Loop(_core.Loop, asyncio.AbstractEventLoop):
    """An asyncio event loop whose core is asyncio-cpp's (epoll or io_uring: ASYNCIO_BACKEND)."""

    def __init__(self):
        self._exception_handler = None
        self._default_executor = None
        self._executor_shutdown_called = False
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._old_agen_hooks = None
        self._signal_handlers = {}
        self._ssock = self._csock = None
        self._transports = weakref.WeakValueDictionary()  # fd -> its transport
        self.set_debug(coroutines._is_debug_mode())

    def __repr__(self):
        return (f"<{self.__class__.__name__} running={self.is_running()} "
                f"closed={self.is_closed()} debug={self.get_debug()}>")

    def __del__(self, _warn=warnings.warn):
        if not self.is_closed():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    # ---- running and stopping --------------------------------------------------------------

    def _check_running(self):
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if events._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def _check_closed(self):
        if self.is_closed():
            raise RuntimeError("Event loop is closed")

    def run_forever(self):
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self.get_debug())
        old_agen_hooks = sys.get_asyncgen_hooks()
        try:
            sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                                   finalizer=self._asyncgen_finalizer_hook)
            events._set_running_loop(self)
            self._run()
        finally:
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def run_until_complete(self, future):
        """Run until the future (a coroutine is wrapped in a Task) is done; return its result."""
        self._check_closed()
        self._check_running()
        new_task = not futures.isfuture(future)
        future = tasks.ensure_future(future, loop=self)
        if new_task:
            # The task is ours: an exception it ends with is raised here, not logged.
            future._log_destroy_pending = False
        future.add_done_callback(_run_until_complete_cb)
        try:
            self.run_forever()
        except BaseException:
            if new_task and future.done() and not future.cancelled():
                # Retrieved here, so it is not logged as "never retrieved".
                future.exception()
            raise
        finally:
            future.remove_done_callback(_run_until_complete_cb)
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def close(self):
        """Close the loop: drop pending callbacks, shut the default executor down (no wait)."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self.get_debug():
            logger.debug("Close %r", self)
        # (getattr: a loop whose __init__ failed is closed by __del__ too.)
        for sig in list(getattr(self, "_signal_handlers", ())):
            self.remove_signal_handler(sig)
        self._close()
        self._executor_shutdown_called = True
        executor = getattr(self, "_default_executor", None)
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    def set_debug(self, enabled):
        self._set_debug(enabled)
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    def _set_coroutine_origin_tracking(self, enabled):
        if bool(enabled) == bool(self._coroutine_origin_tracking_enabled):
            return
        if enabled:
            self._coroutine_origin_tracking_saved_depth = sys.get_coroutine_origin_tracking_depth()
            sys.set_coroutine_origin_tracking_depth(constants.DEBUG_STACK_DEPTH)
        else:
            sys.set_coroutine_origin_tracking_depth(self._coroutine_origin_tracking_saved_depth)
        self._coroutine_origin_tracking_enabled = enabled

    # ---- async generators ----------------------------------------------------------------

    def _asyncgen_finalizer_hook(self, agen):
        self._asyncgens.discard(agen)
        if not self.is_closed():
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    def _asyncgen_firstiter_hook(self, agen):
        if self._asyncgens_shutdown_called:
            warnings.warn(
                f"asynchronous generator {agen!r} was scheduled after "
                f"loop.shutdown_asyncgens() call",
                ResourceWarning, source=self)
        self._asyncgens.add(agen)

    async def shutdown_asyncgens(self):
        """Close every async generator still open (asyncio.run calls it)."""
        self._asyncgens_shutdown_called = True
        if not len(self._asyncgens):
            return
        closing_agens = list(self._asyncgens)
        self._asyncgens.clear()
        results = await tasks.gather(*[ag.aclose() for ag in closing_agens], return_exceptions=True)
        for result, agen in zip(results, closing_agens):
            if isinstance(result, Exception):
                self.call_exception_handler({
                    "message": f"an error occurred during closing of "
                               f"asynchronous generator {agen!r}",
                    "exception": result,
                    "asyncgen": agen,
                })

    # ---- executors ---------------------------------------------------------------------------

    def run_in_executor(self, executor, func, *args):
        """Run func(*args) in `executor` (None: the default one); return an asyncio.Future."""
        self._check_closed()
        if self.get_debug():
            if coroutines.iscoroutine(func) or coroutines.iscoroutinefunction(func):
                raise TypeError("coroutines cannot be used with run_in_executor()")
        if executor is None:
            executor = self._default_executor
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
                self._default_executor = executor
        return futures.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor):
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor")
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout=None):
        """Shut the default executor down, waiting (up to `timeout`) for its threads."""
        self._executor_shutdown_called = True
        if self._default_executor is None:
            return
        future = self.create_future()
        thread = threading.Thread(target=self._do_shutdown, args=(future,))
        thread.start()
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            warnings.warn("The executor did not finishing joining "
                          f"its threads within {timeout} seconds.",
                          RuntimeWarning, stacklevel=2)
            self._default_executor.shutdown(wait=False)
        else:
            thread.join()

    def _do_shutdown(self, future):
        try:
            self._default_executor.shutdown(wait=True)
            if not self.is_closed():
                self.call_soon_threadsafe(futures._set_result_unless_cancelled, future, None)
        except Exception as ex:
            if not self.is_closed() and not future.cancelled():
                self.call_soon_threadsafe(future.set_exception, ex)

    # ---- name resolution -------------------------------------------------------------------

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        return await self.run_in_executor(None, socket.getaddrinfo, host, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr, flags=0):
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)

    # ---- errors ------------------------------------------------------------------------------

    def get_exception_handler(self):
        return self._exception_handler

    def set_exception_handler(self, handler):
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context):
        """Log the error described by `context` (Python's keys) on the "asyncio" logger."""
        message = context.get("message")
        if not message:
            message = "Unhandled exception in event loop"
        exception = context.get("exception")
        if exception is not None:
            exc_info = (type(exception), exception, exception.__traceback__)
        else:
            exc_info = False
        if ("source_traceback" not in context and self._current_handle_traceback() is not None):
            context["handle_traceback"] = self._current_handle_traceback()
        log_lines = [message]
        for key in sorted(context):
            if key in {"message", "exception"}:
                continue
            value = context[key]
            if key == "source_traceback":
                tb = "".join(__import__("traceback").format_list(value))
                value = "Object created at (most recent call last):\n" + tb.rstrip()
            elif key == "handle_traceback":
                tb = "".join(__import__("traceback").format_list(value))
                value = "Handle created at (most recent call last):\n" + tb.rstrip()
            else:
                value = repr(value)
            log_lines.append(f"{key}: {value}")
        logger.error("\n".join(log_lines), exc_info=exc_info)

    def _current_handle_traceback(self):
        return None

    def call_exception_handler(self, context):
        """Hand `context` to the exception handler (or the default one); never raises,
        except SystemExit and KeyboardInterrupt."""
        if self._exception_handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler", exc_info=True)
        else:
            try:
                ctx = None
                thing = context.get("task")
                if thing is None:
                    thing = context.get("future")
                if thing is None:
                    thing = context.get("handle")
                if thing is not None and hasattr(thing, "get_context"):
                    ctx = thing.get_context()
                if ctx is not None and hasattr(ctx, "run"):
                    ctx.run(self._exception_handler, self, context)
                else:
                    self._exception_handler(self, context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                try:
                    self.default_exception_handler({
                        "message": "Unhandled error in exception handler",
                        "exception": exc,
                        "context": context,
                    })
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException:
                    logger.error("Exception in default exception handler while handling an "
                                 "unexpected error in custom exception handler", exc_info=True)

    # ---- Unix signals --------------------------------------------------------------------------

    def _check_signal(self, sig):
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(self, sig, callback, *args):
        """Run callback(*args) on the loop when signal `sig` arrives (main thread only)."""
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        if self._ssock is None:
            self._ssock, self._csock = socket.socketpair()
            self._ssock.setblocking(False)
            self._csock.setblocking(False)
            self.add_reader(self._ssock.fileno(), self._read_signals)
        try:
            # Raises ValueError outside the main thread, as the stock loop does.
            signal.set_wakeup_fd(self._csock.fileno())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))
        handle = events.Handle(callback, args, self, None)
        self._signal_handlers[sig] = handle
        try:
            signal.signal(sig, _sighandler_noop)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                try:
                    signal.set_wakeup_fd(-1)
                except (ValueError, OSError) as nexc:
                    logger.info("set_wakeup_fd(-1) failed: %s", nexc)
            if exc.errno == __import__("errno").EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise

    def _read_signals(self):
        while True:
            try:
                data = self._ssock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                return
            for signum in data:
                handle = self._signal_handlers.get(signum)
                if handle is None:
                    continue
                if handle._cancelled:
                    self.remove_signal_handler(signum)
                else:
                    self.call_soon(handle._run)

    def remove_signal_handler(self, sig):
        """Remove the handler of `sig`; return whether there was one."""
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        if sig == signal.SIGINT:
            handler = signal.default_int_handler
        else:
            handler = signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == __import__("errno").EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught")
            raise
        if not self._signal_handlers:
            try:
                signal.set_wakeup_fd(-1)
            except (ValueError, OSError) as exc:
                logger.info("set_wakeup_fd(-1) failed: %s", exc)
            if self._ssock is not None and not self.is_closed():
                self.remove_reader(self._ssock.fileno())
            if self._ssock is not None:
                self._ssock.close()
                self._csock.close()
                self._ssock = self._csock = None
        return True

    # ---- fd watching: a transport's fd is the transport's ---------------------------------------

    def _register_transport(self, fd, transport):
        if fd >= 0:
            self._transports[fd] = transport

    def _ensure_fd_no_transport(self, fd):
        fileno = fd
        if not isinstance(fileno, int):
            try:
                fileno = int(fileno.fileno())
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"Invalid file object: {fd!r}") from None
        transport = self._transports.get(fileno)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")

    def add_reader(self, fd, callback, *args):
        """Call callback(*args) whenever `fd` is readable."""
        self._ensure_fd_no_transport(fd)
        return _core.Loop.add_reader(self, fd, callback, *args)

    def add_writer(self, fd, callback, *args):
        """Call callback(*args) whenever `fd` is writable."""
        self._ensure_fd_no_transport(fd)
        return _core.Loop.add_writer(self, fd, callback, *args)

    def remove_reader(self, fd):
        """Stop watching `fd` for reading; return whether it was watched."""
        self._ensure_fd_no_transport(fd)
        return _core.Loop.remove_reader(self, fd)

    def remove_writer(self, fd):
        """Stop watching `fd` for writing; return whether it was watched."""
        self._ensure_fd_no_transport(fd)
        return _core.Loop.remove_writer(self, fd)

    # ---- low-level socket operations ---------------------------------------------------------
    # Python's selector-loop algorithm: the call is tried at once; when it would block, the
    # loop waits for readiness (natively: a poll on the backend and a future) and tries again.

    def _check_sock(self, sock):
        if ssl is not None and isinstance(sock, ssl.SSLSocket):
            raise TypeError("Socket cannot be of type SSLSocket")
        if self.get_debug() and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    async def sock_recv(self, sock, n):
        """Receive up to n bytes from the non-blocking socket `sock`."""
        self._check_sock(sock)
        result = self._sock_recv(sock, n)
        if result.__class__ is bytes:
            return result
        return await result

    async def sock_recv_into(self, sock, buf):
        """Receive into `buf`; return the number of bytes received."""
        self._check_sock(sock)
        result = self._sock_recv_into(sock, buf)
        if result.__class__ is int:
            return result
        return await result

    async def sock_sendall(self, sock, data):
        """Send all of `data`, waiting for the socket to drain as needed."""
        self._check_sock(sock)
        result = self._sock_sendall(sock, data)
        if result is None:
            return None
        return await result

    async def _retry(self, sock, writable, call, *args):
        """call(*args) on the non-blocking socket, waiting for readiness while it would block."""
        while True:
            try:
                return call(*args)
            except (BlockingIOError, InterruptedError):
                await self._sock_wait(sock, writable)

    async def sock_recvfrom(self, sock, bufsize):
        """Receive a datagram of up to `bufsize` bytes: (data, address)."""
        self._check_sock(sock)
        return await self._retry(sock, False, sock.recvfrom, bufsize)

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        """Receive a datagram into `buf`: (nbytes, address)."""
        self._check_sock(sock)
        return await self._retry(sock, False, sock.recvfrom_into, buf, nbytes or len(buf))

    async def sock_sendto(self, sock, data, address):
        """Send a datagram to `address`; return the number of bytes sent."""
        self._check_sock(sock)
        return await self._retry(sock, True, sock.sendto, data, address)

    async def sock_connect(self, sock, address):
        """Connect `sock` to `address` (resolved first for IP sockets)."""
        self._check_sock(sock)
        if sock.family == socket.AF_INET or (base_events._HAS_IPv6 and sock.family == socket.AF_INET6):
            host, port = address[:2]
            info = base_events._ipaddr_info(host, port, sock.family, sock.type, sock.proto, *address[2:])
            if info is None:
                infos = await self.getaddrinfo(host, port, family=sock.family, type=sock.type, proto=sock.proto)
                if not infos:
                    raise OSError("getaddrinfo() returned empty list")
                info = infos[0]
            address = info[4]
        try:
            sock.connect(address)
            return
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            await self._sock_wait(sock, True)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EINTR):
                continue
            if err != 0:
                raise OSError(err, f"Connect call failed {address}")
            return

    async def sock_accept(self, sock):
        """Accept a connection: (conn, address), conn non-blocking."""
        self._check_sock(sock)
        conn, address = await self._retry(sock, False, sock.accept)
        conn.setblocking(False)
        return conn, address

    async def sock_sendfile(self, sock, file, offset=0, count=None, *, fallback=True):
        """Send a file with os.sendfile (or, if that is not possible and `fallback`, by
        reading it); return the bytes sent. The file position ends after them."""
        self._check_sock(sock)
        self._check_sendfile_params(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except exceptions.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    def _check_sendfile_params(self, sock, file, offset, count):
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if not sock.type == socket.SOCK_STREAM:
            raise ValueError("only SOCK_STREAM type sockets are supported")
        _check_file_range(offset, count)

    async def _sock_sendfile_native(self, sock, file, offset, count):
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise exceptions.SendfileNotAvailableError("not a regular file")
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise exceptions.SendfileNotAvailableError("not a regular file")
        blocksize = count if count else fsize
        if not blocksize:
            return 0  # an empty file
        total_sent = 0
        try:
            while True:
                blocksize = min(count - total_sent if count else fsize - offset, 0x7FFFF000)
                if blocksize <= 0:
                    return total_sent
                try:
                    sent = os.sendfile(sock.fileno(), fileno, offset, blocksize)
                except (BlockingIOError, InterruptedError):
                    await self._sock_wait(sock, True)
                    continue
                except OSError as exc:
                    if total_sent == 0 and exc.errno in (errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK,
                                                         errno.EOPNOTSUPP):
                        raise exceptions.SendfileNotAvailableError("os.sendfile() cannot send this file")
                    raise
                if sent == 0:
                    return total_sent  # end of file
                offset += sent
                total_sent += sent
        finally:
            if total_sent > 0:
                file.seek(offset)

    async def _sock_sendfile_fallback(self, sock, file, offset, count):
        if offset:
            file.seek(offset)
        blocksize = min(count, constants.SENDFILE_FALLBACK_READBUFFER_SIZE) if count else \
            constants.SENDFILE_FALLBACK_READBUFFER_SIZE
        buf = bytearray(blocksize)
        total_sent = 0
        try:
            while True:
                if count:
                    blocksize = min(count - total_sent, blocksize)
                    if blocksize <= 0:
                        break
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    break
                await self.sock_sendall(sock, view[:read])
                total_sent += read
            return total_sent
        finally:
            if total_sent > 0 and hasattr(file, "seek"):
                file.seek(offset + total_sent)

    # ---- connections and servers -------------------------------------------------------------
    # The arguments are checked here with Python's messages; the connection is made by the
    # C++ loop, and the transport is its C++ transport (asyncio_cpp.Transport).

    async def create_connection(self, protocol_factory, host=None, port=None, *, ssl=None, family=0, proto=0,
                                flags=0, sock=None, local_addr=None, server_hostname=None,
                                ssl_handshake_timeout=None, ssl_shutdown_timeout=None,
                                happy_eyeballs_delay=None, interleave=None, all_errors=False):
        """Connect to host:port (or wrap the connected `sock`); return (transport, protocol)."""
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if sock is not None:
            base_events._check_ssl_socket(sock)
        if ssl:
            _no_tls("create_connection")
        if happy_eyeballs_delay is not None and interleave is None:
            interleave = 1
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            local_host, local_port = None, -1
            if local_addr is not None:
                local_host, local_port = local_addr[0], _port_number(local_addr[1])
            return await self._create_connection(
                protocol_factory, host if host is not None else "localhost", _port_number(port), family, proto,
                flags, local_host, local_port, -1.0 if happy_eyeballs_delay is None else happy_eyeballs_delay,
                interleave or 0, bool(all_errors))
        if sock is None:
            raise ValueError("host and port was not specified and no sock specified")
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        return await _with_sock(sock, self._connect_fd(protocol_factory, os.dup(sock.fileno()), 0, sock))

    async def create_unix_connection(self, protocol_factory, path=None, *, ssl=None, sock=None,
                                     server_hostname=None, ssl_handshake_timeout=None,
                                     ssl_shutdown_timeout=None):
        """Connect to the Unix socket `path` (or wrap `sock`); return (transport, protocol)."""
        if ssl:
            _no_tls("create_unix_connection")
        if server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        if ssl_handshake_timeout is not None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            return await self._create_unix_connection(protocol_factory, os.fsdecode(os.fspath(path)))
        if sock is None:
            raise ValueError("no path and sock were specified")
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        return await _with_sock(sock, self._connect_fd(protocol_factory, os.dup(sock.fileno()), 1, sock))

    async def connect_accepted_socket(self, protocol_factory, sock, *, ssl=None, ssl_handshake_timeout=None,
                                      ssl_shutdown_timeout=None):
        """Wrap an accepted connection `sock`; return (transport, protocol)."""
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if ssl:
            _no_tls("connect_accepted_socket")
        base_events._check_ssl_socket(sock)
        return await _with_sock(sock, self._connect_fd(protocol_factory, os.dup(sock.fileno()), 2, sock))

    async def create_server(self, protocol_factory, host=None, port=None, *, family=socket.AF_UNSPEC,
                            flags=socket.AI_PASSIVE, sock=None, backlog=100, ssl=None, reuse_address=None,
                            reuse_port=None, keep_alive=None, ssl_handshake_timeout=None,
                            ssl_shutdown_timeout=None, start_serving=True):
        """Listen on host:port (host: a name, a sequence of names, or None/'' for every
        interface), or on the bound `sock`; return a Server."""
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and ssl is None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and ssl is None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if sock is not None:
            base_events._check_ssl_socket(sock)
        if ssl is not None:
            _no_tls("create_server")
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            if reuse_address is None:
                reuse_address = os.name == "posix" and sys.platform != "cygwin"
            if host == "" or host is None:
                hosts = []
            elif isinstance(host, str) or not hasattr(host, "__iter__"):
                hosts = [host]
            else:
                hosts = list(host)
            handle = await self._create_server(protocol_factory, hosts, _port_number(port), family, flags,
                                               backlog, bool(reuse_address), bool(reuse_port), bool(keep_alive),
                                               bool(start_serving))
        else:
            if sock is None:
                raise ValueError("Neither host/port nor sock were specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
            handle = await _with_sock(sock, self._serve_fd(protocol_factory, os.dup(sock.fileno()), False, backlog,
                                                           bool(keep_alive), bool(start_serving), False))
            return Server(self, handle, sock)
        return Server(self, handle)

    async def create_unix_server(self, protocol_factory, path=None, *, sock=None, backlog=100, ssl=None,
                                 ssl_handshake_timeout=None, ssl_shutdown_timeout=None, start_serving=True,
                                 cleanup_socket=_CLEANUP_SOCKET_DEFAULT):
        """Listen on the Unix socket `path` (or the bound `sock`); return a Server."""
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if ssl:
            _no_tls("create_unix_server")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            try:
                handle = await self._create_unix_server(protocol_factory, os.fsdecode(path), backlog,
                                                        bool(start_serving), bool(cleanup_socket))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:  # Python's message names the address
                    raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            handle = await _with_sock(sock, self._serve_fd(protocol_factory, os.dup(sock.fileno()), True, backlog,
                                                           False, bool(start_serving), bool(cleanup_socket)))
            return Server(self, handle, sock)
        return Server(self, handle)

    async def create_datagram_endpoint(self, protocol_factory, local_addr=None, remote_addr=None, *, family=0,
                                       proto=0, flags=0, reuse_address=_unset, reuse_port=None,
                                       allow_broadcast=None, sock=None):
        """A datagram endpoint: bound to local_addr, connected to remote_addr (or over the
        datagram socket `sock`); return (transport, protocol)."""
        if sock is not None:
            if sock.type == socket.SOCK_STREAM:
                raise ValueError(f"{_DATAGRAM_SOCKET_EXPECTED}, got {sock!r}")
            if (local_addr or remote_addr or family or proto or flags or reuse_port or allow_broadcast):
                opts = dict(local_addr=local_addr, remote_addr=remote_addr, family=family, proto=proto, flags=flags,
                            reuse_address=reuse_address, reuse_port=reuse_port, allow_broadcast=allow_broadcast)
                problems = ", ".join(f"{k}={v}" for k, v in opts.items() if v and v is not _unset)
                raise ValueError(f"socket modifier keyword arguments can not be used when sock is specified. "
                                 f"({problems})")
            sock.setblocking(False)
            return await _with_sock(sock, self._create_datagram_endpoint(
                protocol_factory, os.dup(sock.fileno()), None, -1, None, -1, 0, 0, 0, False, False, sock))
        if reuse_address is not _unset:
            if reuse_address:
                raise ValueError("Passing `reuse_address=True` is no longer supported, as the usage of "
                                 "SO_REUSEPORT in UDP poses a significant security concern.")
            warnings.warn("The *reuse_address* parameter has been deprecated as of 3.5.10 and is scheduled "
                          "for removal in 3.11.", DeprecationWarning, stacklevel=2)
        if family == socket.AF_UNIX:
            for addr, name in ((local_addr, "local_addr"), (remote_addr, "remote_addr")):
                if addr is not None and not isinstance(addr, (str, bytes)):
                    raise TypeError(f"string is expected, got {addr!r} for {name}")
            return await self._create_datagram_endpoint(
                protocol_factory, -1, os.fsdecode(local_addr) if local_addr else None, -1,
                os.fsdecode(remote_addr) if remote_addr else None, -1, family, proto, flags, False, False)
        for addr in (local_addr, remote_addr):
            if addr is not None and not (isinstance(addr, tuple) and len(addr) == 2):
                raise TypeError("2-tuple is expected")
        local_host, local_port = (None, -1) if local_addr is None else (local_addr[0], _port_number(local_addr[1]))
        remote_host, remote_port = (None, -1) if remote_addr is None else (remote_addr[0],
                                                                             _port_number(remote_addr[1]))
        if local_addr is None and remote_addr is None and family == 0:
            raise ValueError("unexpected address family")
        return await self._create_datagram_endpoint(protocol_factory, -1, local_host, local_port, remote_host,
                                                    remote_port, family, proto, flags, bool(reuse_port),
                                                    bool(allow_broadcast))

    async def sendfile(self, transport, file, offset=0, count=None, *, fallback=True):
        """Send a file over `transport` (sendfile(2) for a plain socket, else chunks through
        the transport's flow control); return the bytes sent. The file position ends after
        them."""
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        if not isinstance(transport, _core.Transport):
            # Another loop's transport: the stock loop's messages for what it cannot do.
            if not fallback:
                raise RuntimeError(f"fallback is disabled and native sendfile is not supported for "
                                   f"transport {transport!r}")
            raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        _check_file_range(offset, count)
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            # (The stock loop's fallback would read such a file object in Python.)
            raise exceptions.SendfileNotAvailableError(
                "asyncio_cpp: loop.sendfile() needs a file with a fileno()") from None
        sent = await self._sendfile(transport, fileno, offset, count or 0, bool(fallback))
        file.seek(offset + sent)
        return sent

    # ---- not there yet (issue 16, part 2: TLS, pipes, subprocesses)

    for _name in ("start_tls", "connect_read_pipe",
                  "connect_write_pipe", "subprocess_exec", "subprocess_shell"):
        locals()[_name] = _not_yet(_name)
    del _name


def _sighandler_noop(signum, frame):
    """The Python-level handler of a signal the loop handles: the wake-up fd does the work."""
