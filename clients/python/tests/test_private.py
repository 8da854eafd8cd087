"""Client-process scope: private channels with acknowledgement and RESUME, unlimited channels,
offers, wait_timeout — against a real cometd."""

from __future__ import annotations

import asyncio

import pytest

import comet

from conftest import Daemon


async def test_private_channel_is_acknowledged_and_resumed(daemon: Daemon) -> None:
    reader = await comet.connect(daemon.socket)
    session = reader.session
    assert session is not None
    async with await comet.connect(daemon.socket) as producer_client:
        box = await producer_client.create_private("mail", session.id, size=100)
        offer = await asyncio.wait_for(reader.offers().__anext__(), 5)
        assert (offer.name, offer.kind, offer.channel) == ("mail", 2, box.channel)
        for i in range(1, 6):
            await box.push(f"m{i}")
        sub = await reader.subscribe_private("mail")
        got = [await sub.__anext__() for _ in range(3)]
        assert [m.text for m in got] == ["m1", "m2", "m3"]
        # Asking for the fourth acknowledges the first three; the fourth is then in hand, not acknowledged.
        assert (await sub.__anext__()).text == "m4"
        await reader.ping()
        await reader.close()
        # Another connection of the same session takes over from the first unacknowledged message.
        async with await comet.connect(daemon.socket, resume=session) as again:
            assert again.session == session
            offers = again.offers()
            assert (await asyncio.wait_for(offers.__anext__(), 5)).name == "mail"
            resumed = await again.subscribe_private("mail")
            assert resumed.next_sequence == 4
            assert [m.text for m in [await resumed.__anext__(), await resumed.__anext__()]] == ["m4", "m5"]
            with pytest.raises(comet.AlreadySubscribed):
                await again.subscribe_private("mail")
            assert await box.close() == 5
            assert [m async for m in resumed] == []
        with pytest.raises(comet.NoSuchSession):
            await producer_client.create_private("x", 0xDEAD)


async def test_overflow_ends_a_private_channel(daemon: Daemon) -> None:
    async with await comet.connect(daemon.socket) as reader, await comet.connect(daemon.socket) as writer:
        assert reader.session is not None
        box = await writer.create_private("tiny", reader.session.id, size=2)
        sub = await reader.subscribe_private("tiny")
        await box.push("a")
        await box.push("b")
        with pytest.raises(comet.ChannelFull):
            await box.push("c")
        with pytest.raises(comet.ChannelFull):
            async for _ in sub:
                pass


async def test_unlimited_channel_answers_pulls(daemon: Daemon) -> None:
    async with await comet.connect(daemon.socket) as reader, await comet.connect(daemon.socket) as writer:
        assert reader.session is not None
        counter = iter(range(100))

        async def answer(pull: int) -> bytes:
            return b"value %d for pull %d" % (next(counter), pull)

        await writer.create_unlimited("numbers", reader.session.id, answer)
        sub = await reader.subscribe_private("numbers")
        got = [await asyncio.wait_for(sub.__anext__(), 5) for _ in range(3)]
        assert [m.data for m in got] == [b"value 0 for pull 1", b"value 1 for pull 2", b"value 2 for pull 3"]
        assert [m.sequence for m in got] == [1, 2, 3]


async def test_wait_timeout_and_session_end(daemon: Daemon) -> None:
    async with await comet.connect(daemon.socket) as watcher:
        other = await comet.connect(daemon.socket)
        assert other.session is not None
        started = asyncio.get_running_loop().time()
        assert await watcher.wait_timeout(other.session.id, 0.2) is False
        assert asyncio.get_running_loop().time() - started >= 0.19
        with pytest.raises(comet.NoSuchSession):
            await watcher.wait_timeout(0xDEAD, 1)
        await other.close()
        # A session without a connection outlives it by the grace period: not ended yet.
        assert await watcher.wait_timeout(other.session.id, 0.05) is False


async def test_producer_hears_that_its_session_ended() -> None:
    short = Daemon("--session-grace", "0.2")
    try:
        async with await comet.connect(short.socket) as writer:
            reader = await comet.connect(short.socket)
            assert reader.session is not None
            box = await writer.create_private("gone", reader.session.id)
            await reader.close()
            assert await writer.wait_timeout(reader.session.id, 30) is True
            await writer.ping()
            with pytest.raises(comet.ChannelClosed) as closed:
                await box.push("late")
            assert closed.value.code == comet.ErrorCode.SESSION_ENDED
    finally:
        short.stop()


async def test_closing_the_client_ends_its_iterators(daemon: Daemon) -> None:
    client = await comet.connect(daemon.socket)
    producer = await client.create("ending")
    sub = await client.subscribe("ending")
    offers = client.offers()
    await producer.push("one")
    assert (await sub.__anext__()).text == "one"
    await client.close()
    assert [m async for m in sub] == []
    assert [o async for o in offers] == []
    with pytest.raises(comet.ConnectionLost):
        await client.ping()
