"""Readers of the OK replies the client decodes (docs/PROTOCOL.md §6)."""

from __future__ import annotations


from . import _wire as w
from ._types import UNKNOWN_OWNER, ChannelInfo, Last, Owner, Position, SessionInfo


def _ok_empty(r: w.Reader) -> None:
    return None


def _ok_sequence(r: w.Reader) -> int:
    first = r.u64()
    count = r.u32()
    return first + count - 1


def _ok_range(r: w.Reader) -> range:
    first = r.u64()
    return range(first, first + r.u32())


def _position(from_: Position) -> tuple[int, int]:
    if from_ == "next":
        return w.POS_NEXT, 0
    if from_ == "oldest":
        return w.POS_OLDEST, 0
    if isinstance(from_, Last):
        return w.POS_LAST, from_.count
    if isinstance(from_, int) and not isinstance(from_, bool):
        if from_ >= 1:
            return w.POS_FROM, from_
        if from_ < 0:
            return w.POS_LAST, -from_
    raise ValueError(f"not a position: {from_!r} (\"next\", \"oldest\", N >= 1, Last(k) or -k)")


def _read_create_reply(r: w.Reader) -> tuple[int, int, tuple[int, int]]:
    channel, epoch = r.u64(), r.u64()
    token = (r.u64(), r.u64()) if r.remaining() >= 16 else (0, 0)
    return channel, epoch, token


def _read_adopt_reply(r: w.Reader) -> tuple[int, int, int, int]:
    channel, epoch, last = r.u64(), r.u64(), r.u64()
    number = r.u64() if r.remaining() >= 8 else 0
    return channel, epoch, last, number


def _read_subscribe_reply(r: w.Reader) -> tuple[int, int, int, int, Owner]:
    sid, waiting, epoch, next_sequence = r.u32(), r.u8(), r.u64(), r.u64()
    owner = Owner(r.u32(), r.u32()) if r.remaining() >= 8 else UNKNOWN_OWNER
    return sid, waiting, epoch, next_sequence, owner


def _read_list_reply(r: w.Reader) -> tuple[list[ChannelInfo], bool]:
    count = r.u32()
    rows: list[tuple[str, int, int, int, int, int, int, int]] = []
    for _ in range(count):
        rows.append((r.str(), r.u8(), r.u8(), r.u32(), r.u32(), r.u32(), r.u64(), r.u64()))
    more = r.u8() == 1 if r.remaining() else False
    owners = [Owner(r.u32(), r.u32()) if r.remaining() >= 8 else UNKNOWN_OWNER for _ in rows]
    imported = [r.u8() == 1 if r.remaining() else False for _ in rows]
    rules: list[tuple[str, int]] = []
    if r.remaining():
        rules = [(r.str(), r.u8()) for _ in rows]
    infos = []
    for i, row in enumerate(rows):
        rule, standing = rules[i] if rules else ("", 0)
        infos.append(ChannelInfo(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], owners[i], imported[i],
                                 rule, standing))
    return infos, more


def _read_sessions_reply(r: w.Reader) -> tuple[list[SessionInfo], bool]:
    count = r.u32()
    page = [SessionInfo(r.u64(), r.u32(), r.u32(), r.u32(), r.u64()) for _ in range(count)]
    more = r.u8() == 1 if r.remaining() else False
    return page, more
