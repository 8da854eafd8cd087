"""The codec against the hex vectors of docs/PROTOCOL.md (the same ones the Swift and C codecs use)."""

from __future__ import annotations

import re

import pytest

from comet import _wire as w
from comet._replies import _read_list_reply, _read_sessions_reply, _read_subscribe_reply
from comet.errors import ChannelFull, ErrorCode, QuotaExceeded, error_for

from conftest import REPO


def vectors() -> dict[str, bytes]:
    text = (REPO / "docs/PROTOCOL.md").read_text()
    found = re.findall(r"```hex vector=([\w-]+)\n(.*?)```", text, re.S)
    return {name: bytes.fromhex("".join(body.split())) for name, body in found}


V = vectors()
EPOCH = 0x1122334455667788
TOKEN = (0xA1A2A3A4A5A6A7A8, 0xB1B2B3B4B5B6B7B8)


@pytest.mark.parametrize("name,encoded", [
    ("hello", w.hello(1)),
    ("create", w.create(2, "news", 0, 1000)),
    ("push", w.push(3, 1, b"hi")),
    ("push-batch", w.push_batch(4, 1, *w.batch_entries([b"a", b"bc"]))),
    ("close", w.close(5, 1)),
    ("unsubscribe", w.unsubscribe(7, 1)),
    ("list", w.list_from(8, None)),
    ("list-from", w.list_from(0x13, ("news", 0))),
    ("ping", w.frame(w.PING, 9)),
    ("resume", w.resume(0x0A, 0xABC, (0x0102030405060708, 0x090A0B0C0D0E0F10))),
    ("create-private", w.create_private(0x0B, "mail", 2, 100, 0xABC)),
    ("subscribe-private", w.subscribe(0x0C, "mail", w.FLAG_PRIVATE, 0, 0, 0, None)),
    ("ack", w.ack(0x0D, 3, 7)),
    ("sessions", w.sessions_from(0x0E, None)),
    ("sessions-from", w.sessions_from(0x14, 0xABC)),
    ("answer", w.answer(0x0F, 0x8000000000000002, 1, b"hi")),
    ("wait-timeout", w.wait_timeout(0x10, 0xABC, 1000)),
    ("subscribe-external", w.subscribe_external(0x11, "unix:/run/comet/comet.sock", "news", 3, False)),
    ("stats", w.frame(w.STATS, 0x15)),
    ("adopt", w.adopt(0x16, 1, TOKEN)),
    ("push-numbered", w.push_numbered(0x17, 1, 5, *w.batch_entries([b"a", b"bc"]))),
    ("mirror", w.mirror(0x18, "remote.news", False, 1000, EPOCH, 1)),
    ("mirror-push", w.mirror_push(0x19, 0x4000000000000001, 5, *w.batch_entries([b"a", b"bc"]))),
    ("mirror-state", w.mirror_state(0x1A, 0x4000000000000001, 2, 5, "no stream!")),
])
def test_requests_encode_as_the_vectors(name: str, encoded: bytes) -> None:
    assert encoded == V[name], name


def test_every_subscribe_vector() -> None:
    for name, body in V.items():
        if name.startswith("subscribe") and body[4] == w.SUBSCRIBE and name != "subscribe-private":
            r = w.Reader(body, 9)
            flags, position, argument, epoch, channel = r.u8(), r.u8(), r.u64(), r.u64(), r.str()
            owner = r.u32() if flags & w.FLAG_OWNER else None
            rid = int.from_bytes(body[5:9], "big")
            assert w.subscribe(rid, channel, flags & ~w.FLAG_OWNER, position, argument, epoch, owner) == body, name


def body(name: str) -> w.Reader:
    frame = V[name]
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    return w.Reader(frame, 9)  # after length, opcode and request id


def test_replies_decode() -> None:
    hello = w.HelloReply.read(body("hello-ok"))
    assert (hello.version, hello.max_frame_size, hello.session, hello.features) == (1, 1 << 20, 0xABC, 1)
    assert w.HelloReply.read(body("hello-ok-mirrors")).features == 3
    sid, waiting, epoch, next_sequence, owner = _read_subscribe_reply(body("subscribe-ok"))
    assert (sid, waiting, epoch, next_sequence, owner.uid) == (1, 0, EPOCH, 2, 1000)
    page, more = _read_list_reply(body("list-ok"))
    assert [(c.name, c.size, c.buffered, c.subscribers, c.owner.uid, c.rule, c.standing) for c in page] == [
        ("news", 1000, 3, 2, 1000, "news*", 1)]
    assert not more
    sessions, more = _read_sessions_reply(body("sessions-ok"))
    assert [(s.id, s.uid, s.connections, s.private_channels, s.idle_ms) for s in sessions] == [(0xABC, 1000, 1, 2, 1500)]


def test_errors_carry_their_codes() -> None:
    r = body("error")
    code, message = r.u16(), r.str()
    e = error_for(code, message)
    assert e.code == ErrorCode.NOT_OWNER and e.message == "not yours" and e.name == "NOT_OWNER"
    assert isinstance(error_for(29, "over"), QuotaExceeded)
    assert isinstance(error_for(16, "full"), ChannelFull)
    unknown = error_for(4242, "new")
    assert unknown.code == 4242 and unknown.name == "ERROR_4242"


def test_short_frames_are_refused() -> None:
    with pytest.raises(w.ProtocolViolation):
        w.HelloReply.read(w.Reader(b"\x00\x01"))
