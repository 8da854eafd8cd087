"""The comet wire protocol (docs/PROTOCOL.md): frame layouts, encoders and decoders. No I/O."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterable, Sequence

PROTOCOL_VERSION = 1
#: Largest frame before the handshake (the HELLO reply advertises the server's own).
HANDSHAKE_MAX_FRAME = 1 << 20

# Requests (client → server).
HELLO = 0x01
CREATE = 0x02
PUSH = 0x03
PUSH_BATCH = 0x04
CLOSE = 0x05
SUBSCRIBE = 0x06
UNSUBSCRIBE = 0x07
LIST = 0x08
PING = 0x09
RESUME = 0x0A
CREATE_PRIVATE = 0x0B
ACK = 0x0C
SESSIONS = 0x0D
ANSWER = 0x0E
WAIT_TIMEOUT = 0x0F
SUBSCRIBE_EXTERNAL = 0x10
LIST_FROM = 0x11
SESSIONS_FROM = 0x12
STATS = 0x13
ADOPT = 0x14
PUSH_NUMBERED = 0x15
MIRROR = 0x16
MIRROR_PUSH = 0x17
MIRROR_STATE = 0x18
BRIDGE_REPORT = 0x19

# Responses and events (server → client).
OK = 0x80
ERROR = 0x81
MESSAGE = 0x90
FULL = 0x91
CLOSED = 0x92
STARTED = 0x93
OFFER = 0x94
ENDED = 0x95
PULL = 0x96
RESET = 0x97
FAILED = 0x98

# SUBSCRIBE flags.
FLAG_WAIT = 0x1
FLAG_PRIVATE = 0x2
FLAG_OWNER = 0x4

# Positions.
POS_NEXT = 0
POS_OLDEST = 1
POS_FROM = 2
POS_LAST = 3

# Channel kinds.
KIND_BUFFERED = 0
KIND_NEWEST = 1
KIND_PRIVATE = 2
KIND_UNLIMITED = 3

# HELLO features.
FEATURE_NUMBERED = 0x1
FEATURE_MIRRORS = 0x2

UNKNOWN_ID = 0xFFFFFFFF

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HEAD = struct.Struct(">IBI")  # length, opcode, request id
_HEAD_CH = struct.Struct(">IBIQ")  # + channel
_HEAD_NUMBERED = struct.Struct(">IBIQQI")  # + channel, number, count
_HEAD_BATCH = struct.Struct(">IBIQI")  # + channel, count


class ProtocolViolation(Exception):
    """A frame from the server that does not match its layout."""


def s(text: str) -> bytes:
    """A `str` field: u16 length and UTF-8 bytes."""
    data = text.encode()
    if len(data) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return _U16.pack(len(data)) + data


def frame(opcode: int, request_id: int, body: bytes = b"") -> bytes:
    """A request frame: length, opcode, request id, then `body`."""
    return _HEAD.pack(5 + len(body), opcode, request_id) + body


def hello(request_id: int) -> bytes:
    return frame(HELLO, request_id, b"\x01" + _U16.pack(PROTOCOL_VERSION))


def create(request_id: int, name: str, kind: int, size: int) -> bytes:
    return frame(CREATE, request_id, struct.pack(">BI", kind, size) + s(name))


def create_private(request_id: int, name: str, kind: int, size: int, session: int) -> bytes:
    return frame(CREATE_PRIVATE, request_id, struct.pack(">BIQ", kind, size, session) + s(name))


def push(request_id: int, channel: int, payload: bytes) -> bytes:
    return _HEAD_CH.pack(13 + len(payload), PUSH, request_id, channel) + payload


def batch_entries(payloads: Iterable[bytes]) -> tuple[bytes, int]:
    """PUSH_BATCH's messages laid out (u32 length, bytes each), and how many."""
    parts: list[bytes] = []
    pack = _U32.pack
    for p in payloads:
        parts.append(pack(len(p)))
        parts.append(p)
    return b"".join(parts), len(parts) // 2


def push_batch(request_id: int, channel: int, entries: bytes, count: int) -> bytes:
    return _HEAD_BATCH.pack(17 + len(entries), PUSH_BATCH, request_id, channel, count) + entries


def push_numbered(request_id: int, channel: int, number: int, entries: bytes, count: int) -> bytes:
    return _HEAD_NUMBERED.pack(25 + len(entries), PUSH_NUMBERED, request_id, channel, number, count) + entries


def close(request_id: int, channel: int) -> bytes:
    return frame(CLOSE, request_id, _U64.pack(channel))


def subscribe(request_id: int, name: str, flags: int, position: int, argument: int, epoch: int, owner: int | None) -> bytes:
    if owner is not None:
        flags |= FLAG_OWNER
    body = struct.pack(">BBQQ", flags, position, argument, epoch) + s(name)
    if owner is not None:
        body += _U32.pack(owner)
    return frame(SUBSCRIBE, request_id, body)


def subscribe_external(request_id: int, address: str, name: str, history: int, newest: bool) -> bytes:
    return frame(SUBSCRIBE_EXTERNAL, request_id, struct.pack(">BI", 1 if newest else 0, history) + s(address) + s(name))


def unsubscribe(request_id: int, subscription: int) -> bytes:
    return frame(UNSUBSCRIBE, request_id, _U32.pack(subscription))


def list_from(request_id: int, after: tuple[str, int] | None) -> bytes:
    if after is None:
        return frame(LIST, request_id)
    return frame(LIST_FROM, request_id, _U8.pack(after[1]) + s(after[0]))


def sessions_from(request_id: int, after: int | None) -> bytes:
    if after is None:
        return frame(SESSIONS, request_id)
    return frame(SESSIONS_FROM, request_id, _U64.pack(after))


def resume(request_id: int, session: int, token: tuple[int, int]) -> bytes:
    return frame(RESUME, request_id, struct.pack(">QQQ", session, token[0], token[1]))


def ack(request_id: int, subscription: int, sequence: int) -> bytes:
    return frame(ACK, request_id, struct.pack(">IQ", subscription, sequence))


def answer(request_id: int, channel: int, pull: int, payload: bytes) -> bytes:
    return frame(ANSWER, request_id, struct.pack(">QQ", channel, pull) + payload)


def wait_timeout(request_id: int, session: int, timeout_ms: int) -> bytes:
    return frame(WAIT_TIMEOUT, request_id, struct.pack(">QQ", session, timeout_ms))


def adopt(request_id: int, channel: int, token: tuple[int, int]) -> bytes:
    return frame(ADOPT, request_id, struct.pack(">QQQ", channel, token[0], token[1]))


def mirror(request_id: int, name: str, newest: bool, size: int, epoch: int, next_sequence: int) -> bytes:
    return frame(MIRROR, request_id, struct.pack(">BIQQ", 1 if newest else 0, size, epoch, next_sequence) + s(name))


def mirror_push(request_id: int, handle: int, first: int, entries: bytes, count: int) -> bytes:
    return frame(MIRROR_PUSH, request_id, struct.pack(">QQI", handle, first, count) + entries)


def mirror_state(request_id: int, handle: int, state: int, last: int, reason: str) -> bytes:
    return frame(MIRROR_STATE, request_id, struct.pack(">QBQ", handle, state, last) + s(reason))


# ---- Reading ---------------------------------------------------------------------------------


class Reader:
    """Reads the fields of one frame body, in order."""

    __slots__ = ("data", "at")

    def __init__(self, data: bytes | memoryview, at: int = 0) -> None:
        self.data = data
        self.at = at

    def remaining(self) -> int:
        return len(self.data) - self.at

    def _take(self, st: struct.Struct, what: str) -> int:
        if self.at + st.size > len(self.data):
            raise ProtocolViolation(f"frame too short for {what}")
        (value,) = st.unpack_from(self.data, self.at)
        self.at += st.size
        return int(value)

    def u8(self, what: str = "u8") -> int:
        return self._take(_U8, what)

    def u16(self, what: str = "u16") -> int:
        return self._take(_U16, what)

    def u32(self, what: str = "u32") -> int:
        return self._take(_U32, what)

    def u64(self, what: str = "u64") -> int:
        return self._take(_U64, what)

    def str(self, what: str = "str") -> str:
        n = self.u16(what)
        if self.at + n > len(self.data):
            raise ProtocolViolation(f"frame too short for {what}")
        text = bytes(self.data[self.at : self.at + n]).decode("utf-8", "replace")
        self.at += n
        return text

    def rest(self) -> bytes:
        data = bytes(self.data[self.at :])
        self.at = len(self.data)
        return data


@dataclass(frozen=True)
class HelloReply:
    """What the server said in its HELLO reply."""

    version: int
    max_frame_size: int
    max_channel_size: int
    max_name_length: int
    session: int
    token: tuple[int, int]
    instance: int
    features: int

    @staticmethod
    def read(r: Reader) -> "HelloReply":
        version, max_frame, max_size, max_name = r.u16(), r.u32(), r.u32(), r.u16()
        session, high, low, instance = r.u64(), r.u64(), r.u64(), r.u64()
        features = r.u64() if r.remaining() >= 8 else 0
        return HelloReply(version, max_frame, max_size, max_name, session, (high, low), instance, features)


@dataclass(frozen=True)
class StatsEntry:
    """Counters of one site channel (STATS)."""

    name: str
    pushed: int
    delivered: int
    bytes: int
    full: int
    readers: int
    ring_bytes: int


@dataclass(frozen=True)
class UsageEntry:
    """One resource a user holds, and its quota (STATS)."""

    resource: str
    used: int
    quota: int


@dataclass
class ExportReport:
    """A channel exported to NATS, as a bridge reports it (STATS, BRIDGE_REPORT)."""

    name: str
    subject: str
    epoch: int
    published: int
    acknowledged: int
    missed: int
    backlog: int
    connected: bool
    server: str = ""
    stream: str = ""
    replicas: int = 0
    failure: str = ""


@dataclass
class ImportReport:
    """An import (a NATS subject under a local name), as STATS and BRIDGE_REPORT carry it."""

    name: str
    state: int
    fed: bool
    epoch: int
    last_sequence: int
    readers: int
    server: str
    subject: str
    foreign: int
    reason: str


@dataclass
class Stats:
    """STATS: daemon totals, per-channel counters, the caller's usage and quotas, exports, imports."""

    version: str
    uptime_ms: int
    connections_accepted: int
    connections_refused: int
    connections: int
    channels: int
    subscriptions: int
    sessions: int
    memory: int
    memory_ceiling: int
    channel_stats: list[StatsEntry] = field(default_factory=list)
    usage: dict[int, list[UsageEntry]] = field(default_factory=dict)
    truncated: bool = False
    exports: list[ExportReport] = field(default_factory=list)
    imports: list[ImportReport] = field(default_factory=list)

    @staticmethod
    def read(r: Reader) -> "Stats":
        st = Stats(r.str(), r.u64(), r.u64(), r.u64(), r.u32(), r.u32(), r.u32(), r.u32(), r.u64(), r.u64())
        for _ in range(r.u32()):
            name = r.str()
            r.u8()
            st.channel_stats.append(StatsEntry(name, r.u64(), r.u64(), r.u64(), r.u64(), r.u32(), r.u64()))
        for _ in range(r.u32()):
            uid = r.u32()
            st.usage[uid] = [UsageEntry(r.str(), r.u64(), r.u64()) for _ in range(r.u8())]
        st.truncated = r.u8() == 1
        if r.remaining() < 4:
            return st
        for _ in range(r.u32()):
            st.exports.append(ExportReport(r.str(), r.str(), r.u64(), r.u64(), r.u64(), r.u64(), r.u64(), r.u8() == 1))
        if r.remaining() < 4:
            return st
        for _ in range(r.u32()):
            st.imports.append(read_import(r))
        for e in st.exports:
            if r.remaining() == 0:
                break
            e.server, e.stream, e.replicas, e.failure = r.str(), r.str(), r.u8(), r.str()
        return st


def read_import(r: Reader) -> ImportReport:
    return ImportReport(r.str(), r.u8(), r.u8() == 1, r.u64(), r.u64(), r.u32(), r.str(), r.str(), r.u64(), r.str())


def bridge_report(request_id: int, exports: Sequence[ExportReport], imports: Sequence[ImportReport]) -> bytes:
    parts = [_U32.pack(len(exports))]
    for e in exports:
        parts += [s(e.name), s(e.subject), struct.pack(">QQQQQB", e.epoch, e.published, e.acknowledged, e.missed, e.backlog,
                                                        1 if e.connected else 0),
                  s(e.server), s(e.stream), _U8.pack(e.replicas), s(e.failure)]
    parts.append(_U32.pack(len(imports)))
    for i in imports:
        parts += [s(i.name), struct.pack(">BBQQI", i.state, 1 if i.fed else 0, i.epoch, i.last_sequence, i.readers),
                  s(i.server), s(i.subject), _U64.pack(i.foreign), s(i.reason)]
    return frame(BRIDGE_REPORT, request_id, b"".join(parts))
