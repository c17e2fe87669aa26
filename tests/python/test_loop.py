"""asyncio_cpp.Loop: scheduling, running, closing, errors, fd watching, signals.

Each test compares with what Python's own loop does (the stock loop is the specification).
Run: PYTHONPATH=<build>/python python3 -m unittest discover -s tests/python
"""
import asyncio
import contextvars
import gc
import os
import signal
import socket
import sys
import threading
import time
import unittest
import warnings
import weakref

import asyncio_cpp


class LoopTestCase(unittest.TestCase):
    def setUp(self):
        self.loop = asyncio_cpp.new_event_loop()
        self.errors = []
        self.loop.set_exception_handler(lambda loop, context: self.errors.append(context))

    def tearDown(self):
        if not self.loop.is_closed():
            self.loop.close()

    def run_briefly(self, seconds=0.0):
        self.loop.run_until_complete(asyncio.sleep(seconds))


class TestCallSoon(LoopTestCase):
    def test_callbacks_run_in_fifo_order_with_their_arguments(self):
        out = []
        self.loop.call_soon(out.append, 1)
        self.loop.call_soon(lambda a, b: out.append((a, b)), 2, 3)
        self.loop.call_soon(out.append, 4)
        self.run_briefly()
        self.assertEqual(out, [1, (2, 3), 4])

    def test_a_callback_scheduled_by_a_callback_runs_in_the_next_iteration(self):
        out = []

        def first():
            out.append("first")
            self.loop.call_soon(out.append, "scheduled by first")

        self.loop.call_soon(first)
        self.loop.call_soon(out.append, "second")
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        # stop() ends the iteration it runs in: what `first` scheduled has not run yet.
        self.assertEqual(out, ["first", "second"])
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(out, ["first", "second", "scheduled by first"])

    def test_a_cancelled_handle_never_runs_and_lets_go_of_its_callback(self):
        out = []
        h = self.loop.call_soon(out.append, 1)
        self.assertIsInstance(h, asyncio_cpp.Handle)
        self.assertFalse(h.cancelled())
        h.cancel()
        self.assertTrue(h.cancelled())
        self.assertIsNone(h._callback)
        self.assertIsNone(h._args)
        h.cancel()  # a second cancel is a no-op
        self.run_briefly()
        self.assertEqual(out, [])

    def test_the_callback_runs_in_a_copy_of_the_current_context_or_the_given_one(self):
        # (Handle.get_context() is Python 3.12's; asyncio_cpp has it on 3.11 too.)
        var = contextvars.ContextVar("var", default="unset")
        seen = []
        var.set("at call_soon")
        self.loop.call_soon(lambda: seen.append(var.get()))
        var.set("changed after")
        ctx = contextvars.copy_context()
        ctx.run(var.set, "in ctx")
        h = self.loop.call_soon(lambda: seen.append(var.get()), context=ctx)
        self.assertIs(h.get_context(), ctx)
        self.run_briefly()
        self.assertEqual(seen, ["at call_soon", "in ctx"])

    def test_bad_callbacks_raise_python_type_errors(self):
        async def coro():
            pass

        with self.assertRaisesRegex(TypeError, r"coroutines cannot be used with call_soon\(\)"):
            self.loop.call_soon(coro)
        c = coro()
        with self.assertRaisesRegex(TypeError, r"coroutines cannot be used with call_soon\(\)"):
            self.loop.call_soon(c)
        c.close()
        with self.assertRaisesRegex(TypeError, r"a callable object was expected by call_soon\(\), got 1"):
            self.loop.call_soon(1)
        with self.assertRaisesRegex(TypeError, "unexpected keyword argument 'bogus'"):
            self.loop.call_soon(print, bogus=1)
        with self.assertRaises(TypeError):
            self.loop.call_soon()

    def test_handle_repr_names_the_callback(self):
        # Python 3.13 shows the arguments in debug mode only.
        self.loop.set_debug(True)
        h = self.loop.call_soon(print, 1)
        self.assertRegex(repr(h), r"^<Handle print\(1\) created at .*test_loop.py:\d+>$")
        h.cancel()
        self.assertRegex(repr(h), r"^<Handle cancelled")


class TestTimers(LoopTestCase):
    def test_timers_fire_in_deadline_order_and_not_early(self):
        out = []
        start = self.loop.time()
        self.loop.call_later(0.06, out.append, 3)
        self.loop.call_later(0.02, out.append, 1)
        self.loop.call_at(start + 0.04, out.append, 2)
        self.loop.call_later(0.08, self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(out, [1, 2, 3])
        self.assertGreaterEqual(self.loop.time() - start, 0.08)

    def test_timers_due_at_the_same_time_fire_in_scheduling_order(self):
        # Stronger than Python's documentation (undefined order) and the stock loop (heap
        # order): asyncio-cpp's timer queue breaks ties by scheduling order.
        out = []
        when = self.loop.time() + 0.01
        for i in range(20):
            self.loop.call_at(when, out.append, i)
        self.run_briefly(0.05)
        self.assertEqual(out, list(range(20)))

    def test_timer_handle_when_and_cancel(self):
        out = []
        h = self.loop.call_later(0.01, out.append, 1)
        self.assertIsInstance(h, asyncio_cpp.TimerHandle)
        self.assertAlmostEqual(h.when(), self.loop.time() + 0.01, delta=0.01)
        self.assertTrue(h._scheduled)
        h.cancel()
        self.run_briefly(0.03)
        self.assertEqual(out, [])

    def test_many_cancelled_timers_do_not_keep_their_callbacks(self):
        class Marker:
            pass

        refs = []
        for _ in range(1000):
            m = Marker()
            refs.append(weakref.ref(m))
            self.loop.call_later(100, lambda m=m: None).cancel()
            del m
        gc.collect()
        self.assertTrue(all(r() is None for r in refs))

    def test_timer_handles_compare_by_deadline(self):
        a = self.loop.call_at(10.0, print)
        b = self.loop.call_at(20.0, print)
        self.assertLess(a, b)
        self.assertGreater(b, a)
        self.assertNotEqual(a, b)
        self.assertEqual(a, a)
        self.assertEqual(hash(a), hash(10.0))

    def test_bad_delays_raise_type_errors(self):
        with self.assertRaisesRegex(TypeError, "delay must not be None"):
            self.loop.call_later(None, print)
        with self.assertRaisesRegex(TypeError, "when cannot be None"):
            self.loop.call_at(None, print)
        with self.assertRaises(TypeError):
            self.loop.call_later("1", print)


class TestThreadsafe(LoopTestCase):
    def test_call_soon_threadsafe_wakes_a_sleeping_loop(self):
        out = []

        def other_thread():
            time.sleep(0.05)
            self.loop.call_soon_threadsafe(out.append, "from thread")
            self.loop.call_soon_threadsafe(self.loop.stop)

        t = threading.Thread(target=other_thread)
        start = time.monotonic()
        t.start()
        self.loop.call_later(10, self.fail, "not woken")
        self.loop.run_forever()
        t.join()
        self.assertEqual(out, ["from thread"])
        self.assertLess(time.monotonic() - start, 5)

    def test_other_python_threads_run_while_the_loop_sleeps(self):
        # The loop releases the GIL while it waits: a CPU-bound thread makes progress.
        counter = [0]
        stop = threading.Event()

        def spin():
            while not stop.is_set():
                counter[0] += 1

        t = threading.Thread(target=spin)
        t.start()
        try:
            self.run_briefly(0.2)
        finally:
            stop.set()
            t.join()
        self.assertGreater(counter[0], 1000)

    def test_run_coroutine_threadsafe(self):
        async def add(a, b):
            await asyncio.sleep(0)
            return a + b

        result = []

        def other_thread():
            fut = asyncio.run_coroutine_threadsafe(add(1, 2), self.loop)
            result.append(fut.result(timeout=5))
            self.loop.call_soon_threadsafe(self.loop.stop)

        t = threading.Thread(target=other_thread)
        t.start()
        self.loop.run_forever()
        t.join()
        self.assertEqual(result, [3])


class TestRunning(LoopTestCase):
    def test_run_until_complete_returns_the_result_and_raises_the_exception(self):
        async def ok():
            await asyncio.sleep(0.001)
            return 42

        async def bad():
            raise ValueError("boom")

        self.assertEqual(self.loop.run_until_complete(ok()), 42)
        with self.assertRaisesRegex(ValueError, "boom"):
            self.loop.run_until_complete(bad())

    def test_tasks_and_futures_are_cpythons_own(self):
        async def main():
            self.assertIs(asyncio.get_running_loop(), self.loop)
            fut = self.loop.create_future()
            self.assertIsInstance(fut, asyncio.Future)
            task = self.loop.create_task(asyncio.sleep(0, "done"), name="my task")
            self.assertIsInstance(task, asyncio.Task)
            self.assertEqual(task.get_name(), "my task")
            self.loop.call_soon(fut.set_result, 7)
            return await fut, await task

        self.assertEqual(self.loop.run_until_complete(main()), (7, "done"))

    def test_a_task_factory_is_used_and_can_be_removed(self):
        made = []

        def factory(loop, coro, **kwargs):
            task = asyncio.Task(coro, loop=loop, **kwargs)
            made.append(task)
            return task

        self.loop.set_task_factory(factory)
        self.assertIs(self.loop.get_task_factory(), factory)
        self.loop.run_until_complete(asyncio.sleep(0))
        self.assertEqual(len(made), 1)
        self.loop.set_task_factory(None)
        self.assertIsNone(self.loop.get_task_factory())
        with self.assertRaisesRegex(TypeError, "task factory must be a callable or None"):
            self.loop.set_task_factory(1)

    def test_cancellation_and_timeouts_behave_as_python(self):
        async def main():
            with self.assertRaises(TimeoutError):
                async with asyncio.timeout(0.01):
                    await asyncio.sleep(10)
            task = asyncio.create_task(asyncio.sleep(10))
            await asyncio.sleep(0)
            task.cancel("why")
            with self.assertRaises(asyncio.CancelledError):
                await task
            async with asyncio.TaskGroup() as tg:
                a = tg.create_task(asyncio.sleep(0.01, "a"))
                b = tg.create_task(asyncio.sleep(0.02, "b"))
            return a.result() + b.result()

        self.assertEqual(self.loop.run_until_complete(main()), "ab")

    def test_running_a_running_loop_is_a_runtime_error(self):
        async def main():
            coro = asyncio.sleep(0)
            with self.assertRaisesRegex(RuntimeError, "This event loop is already running"):
                self.loop.run_until_complete(coro)
            coro.close()
            other = asyncio_cpp.new_event_loop()
            coro = asyncio.sleep(0)
            try:
                with self.assertRaisesRegex(RuntimeError, "Cannot run the event loop while another loop is running"):
                    other.run_until_complete(coro)
            finally:
                coro.close()
                other.close()

        self.loop.run_until_complete(main())

    def test_stop_before_run_forever_runs_one_iteration(self):
        out = []
        self.loop.call_soon(out.append, 1)
        self.loop.stop()
        self.loop.run_forever()
        self.assertEqual(out, [1])
        self.assertFalse(self.loop.is_running())

    def test_is_running_inside_and_outside(self):
        seen = []
        self.loop.call_soon(lambda: seen.append(self.loop.is_running()))
        self.run_briefly()
        self.assertEqual(seen, [True])
        self.assertFalse(self.loop.is_running())

    def test_asyncio_cpp_run_and_the_policy(self):
        async def main():
            return type(asyncio.get_running_loop())

        self.assertIs(asyncio_cpp.run(main()), asyncio_cpp.Loop)
        old = asyncio.get_event_loop_policy()
        try:
            asyncio_cpp.install()
            self.assertIs(asyncio.run(main()), asyncio_cpp.Loop)
        finally:
            asyncio.set_event_loop_policy(old)

    @unittest.skipIf(sys.version_info < (3, 12), "asyncio.run(loop_factory=) is Python 3.12+")
    def test_asyncio_run_with_loop_factory(self):
        async def main():
            return type(asyncio.get_running_loop())

        self.assertIs(asyncio.run(main(), loop_factory=asyncio_cpp.new_event_loop), asyncio_cpp.Loop)

    def test_async_generators_are_finalized_by_shutdown_asyncgens(self):
        closed = []

        async def agen():
            try:
                yield 1
                yield 2
            finally:
                closed.append(True)

        async def main():
            g = agen()
            self.assertEqual(await g.__anext__(), 1)
            return g

        g = self.loop.run_until_complete(main())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.assertEqual(closed, [True])
        del g

    def test_run_in_executor_and_shutdown_default_executor(self):
        async def main():
            r = await self.loop.run_in_executor(None, sum, [1, 2, 3])
            await self.loop.shutdown_default_executor()
            return r

        self.assertEqual(self.loop.run_until_complete(main()), 6)
        with self.assertRaisesRegex(RuntimeError, "Executor shutdown has been called"):
            self.loop.run_in_executor(None, print)


class TestClosed(LoopTestCase):
    def test_every_scheduling_method_of_a_closed_loop_raises_event_loop_is_closed(self):
        self.loop.close()
        self.assertTrue(self.loop.is_closed())
        self.loop.close()  # idempotent
        for call in (lambda: self.loop.call_soon(print),
                     lambda: self.loop.call_later(1, print),
                     lambda: self.loop.call_at(1, print),
                     lambda: self.loop.call_soon_threadsafe(print),
                     lambda: self.loop.run_forever(),
                     lambda: self.loop.add_reader(0, print)):
            with self.assertRaisesRegex(RuntimeError, "Event loop is closed"):
                call()
        for call in (self.loop.run_until_complete, self.loop.create_task):
            coro = asyncio.sleep(0)
            with self.assertRaisesRegex(RuntimeError, "Event loop is closed"):
                call(coro)
            coro.close()

    def test_close_drops_pending_callbacks_and_their_references(self):
        class Marker:
            pass

        m = Marker()
        r = weakref.ref(m)
        self.loop.call_soon(lambda m=m: None)
        self.loop.call_later(10, lambda m=m: None)
        del m
        self.loop.close()
        gc.collect()
        self.assertIsNone(r())

    def test_closing_a_running_loop_is_refused(self):
        async def main():
            with self.assertRaisesRegex(RuntimeError, "Cannot close a running event loop"):
                self.loop.close()

        self.loop.run_until_complete(main())

    def test_an_unclosed_loop_warns_when_collected(self):
        loop = asyncio_cpp.new_event_loop()
        with self.assertWarnsRegex(ResourceWarning, "unclosed event loop"):
            del loop
            gc.collect()


class TestErrors(LoopTestCase):
    def test_a_raising_callback_goes_to_the_exception_handler_and_the_loop_goes_on(self):
        out = []

        def bad():
            raise ZeroDivisionError("in callback")

        h = self.loop.call_soon(bad)
        self.loop.call_soon(out.append, "after")
        self.run_briefly()
        self.assertEqual(out, ["after"])
        self.assertEqual(len(self.errors), 1)
        context = self.errors[0]
        self.assertIsInstance(context["exception"], ZeroDivisionError)
        self.assertIs(context["handle"], h)
        self.assertRegex(context["message"], r"^Exception in callback .*bad")

    def test_system_exit_and_keyboard_interrupt_leave_the_loop_keeping_the_rest_queued(self):
        out = []

        def leave(exc):
            raise exc

        for exc in (SystemExit(3), KeyboardInterrupt()):
            out.clear()
            self.loop.call_soon(leave, exc)
            self.loop.call_soon(out.append, "queued")
            with self.assertRaises(type(exc)):
                self.loop.run_forever()
            self.assertEqual(out, [])
            self.assertFalse(self.loop.is_running())
            self.run_briefly()
            self.assertEqual(out, ["queued"])
        self.assertEqual(self.errors, [])

    def test_the_default_handler_logs_on_the_asyncio_logger(self):
        self.loop.set_exception_handler(None)

        def bad():
            raise ValueError("logged")

        with self.assertLogs("asyncio", level="ERROR") as logs:
            self.loop.call_soon(bad)
            self.run_briefly()
        self.assertIn("Exception in callback", logs.output[0])
        self.assertIn("ValueError: logged", logs.output[0])

    def test_an_error_in_the_handler_is_logged_by_the_default_handler(self):
        def handler(loop, context):
            raise RuntimeError("handler broke")

        self.loop.set_exception_handler(handler)
        with self.assertLogs("asyncio", level="ERROR") as logs:
            self.loop.call_soon(lambda: 1 / 0)
            self.run_briefly()
        self.assertIn("Unhandled error in exception handler", logs.output[0])

    def test_set_exception_handler_refuses_what_is_not_callable(self):
        with self.assertRaisesRegex(TypeError, "A callable object or None is expected"):
            self.loop.set_exception_handler(1)


class TestFdWatch(LoopTestCase):
    def test_add_reader_runs_while_readable_and_remove_reader_stops_it(self):
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        got = []

        def on_readable():
            got.append(a.recv(100))
            if len(got) == 2:
                self.assertTrue(self.loop.remove_reader(a))
                self.loop.stop()

        try:
            self.loop.add_reader(a, on_readable)
            self.loop.call_soon(b.send, b"one")
            self.loop.call_later(0.02, b.send, b"two")
            self.loop.call_later(5, self.loop.stop)
            self.loop.run_forever()
            self.assertEqual(got, [b"one", b"two"])
            self.assertFalse(self.loop.remove_reader(a))
        finally:
            a.close()
            b.close()

    def test_add_writer_runs_when_writable(self):
        a, b = socket.socketpair()
        try:
            fired = []
            self.loop.add_writer(a.fileno(), lambda: (fired.append(1), self.loop.remove_writer(a.fileno()),
                                                      self.loop.stop()))
            self.loop.run_forever()
            self.assertEqual(fired, [1])
        finally:
            a.close()
            b.close()

    def test_bad_file_objects_raise_value_errors(self):
        with self.assertRaisesRegex(ValueError, "Invalid file descriptor: -1"):
            self.loop.add_reader(-1, print)
        with self.assertRaisesRegex(ValueError, "Invalid file object"):
            self.loop.add_reader(object(), print)
        with open(__file__) as f, self.assertRaises(PermissionError):
            self.loop.add_reader(f, print)


@unittest.skipUnless(threading.current_thread() is threading.main_thread(), "signals need the main thread")
class TestSignals(LoopTestCase):
    def test_a_signal_handler_runs_on_the_loop(self):
        got = []
        self.loop.add_signal_handler(signal.SIGUSR1, lambda: (got.append("usr1"), self.loop.stop()))
        try:
            self.loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR1)
            self.loop.call_later(5, self.loop.stop)
            self.loop.run_forever()
            self.assertEqual(got, ["usr1"])
        finally:
            self.assertTrue(self.loop.remove_signal_handler(signal.SIGUSR1))
        self.assertFalse(self.loop.remove_signal_handler(signal.SIGUSR1))
        with self.assertRaisesRegex(ValueError, "invalid signal number"):
            self.loop.add_signal_handler(0, print)

    def test_ctrl_c_interrupts_a_sleeping_loop(self):
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with self.assertRaises(KeyboardInterrupt):
                self.loop.run_until_complete(asyncio.sleep(10))
        finally:
            timer.cancel()


class TestGarbageCollection(unittest.TestCase):
    """A loop dropped without close() is collected (and its __del__ closes it with a
    ResourceWarning) even when what it holds refers back to it, as the stock loop is: the
    C++ loop shows the collector its queued handles, watches, posted callbacks and sock_*
    waits."""

    def assert_collected_with(self, schedule):
        class Holder:
            pass

        def make():
            loop = asyncio_cpp.new_event_loop()
            loop.set_exception_handler(lambda loop, context: None)
            holder = Holder()
            holder.loop = loop
            schedule(loop, holder)
            return weakref.ref(loop), weakref.ref(holder)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loop_ref, holder_ref = make()
            gc.collect()
        self.assertIsNone(loop_ref(), "the loop was not collected")
        self.assertIsNone(holder_ref(), "what the loop held was not collected")
        self.assertTrue(any(issubclass(w.category, ResourceWarning) and "unclosed event loop" in str(w.message)
                            for w in caught), [str(w.message) for w in caught])

    def socketpair(self, holder):
        a, b = socket.socketpair()
        holder.socks = (a, b)
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        return a, b

    def test_a_queued_callback_referring_to_the_loop(self):
        self.assert_collected_with(lambda loop, holder: loop.call_soon(lambda: holder))

    def test_a_timer_referring_to_the_loop(self):
        self.assert_collected_with(lambda loop, holder: loop.call_later(3600, lambda: holder))

    def test_a_cancelled_timer_still_in_the_heap(self):
        def schedule(loop, holder):
            holder.timer = loop.call_later(3600, lambda: None)
            holder.timer.cancel()

        self.assert_collected_with(schedule)

    def test_a_reader_and_a_writer_referring_to_the_loop(self):
        def schedule(loop, holder):
            a, b = self.socketpair(holder)
            loop.add_reader(a.fileno(), lambda: holder)
            loop.add_writer(b.fileno(), lambda: holder)

        self.assert_collected_with(schedule)

    def test_a_callback_posted_from_another_thread(self):
        def schedule(loop, holder):
            t = threading.Thread(target=loop.call_soon_threadsafe, args=(lambda: holder,))
            t.start()
            t.join()

        self.assert_collected_with(schedule)

    def test_a_task_waiting_in_sock_recv(self):
        def schedule(loop, holder):
            a, _ = self.socketpair(holder)
            a.setblocking(False)
            holder.task = loop.create_task(loop.sock_recv(a, 10))
            loop.run_until_complete(asyncio.sleep(0))  # the wait is armed now
            self.assertFalse(holder.task.done())

        self.assert_collected_with(schedule)

    def test_collections_while_the_loop_runs_free_nothing_it_still_needs(self):
        # A collection at nearly every allocation: a reference the loop showed the collector
        # without holding it would let it free a handle still queued (and crash here).
        loop = asyncio_cpp.new_event_loop()
        self.addCleanup(loop.close)
        a, b = socket.socketpair()
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        a.setblocking(False)
        b.setblocking(False)
        seen = []

        async def main():
            done = loop.create_future()
            for i in range(300):
                loop.call_soon(seen.append, ("soon", [i]))
                h = loop.call_later(0.001 * (i % 7), seen.append, ("later", [i]))
                if i % 3 == 0:
                    h.cancel()
            threads = [threading.Thread(target=loop.call_soon_threadsafe, args=(seen.append, ("posted", [i])))
                       for i in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

            def on_readable():
                seen.append(("read", [a.recv(100)]))
                loop.remove_reader(a.fileno())
                done.set_result(None)

            loop.add_reader(a.fileno(), on_readable)
            b.send(b"ping")
            await done
            for i in range(50):
                recv = loop.create_task(loop.sock_recv(a, 100))
                await asyncio.sleep(0)
                await loop.sock_sendall(b, b"x%d" % i)
                seen.append(("sock", [await recv]))
            await asyncio.sleep(0.02)

        old = gc.get_threshold()
        gc.set_threshold(1, 1, 1)
        try:
            loop.run_until_complete(main())
        finally:
            gc.set_threshold(*old)
        kinds = [k for k, _ in seen]
        self.assertEqual(kinds.count("soon"), 300)
        self.assertEqual(kinds.count("later"), 200)
        self.assertEqual(kinds.count("posted"), 20)
        self.assertEqual([v for k, v in seen if k == "read"], [[b"ping"]])
        self.assertEqual([v[0] for k, v in seen if k == "sock"], [b"x%d" % i for i in range(50)])


if __name__ == "__main__":
    unittest.main()
