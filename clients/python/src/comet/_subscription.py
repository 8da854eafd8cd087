"""Subscriptions: async iterators of messages, with their end, acknowledgement and back-pressure."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from . import _wire as w
from ._replies import _ok_empty
from ._types import Message, Owner
from .errors import CometError, ErrorCode

if TYPE_CHECKING:
    from ._client import Client

#: A subscription's queue past which the connection stops reading (back-pressure to the daemon),
#: and below which it reads again.
QUEUE_HIGH = 16384
QUEUE_LOW = 4096


class Subscription:
    """A subscription: an async iterator of `Message`. It ends normally when the channel closes
    (CLOSED) and raises `ChannelFull` (FULL), `ChannelReset` (RESET) or the `CometError` of a
    FAILED event. `unsubscribe()` (or `async with`) ends it."""

    def __init__(self, client: "Client", sid: int, name: str, scope: str, epoch: int, next_sequence: int, owner: Owner,
                 again: dict[str, Any]) -> None:
        self._client = client
        self.id = sid
        self.name = name
        self.scope = scope
        #: The channel's epoch (0 while waiting for the channel).
        self.epoch = epoch
        #: The first sequence number this subscription delivers (0 while waiting).
        self.next_sequence = next_sequence
        #: Who created the channel (unknown while waiting).
        self.owner = owner
        self.waiting = epoch == 0
        self._queue: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._end: BaseException | None = None
        self._ended = False
        self._last = next_sequence - 1 if next_sequence else 0
        self._acked = self._last
        self._again = again
        self._throttling = False
        # After a reconnect, a private channel delivers again from its first unacknowledged
        # message: what this subscription already holds (the first `_kept` queued) is dropped.
        self._dedupe_until = 0
        self._kept = 0
        self._private = scope == "private"
        self._ack_wanted = self._acked
        self._ack_scheduled = False

    # Delivery (called by the protocol).

    def _held(self) -> int:
        """The last sequence number this subscription has, handed out or queued."""
        return self._queue[-1][0] if self._queue else self._last

    def _arrived(self) -> None:
        if self._dedupe_until:
            items = list(self._queue)
            fresh = [m for m in items[self._kept :] if m[0] > self._dedupe_until]
            self._queue.clear()
            self._queue.extend(items[: self._kept] + fresh)
            self._kept = len(self._queue)
            if fresh:
                self._dedupe_until = 0
        if len(self._queue) > QUEUE_HIGH and not self._throttling:
            self._throttling = True
            self._client._throttle(self, True)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish(self, end: BaseException | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._end = end
        self._client._forget(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # Reading.

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Message:
        queue = self._queue
        if queue:
            m = queue.popleft()
            if self._private:
                self._schedule_ack(self._last)  # asking for the next acknowledges the one before
            self._last = m[0]
            if self._throttling and len(queue) < QUEUE_LOW:
                self._unthrottle()
            return m
        return await self._next_after_wait()

    async def _next_after_wait(self) -> Message:
        while True:
            if self._queue:
                return await self.__anext__()
            if self._ended:
                if self._end is not None:
                    raise self._end
                raise StopAsyncIteration
            if self._private:
                self._schedule_ack(self._last)
            self._waiter = self._client._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def batch(self) -> list[Message]:
        """Every message waiting, at least one; [] when the subscription ended normally. Raises as
        iteration does. The fastest way to read."""
        queue = self._queue
        if not queue:
            try:
                first = await self._next_after_wait()
            except StopAsyncIteration:
                return []
            queue.appendleft(first)
        items = list(queue)
        queue.clear()
        if self._private:
            self._schedule_ack(self._last)
        self._last = items[-1][0]
        if self._throttling:
            self._unthrottle()
        return items

    def _unthrottle(self) -> None:
        self._throttling = False
        self._client._throttle(self, False)

    @property
    def last_sequence(self) -> int:
        """The sequence number of the last message handed out (0: none)."""
        return self._last

    def acknowledge(self, through: int | None = None) -> None:
        """Private channels: tells the daemon every message up to `through` (default: the last one
        handed out) is processed. Asking for the next message acknowledges the ones before it."""
        self._schedule_ack(self._last if through is None else min(through, self._last))

    def _schedule_ack(self, through: int) -> None:
        """Acknowledges through `through`: one ACK per turn of the event loop, whatever the count."""
        if through <= self._ack_wanted:
            return
        self._ack_wanted = through
        if not self._ack_scheduled:
            self._ack_scheduled = True
            self._client._loop.call_soon(self._send_ack)

    def _send_ack(self) -> None:
        self._ack_scheduled = False
        if self._ack_wanted <= self._acked or self._ended or not self._client._ready.is_set():
            return  # (after a reconnect, the subscription made again acknowledges it)
        self._acked = through = self._ack_wanted
        sid = self.id
        self._client._fire(lambda rid: w.ack(rid, sid, through))

    async def unsubscribe(self) -> None:
        """Ends the subscription; no message of it follows."""
        if self._ended:
            return
        if self._private:
            self._send_ack()
        sid = self.id
        self._finish(None)
        try:
            await self._client._call(lambda rid: w.unsubscribe(rid, sid), _ok_empty)
        except CometError as e:
            if e.code != ErrorCode.NO_SUCH_SUBSCRIPTION:
                raise

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.unsubscribe()
