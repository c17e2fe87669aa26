"""Every public method of asyncio_cpp.Loop called with arguments of the wrong kind and number:
each call raises an ordinary exception or returns, and nothing crashes or hangs the
interpreter - on an open loop and on a closed one. (The messages themselves are pinned down
method by method in the other test files; this is the sweep over everything else.)"""
import asyncio
import gc
import inspect
import logging
import unittest
import warnings

import asyncio_cpp

# Left out: what runs the loop itself or ends it (run_forever blocks by design, close and
# stop are fine with anything), and name resolution (a real DNS query for a garbage name may
# wait for the resolver's timeout on a machine without network).
SKIP = {"run_forever", "run_until_complete", "close", "stop", "getaddrinfo", "getnameinfo"}
JUNK = [(), (None,), (1,), ("x",), (object(),), (None, None), (-1, None), (1, 2, 3), (b"\0" * 3, -5),
        (float("nan"),), ((),), ({},), (None,) * 12]


def public_methods(loop):
    for name in sorted(dir(loop)):
        if name.startswith("_") or name in SKIP:
            continue
        attr = getattr(loop, name)
        if callable(attr):
            yield name, attr


class TestEveryMethodWithJunk(unittest.TestCase):
    def setUp(self):
        # call_exception_handler(<junk>) logs, as the stock loop's does: not this test's subject.
        logger = logging.getLogger("asyncio")
        self.addCleanup(setattr, logger, "disabled", logger.disabled)
        logger.disabled = True

    def sweep(self, loop, drive):
        outcomes = {}
        for name, method in public_methods(loop):
            for args in JUNK:
                try:
                    result = method(*args)
                except Exception as exc:  # noqa: BLE001 - any ordinary exception is an answer
                    outcomes[name, repr(args)] = type(exc).__name__
                    continue
                if isinstance(result, asyncio.Future) and name == "create_future":
                    result.cancel()  # nothing would ever resolve it
                elif inspect.isawaitable(result):
                    if drive:
                        try:
                            loop.run_until_complete(asyncio.wait_for(result, 5))
                        except Exception as exc:  # noqa: BLE001
                            outcomes[name, repr(args)] = type(exc).__name__
                    elif inspect.iscoroutine(result):
                        result.close()
                elif isinstance(result, asyncio.Handle):
                    result.cancel()
        return outcomes

    def test_an_open_loop_answers_junk_with_exceptions(self):
        loop = asyncio_cpp.new_event_loop()
        loop.set_exception_handler(lambda loop, context: None)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outcomes = self.sweep(loop, drive=True)
                loop.run_until_complete(asyncio.sleep(0.01))  # what junk scheduled runs, or fails
        finally:
            loop.close()
        # The common ones are refused the way Python refuses them.
        self.assertEqual(outcomes["call_soon", "(1,)"], "TypeError")
        self.assertEqual(outcomes["call_later", "('x',)"], "TypeError")
        self.assertEqual(outcomes["create_task", "(None,)"], "TypeError")
        self.assertEqual(outcomes["sock_recv", "(None, None)"], "TypeError")
        gc.collect()

    def test_a_closed_loop_answers_junk_with_exceptions(self):
        loop = asyncio_cpp.new_event_loop()
        loop.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcomes = self.sweep(loop, drive=False)
        for name in ("call_soon", "call_later", "call_at", "call_soon_threadsafe", "create_task"):
            self.assertIn(outcomes.get((name, "(1, 2, 3)")), ("RuntimeError", "TypeError"), name)
        with self.assertRaisesRegex(RuntimeError, "Event loop is closed"):
            loop.call_soon(print)
        gc.collect()


if __name__ == "__main__":
    unittest.main()
