"""asyncio_cpp: asyncio's event loop on asyncio-cpp's C++ core, used as uvloop is.

    import asyncio, asyncio_cpp
    asyncio_cpp.run(main())                                         # like uvloop.run
    asyncio.run(main(), loop_factory=asyncio_cpp.new_event_loop)    # Python 3.12+
    asyncio_cpp.install()                                           # set the policy

Tasks and futures are CPython's own asyncio.Task and asyncio.Future.
"""

import asyncio as _asyncio

from ._core import Handle, TimerHandle
from ._core import DatagramTransport, Transport
from ._loop import Loop, Server

__all__ = ("Loop", "Server", "Transport", "DatagramTransport", "Handle", "TimerHandle", "new_event_loop", "run", "install", "EventLoopPolicy")


def new_event_loop():
    """A new asyncio_cpp.Loop."""
    return Loop()


class EventLoopPolicy(_asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose loops are asyncio_cpp.Loop."""

    def _loop_factory(self):
        return new_event_loop()


def install():
    """Make asyncio_cpp's loop the default one (asyncio.set_event_loop_policy)."""
    _asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, loop_factory=new_event_loop, debug=None, **run_kwargs):
    """asyncio.run(main) on a new asyncio_cpp.Loop (as uvloop.run)."""
    with _asyncio.Runner(loop_factory=loop_factory, debug=debug) as runner:
        return runner.run(main, **run_kwargs)
