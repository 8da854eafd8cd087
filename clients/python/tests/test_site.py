"""Site and newest channels, positions, errors, listings, owners — against a real cometd."""

from __future__ import annotations

import asyncio
import os

import pytest

import comet
from comet import Last

from conftest import Daemon

# The daemon's version, as the VERSION file of the tree it was built from says (scripts/test-python
# runs these tests outside the tree and names it in COMET_REPO).
with open(os.path.join(os.environ.get("COMET_REPO", "../../.."), "VERSION")) as version_file:
    DAEMON_VERSION = version_file.read().strip()


async def read(sub: comet.Subscription, count: int) -> list[comet.Message]:
    got: list[comet.Message] = []
    async for m in sub:
        got.append(m)
        if len(got) == count:
            break
    return got


async def test_push_subscribe_positions_and_close(daemon: Daemon) -> None:
    async with await comet.connect(daemon.socket) as client:
        producer = await client.create("news", size=10)
        assert await producer.push("one") == 1
        assert await producer.push_batch([b"two", "three", b"four"]) == range(2, 5)
        oldest = await client.subscribe("news", "oldest")
        assert oldest.epoch == producer.epoch and oldest.next_sequence == 1 and oldest.owner.uid == os.getuid()
        assert [m.text for m in await read(oldest, 4)] == ["one", "two", "three", "four"]
        assert [m.sequence for m in await read(await client.subscribe("news", 3), 2)] == [3, 4]
        assert [m.sequence for m in await read(await client.subscribe("news", Last(2)), 2)] == [3, 4]
        assert [m.sequence for m in await read(await client.subscribe("news", -1), 1)] == [4]
        following = await client.subscribe("news")
        await producer.push(b"five")
        message = (await read(following, 1))[0]
        assert message == (5, b"five") and message.data == b"five" and message.sequence == 5
        seq, data = message
        assert (seq, data) == (5, b"five")
        assert await producer.close() == 5
        assert [m.sequence async for m in following] == []  # CLOSED ends it normally
        assert [m.sequence async for m in oldest] == [5]


async def test_newest_channel_keeps_the_latest(daemon: Daemon) -> None:
    async with await comet.connect(daemon.socket) as client:
        level = await client.create("level", newest=True)
        for value in range(10):
            await level.push(str(value))
        sub = await client.subscribe("level", "oldest")
        assert [m.text for m in await read(sub, 1)] == ["9"]


async def test_errors_are_typed(daemon: Daemon) -> None:
    async with await comet.connect(daemon.socket) as client:
        producer = await client.create("taken")
        with pytest.raises(comet.ChannelExists) as exists:
            await client.create("taken")
        assert exists.value.code == comet.ErrorCode.CHANNEL_EXISTS and "taken" in exists.value.message
        with pytest.raises(comet.NoSuchChannel):
            await client.subscribe("absent")
        with pytest.raises(comet.InvalidName):
            await client.create("-bad")
        with pytest.raises(comet.PositionAhead):
            await client.subscribe("taken", 5)
        with pytest.raises(comet.EpochMismatch):
            await client.subscribe("taken", epoch=producer.epoch ^ 1)
        with pytest.raises(comet.InvalidArgument):
            await client.create("huge", size=0xFFFFFFFF)
        with pytest.raises(ValueError):
            await client.subscribe("taken", 0)
        await client.ping()  # the connection is fine after refusals


async def test_full_raises_with_the_first_available(daemon: Daemon) -> None:
    async with await comet.connect(daemon.socket) as client:
        producer = await client.create("small", size=4)
        for i in range(10):
            await producer.push(str(i))
        sub = await client.subscribe("small", 2)  # evicted already: FULL at once
        with pytest.raises(comet.ChannelFull) as full:
            await read(sub, 1)
        assert full.value.first_available == 7


async def test_waiting_subscription_starts_with_the_channel(daemon: Daemon) -> None:
    async with await comet.connect(daemon.socket) as reader, await comet.connect(daemon.socket) as writer:
        sub = await reader.subscribe("later", wait=True)
        assert sub.waiting and not sub.owner.known
        producer = await writer.create("later")
        await producer.push("first")
        assert [m.text for m in await read(sub, 1)] == ["first"]
        assert sub.epoch == producer.epoch and sub.owner.uid == os.getuid()


async def test_reset_ends_a_relayed_subscription_of_a_recreated_channel(daemon: Daemon) -> None:
    upstream = Daemon()
    try:
        async with await comet.connect(daemon.socket) as client:
            up = await comet.connect(upstream.socket)
            producer = await up.create("feed")
            await producer.push("a")
            relayed = await client.subscribe_external("unix:" + upstream.socket, "feed", history=1)
            assert relayed.epoch == producer.epoch
            assert [m.text for m in await read(relayed, 1)] == ["a"]
            await producer.push("b")
            assert [(m.sequence, m.text) for m in await read(relayed, 1)] == [(2, "b")]
            # The upstream daemon dies and comes back: its channel is a new one (new epoch).
            upstream.kill()
            await up.close()
            upstream = Daemon(directory=upstream.directory)
            async with await comet.connect(upstream.socket) as up:
                again = await up.create("feed")
                await again.push("new")
                with pytest.raises(comet.ChannelReset) as reset:
                    await asyncio.wait_for(read(relayed, 5), 20)
                assert reset.value.epoch == again.epoch
            with pytest.raises(comet.Unsupported):
                await client.subscribe_external("nats://hub:4222/feed", "feed")
    finally:
        upstream.stop()


async def test_listings_are_paged_for_the_caller() -> None:
    paged = Daemon("--max-frame-size", "65536")
    try:
        async with await comet.connect(paged.socket) as client:
            names = [f"page{i:04d}." + "n" * 200 for i in range(600)]
            producers = [await client.create(n) for n in names]
            listed = await client.channels()
            assert [c.name for c in listed] == names
            assert all(c.owner.uid == os.getuid() and c.rule == "" and c.standing == 0 for c in listed)
            others = [await comet.connect(paged.socket) for _ in range(3)]
            sessions = await client.sessions()
            assert {s.id for s in sessions} >= {c.session.id for c in others if c.session}
            stats = await client.stats()
            assert stats.version == DAEMON_VERSION and stats.channels == 600
            assert len(stats.channel_stats) + (1 if stats.truncated else 0) > 0
            assert any(u.resource == "channels" and u.used == 600 for u in stats.usage[os.getuid()])
            for c in others:
                await c.close()
            del producers
    finally:
        paged.stop()


async def test_publish_and_flush_coalesce(daemon: Daemon) -> None:
    async with await comet.connect(daemon.socket) as client, await comet.connect(daemon.socket) as reader:
        producer = await client.create("stream", size=100_000)
        sub = await reader.subscribe("stream")
        for i in range(50_000):
            await producer.publish(b"%d" % i)
        assert await producer.flush() == 50_000
        got = []
        while len(got) < 50_000:
            got += await sub.batch()
        assert [m.data for m in got[:3]] == [b"0", b"1", b"2"] and got[-1] == (50_000, b"49999")
        stats = await client.stats()
        assert next(s for s in stats.channel_stats if s.name == "stream").pushed == 50_000


async def test_a_refused_publish_is_reported_by_flush(daemon: Daemon) -> None:
    async with await comet.connect(daemon.socket) as client:
        producer = await client.create_private("box", client.session.id if client.session else 0, size=3)
        for i in range(5):
            await producer.publish(str(i))
        with pytest.raises(comet.ChannelFull):
            await producer.flush()


async def test_owner_pinning(daemon: Daemon) -> None:
    me = os.getuid()
    async with await comet.connect(daemon.socket) as client:
        await client.create("pinned")
        await client.create(f"user.{me}.inbox")
        await client.create(f"user.{me + 4242}.inbox")
        assert (await client.subscribe("pinned", owner=me)).owner.uid == me
        with pytest.raises(comet.OwnerMismatch):
            await client.subscribe("pinned", owner=me + 1)
        # user.NAME.… implies its owner; "any" turns that off.
        assert (await client.subscribe(f"user.{me}.inbox")).owner.uid == me
        with pytest.raises(comet.OwnerMismatch):
            await client.subscribe(f"user.{me + 4242}.inbox")
        assert (await client.subscribe(f"user.{me + 4242}.inbox", owner="any")).owner.uid == me
        assert comet.implied_owner("user.root.x") == 0 and comet.implied_owner("user.root") is None
        waiting = await client.subscribe("pinned.later", wait=True, owner=me + 1)
        await client.create("pinned.later")
        with pytest.raises(comet.OwnerMismatch):
            await read(waiting, 1)


async def test_imports_are_fed_and_read_with_their_origin_numbers(daemon: Daemon) -> None:
    async with await comet.connect(daemon.socket) as bridge, await comet.connect(daemon.socket) as reader:
        assert bridge.serves_mirrors
        handle, last = await bridge.mirror("remote.news", epoch=0xFEED, next_sequence=41)
        assert last == 0
        await bridge.mirror_push(handle, 41, [b"a", b"b"])
        await bridge.mirror_state(handle, "live")
        sub = await reader.subscribe("remote.news", "oldest")
        assert sub.epoch == 0xFEED
        assert [(m.sequence, m.data) for m in await read(sub, 2)] == [(41, b"a"), (42, b"b")]
        listed = {c.name: c for c in await reader.channels()}
        assert listed["remote.news"].imported
        await bridge.bridge_report([], [comet.ImportReport("remote.news", 1, True, 0xFEED, 42, 0, "nats://x", "comet.news", 0, "")])
        stats = await reader.stats()
        assert [i.name for i in stats.imports] == ["remote.news"]
        await bridge.mirror_state(handle, "stalled", reason="no stream")
        with pytest.raises(comet.UpstreamUnreachable):
            await read(sub, 1)
        await bridge.mirror_state(handle, "closed", last=42)


async def test_unsubscribe_ends_delivery(daemon: Daemon) -> None:
    async with await comet.connect(daemon.socket) as client:
        producer = await client.create("quiet")
        async with await client.subscribe("quiet") as sub:
            await producer.push("one")
            assert (await read(sub, 1))[0].text == "one"
        await producer.push("two")
        await client.ping()
        assert [m async for m in sub] == []
        assert (await client.stats()).subscriptions == 0


async def test_messages_too_large_for_the_frames_are_refused_here() -> None:
    small = Daemon("--max-frame-size", "65536")
    try:
        async with await comet.connect(small.socket) as client:
            producer = await client.create("frames", size=10_000)
            with pytest.raises(ValueError):
                await producer.push(b"x" * 70_000)
            with pytest.raises(ValueError):
                await producer.publish(b"x" * 70_000)
            sub = await client.subscribe("frames")
            for _ in range(1000):
                await producer.publish(b"y" * 1000)  # batches cut to the daemon's frame size
            assert await producer.flush() == 1000
            got: list[comet.Message] = []
            while len(got) < 1000:
                got += await sub.batch()
            assert all(m.data == b"y" * 1000 for m in got)
    finally:
        small.stop()
