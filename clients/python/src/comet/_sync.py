"""A synchronous helper for scripts: `comet.listen(name)`."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Iterator

from ._client import connect
from ._types import Message, OwnerPin, Position

_END = object()


def listen(name: str, from_: Position = "next", *, path: str | None = None, wait: bool = False,
           owner: OwnerPin = "implied", epoch: int | None = None) -> Iterator[Message]:
    """Yields the messages of channel `name` from a script without asyncio (an event loop runs in
    a thread of its own). Ends when the channel closes; raises as `Subscription` does. Closing the
    generator (or leaving the ``for`` loop) ends the subscription."""
    items: queue.Queue[object] = queue.Queue(maxsize=65536)
    stop = threading.Event()
    loop = asyncio.new_event_loop()

    async def run() -> None:
        try:
            async with await connect(path) as client:
                sub = await client.subscribe(name, from_, wait=wait, owner=owner, epoch=epoch)
                while not stop.is_set():
                    batch = await sub.batch()
                    if not batch:
                        break
                    for m in batch:
                        while not stop.is_set():
                            try:
                                items.put(m, timeout=0.1)
                                break
                            except queue.Full:
                                await asyncio.sleep(0)
            items.put(_END)
        except BaseException as e:  # handed to the reading thread
            items.put(e)

    thread = threading.Thread(target=lambda: loop.run_until_complete(run()), name=f"comet.listen({name})", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, Message)
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
