"""Reconnection: across a live upgrade (nothing to do) and across kill -9 under the test supervisor
(sessions resumed, producers adopted with their unanswered pushes applied once, subscriptions made
again after their last message)."""

from __future__ import annotations

import asyncio
import os
import signal

import comet

from conftest import Daemon, Supervisor


async def test_live_upgrade_is_a_pause(daemon: Daemon) -> None:
    async with await comet.connect(daemon.socket) as client:
        producer = await client.create("steady")
        sub = await client.subscribe("steady")
        await producer.push("before")
        os.kill(daemon.pid, signal.SIGHUP)
        for _ in range(250):
            if "state taken over" in daemon.log or "upgrade" in daemon.log:
                break
            await asyncio.sleep(0.02)
        await producer.push("after")
        got = [await asyncio.wait_for(sub.__anext__(), 10) for _ in range(2)]
        assert [m.text for m in got] == ["before", "after"]
        assert await producer.close() == 2


async def test_kill_9_loses_nothing_and_duplicates_nothing(supervisor: Supervisor) -> None:
    events: list[str] = []
    writer = await comet.connect(supervisor.socket, reconnect=comet.ReconnectPolicy(initial_delay=0.02, give_up_after=30))
    reader = await comet.connect(supervisor.socket, reconnect=True)
    writer.on_event = lambda kind, _: events.append(kind)
    assert writer.serves_numbered_pushes
    producer = await writer.create("durable", size=100_000)
    sub = await reader.subscribe("durable", "oldest")
    assert reader.session is not None
    box = await writer.create_private("inbox", reader.session.id, size=1000)
    private = await reader.subscribe_private("inbox")
    for i in range(1, 501):
        await producer.publish(b"%d" % i)
    await producer.flush()
    await box.push_batch([b"p%d" % i for i in range(1, 11)])
    got = [await asyncio.wait_for(sub.__anext__(), 5) for _ in range(100)]
    privately = [await asyncio.wait_for(private.__anext__(), 5) for _ in range(4)]
    await reader.ping()

    # Pushes in flight when the daemon dies: stopped, so it reads none of them, then killed.
    os.kill(supervisor.process.pid if supervisor.process else 0, signal.SIGSTOP)
    for i in range(501, 1001):
        await producer.publish(b"%d" % i)
    in_flight = asyncio.ensure_future(producer.flush())
    await asyncio.sleep(0.2)
    supervisor.stop(signal.SIGKILL)
    supervisor.start()
    assert await asyncio.wait_for(in_flight, 30) == 1000
    assert await producer.push(b"1001") == 1001
    await producer.close()
    async for m in sub:
        got.append(m)
    assert [m.data for m in got] == [b"%d" % i for i in range(1, 1002)]
    assert [m.sequence for m in got] == list(range(1, 1002))
    assert "recovered after a crash" in supervisor.log
    assert events.count("lost") == 1 and events.count("reconnected") == 1 and "adopted" in events
    # The private channel: the session was resumed; what was handed out is not handed out again.
    while len(privately) < 10:
        privately.append(await asyncio.wait_for(private.__anext__(), 10))
    assert [m.text for m in privately] == [f"p{i}" for i in range(1, 11)]
    await writer.close()
    await reader.close()


async def test_without_reconnect_a_crash_ends_everything(supervisor: Supervisor) -> None:
    client = await comet.connect(supervisor.socket)
    producer = await client.create("fragile")
    sub = await client.subscribe("fragile")
    supervisor.stop(signal.SIGKILL)
    supervisor.start()  # (the store held the connection; the new daemon resets it)
    try:
        await asyncio.wait_for(sub.__anext__(), 5)
        raise AssertionError("the subscription did not end")
    except comet.ConnectionLost:
        pass
    try:
        await producer.push("x")
        raise AssertionError("a push on a lost connection succeeded")
    except (comet.ConnectionLost, comet.CometError):
        pass
    await client.close()


async def test_adopt_by_hand_after_a_crash(supervisor: Supervisor) -> None:
    first = await comet.connect(supervisor.socket)
    producer = await first.create("orphan")
    assert await producer.push_batch([b"a", b"b"]) == range(1, 3)
    async with await comet.connect(supervisor.socket) as other:
        try:
            await other.adopt(producer.channel, producer.token)
            raise AssertionError("adopted a channel whose producer is connected")
        except comet.NotOwner:
            pass
    supervisor.stop(signal.SIGKILL)
    supervisor.start()
    await first.close()
    async with await comet.connect(supervisor.socket) as again:
        try:
            await again.adopt(producer.channel, (producer.token[0], producer.token[1] ^ 1))
            raise AssertionError("adopted with a wrong token")
        except comet.BadToken:
            pass
        adopted = await again.adopt(producer.channel, producer.token, "orphan")
        assert adopted.epoch == producer.epoch and adopted.last_sequence == 2
        assert await adopted.push(b"c") == 3
        sub = await again.subscribe("orphan", "oldest")
        await adopted.close()
        assert [m.data async for m in sub] == [b"a", b"b", b"c"]


async def test_a_relayed_subscription_goes_on_after_kill_9_without_repeats(supervisor: Supervisor) -> None:
    upstream = Daemon()
    try:
        async with await comet.connect(upstream.socket) as up, await comet.connect(supervisor.socket, reconnect=True) as client:
            producer = await up.create("far")
            await producer.push_batch([b"1", b"2", b"3"])
            relayed = await client.subscribe_external("unix:" + upstream.socket, "far", history=3)
            got = [await asyncio.wait_for(relayed.__anext__(), 5) for _ in range(3)]
            supervisor.stop(signal.SIGKILL)
            supervisor.start()
            await producer.push_batch([b"4", b"5"])
            while len(got) < 5:
                got.append(await asyncio.wait_for(relayed.__anext__(), 10))
            assert [m.data for m in got] == [b"1", b"2", b"3", b"4", b"5"]
            assert [m.sequence for m in got] == [1, 2, 3, 4, 5]
    finally:
        upstream.stop()
