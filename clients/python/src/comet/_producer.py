"""Producers: the channels a client created, their pushes (numbered when the daemon serves it),
publish and flush."""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from . import _wire as w
from ._replies import _ok_range, _ok_sequence
from .errors import ChannelClosed, CometError, ConnectionLost, ErrorCode

if TYPE_CHECKING:
    from ._client import Client

_ENTRY = struct.Struct(">I")
#: A numbered batch's fields before its messages (opcode, request id, channel, number, count).
_BATCH_HEAD = 1 + 4 + 8 + 8 + 4

#: Answers an unlimited channel's pull: returns the next message.
PullHandler = Callable[[int], Awaitable[bytes]]


class _Numbered:
    """A numbered push (PUSH_NUMBERED) without an answer yet: sent again after a reconnect."""

    __slots__ = ("number", "entries", "count", "future", "decode", "sent_on")

    def __init__(self, number: int, entries: bytes, count: int, future: asyncio.Future[Any],
                 decode: Callable[[w.Reader], Any]) -> None:
        self.number = number
        self.entries = entries
        self.count = count
        self.future = future
        self.decode = decode
        self.sent_on: object = None


class Producer:
    """A channel this client created: push to it, publish and flush, close it."""

    def __init__(self, client: "Client", channel: int, epoch: int, token: tuple[int, int], name: str, kind: int) -> None:
        self._client = client
        #: The channel's handle (daemon-wide).
        self.channel = channel
        self.epoch = epoch
        #: The producer token (ADOPT after a restart).
        self.token = token
        self.name = name
        self.kind = kind
        self._next_number = 1
        self._numbered = client._numbered
        #: Numbered pushes not answered yet, in order.
        self._unanswered: deque[_Numbered] = deque()
        self._ended: CometError | None = None
        self._closed = False
        # publish(): messages not yet sent, and answers awaited.
        self._parts: list[bytes] = []
        self._part_bytes = 0
        self._scheduled = False
        self._outstanding = 0
        self._limit = 4 << 20
        self._room: asyncio.Future[None] | None = None
        self._last_published: asyncio.Future[Any] | None = None
        self._publish_failure: BaseException | None = None
        self.last_sequence = 0
        self.on_pull: PullHandler | None = None

    def _check(self) -> None:
        if self._ended is not None:
            raise self._ended
        if self._closed:
            raise ChannelClosed(ErrorCode.CHANNEL_CLOSED, f"channel {self.name!r} was closed")

    def _send_entries(self, entries: bytes, count: int, decode: Callable[[w.Reader], Any]) -> asyncio.Future[Any]:
        client = self._client
        if len(entries) + _BATCH_HEAD > client._max_frame:
            raise ValueError(f"{count} message(s) of {len(entries)} bytes do not fit the daemon's frames ({client._max_frame} bytes)")
        if self._numbered and client._serves_numbered:
            number = self._next_number
            self._next_number += count
            future: asyncio.Future[Any] = client._loop.create_future()
            record = _Numbered(number, entries, count, future, decode)
            self._unanswered.append(record)
            client._send_numbered(self, record)
            return future
        channel = self.channel
        return client._request(lambda rid: w.push_batch(rid, channel, entries, count), decode)

    async def push(self, data: bytes | str) -> int:
        """Appends one message; returns its sequence number."""
        self._check()
        payload = data.encode() if isinstance(data, str) else bytes(data)
        if self._numbered and self._client._serves_numbered:
            seq: int = await self._send_entries(_ENTRY.pack(len(payload)) + payload, 1, _ok_sequence)
        else:
            if len(payload) + 13 > self._client._max_frame:
                raise ValueError(f"a message of {len(payload)} bytes does not fit the daemon's frames ({self._client._max_frame} bytes)")
            channel = self.channel
            seq = await self._client._call(lambda rid: w.push(rid, channel, payload), _ok_sequence)
        self.last_sequence = max(self.last_sequence, seq)
        return seq

    async def push_batch(self, messages: Iterable[bytes | str]) -> range:
        """Appends several messages in one request; returns their sequence numbers."""
        self._check()
        entries, count = w.batch_entries(m.encode() if isinstance(m, str) else bytes(m) for m in messages)
        if count == 0:
            return range(0)
        got: range = await self._send_entries(entries, count, _ok_range)
        if got:
            self.last_sequence = max(self.last_sequence, got[-1])
        return got

    async def publish(self, data: bytes | str) -> None:
        """Queues one message without waiting for its answer: published messages go out coalesced
        into batches. Waits only while more than 4 MiB are unanswered. `flush()` says how it went."""
        self._check()
        payload = data.encode() if isinstance(data, str) else data
        size = 4 + len(payload)
        room = self._client._max_frame - _BATCH_HEAD
        if size > room:
            raise ValueError(f"a message of {len(payload)} bytes does not fit the daemon's frames ({self._client._max_frame} bytes)")
        if self._part_bytes + size > room:
            self._hand_off()
        parts = self._parts
        parts.append(_ENTRY.pack(len(payload)))
        parts.append(payload)
        self._part_bytes += size
        if self._part_bytes >= min(65536, room // 2):
            self._hand_off()
        elif not self._scheduled:
            self._scheduled = True
            self._client._loop.call_soon(self._hand_off)
        if self._outstanding > self._limit:
            self._room = self._client._loop.create_future()
            await self._room

    def _hand_off(self) -> None:
        self._scheduled = False
        if not self._parts:
            return
        count = len(self._parts) // 2
        entries = b"".join(self._parts)
        self._parts = []
        self._part_bytes = 0
        size = len(entries)
        self._outstanding += size
        future = self._send_entries(entries, count, _ok_range)
        self._last_published = future

        def answered(f: asyncio.Future[Any]) -> None:
            self._outstanding -= size
            if f.cancelled():
                pass
            elif f.exception() is not None:
                if self._publish_failure is None:
                    self._publish_failure = f.exception()
            else:
                got: range = f.result()
                if got:
                    self.last_sequence = max(self.last_sequence, got[-1])
            room = self._room
            if room is not None and self._outstanding <= self._limit and not room.done():
                room.set_result(None)

        future.add_done_callback(answered)

    async def flush(self) -> int:
        """Sends what `publish` queued and waits for every answer; returns the last sequence number.
        Raises the first refusal since the last flush (the messages after it were refused too)."""
        self._hand_off()
        last = self._last_published
        if last is not None:
            try:
                await asyncio.shield(last)
            except (CometError, ConnectionLost):
                pass
        failure, self._publish_failure = self._publish_failure, None
        if failure is not None:
            raise failure
        return self.last_sequence

    async def close(self) -> int:
        """Closes the channel (readers get what is buffered, then the end); returns its last
        sequence number."""
        if self._closed or self._ended is not None:
            return self.last_sequence
        await self.flush()
        channel = self.channel
        last: int = await self._client._call(lambda rid: w.close(rid, channel), lambda r: r.u64())
        self._closed = True
        self._client._producers.pop(self.channel, None)
        return last

    async def __aenter__(self) -> "Producer":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
