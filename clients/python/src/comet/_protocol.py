"""The connection's asyncio protocol: frames in, MESSAGE events parsed straight into their
subscription's queue, everything else handed to the client."""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import TYPE_CHECKING

from . import _wire as w
from ._types import Message

if TYPE_CHECKING:
    from ._client import Client
    from ._subscription import Subscription

_EVENT_HEAD = struct.Struct(">IBIQ")  # length, opcode, subscription, sequence (MESSAGE's first fields)
_LENGTH = struct.Struct(">I")
_new_message = tuple.__new__


class _Protocol(asyncio.Protocol):
    """Frames in, dispatched to the client; MESSAGE events straight into their subscription."""

    def __init__(self, client: "Client") -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.paused = False
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self.client._lost(self, exc)

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        end_of_data = len(buf)
        at = 0
        client = self.client
        subs = client._subs
        unpack_head = _EVENT_HEAD.unpack_from
        new = _new_message
        last_id = -1
        queue: deque[Message] | None = None
        sub: Subscription | None = None
        touched: list[Subscription] = []
        while end_of_data - at >= 17:
            length, op, sid, seq = unpack_head(buf, at)
            end = at + 4 + length
            if end > end_of_data:
                break
            if op == 0x90:
                if sid != last_id:
                    sub = subs.get(sid)
                    last_id = sid
                    if sub is not None:
                        queue = sub._queue
                        touched.append(sub)
                if sub is not None and queue is not None:
                    queue.append(new(Message, (seq, buf[at + 17 : end])))
            else:
                if length == 0:
                    client._violation("an empty frame")
                    return
                client._frame(op, w.Reader(buf[at + 5 : end]))
                last_id = -1
                sub = None
            at = end
        while end_of_data - at >= 4:  # frames shorter than MESSAGE's head
            (length,) = _LENGTH.unpack_from(buf, at)
            end = at + 4 + length
            if end > end_of_data:
                break
            if length == 0:
                client._violation("an empty frame")
                return
            client._frame(buf[at + 4], w.Reader(buf[at + 5 : end]))
            at = end
        self.buffer = buf[at:] if at < end_of_data else b""
        if len(self.buffer) >= 4:
            (length,) = _LENGTH.unpack_from(self.buffer, 0)
            if length > client._max_frame:
                client._violation(f"a frame of {length} bytes, above the maximum of {client._max_frame}")
                return
        for s in touched:
            s._arrived()
