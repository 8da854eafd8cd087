"""The same channels from Python, the Swift client (the comet CLI), and libcomet (C programs built
here against libcomet.a): each reads what the others produce."""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import subprocess

import pytest

import comet

from conftest import COMET, REPO, Daemon, run_cli

LIBCOMET = REPO / "libcomet/build/libcomet.a"


def c_program(source: pathlib.Path, tmp_path: pathlib.Path) -> str:
    if shutil.which("cc") is None or not LIBCOMET.exists():
        pytest.skip("no C compiler or no libcomet.a (make -C libcomet)")
    out = tmp_path / source.stem
    subprocess.run(["cc", "-O2", "-I", str(REPO / "libcomet/include"), "-o", str(out), str(source), str(LIBCOMET)], check=True)
    return str(out)


async def test_python_produces_the_cli_and_c_read(daemon: Daemon, tmp_path: pathlib.Path) -> None:
    consumer = c_program(REPO / "examples/consumer.c", tmp_path)
    env = dict(os.environ, COMET_SOCKET=daemon.socket)
    c_reader = subprocess.Popen([consumer, "py.events"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cli_reader = subprocess.Popen([COMET, "listen", "py.events", "--wait", "--from", "oldest", "--show-seq", "-s", daemon.socket],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    async with await comet.connect(daemon.socket) as client:
        for _ in range(200):
            if any(c.subscribers for c in await client.channels()) or len(await client.sessions()) >= 3:
                break
            await asyncio.sleep(0.02)
        producer = await client.create("py.events")
        await producer.push("from python")
        for i in range(99):
            await producer.publish(f"line {i}")
        await producer.flush()
        await producer.close()
    expected = "1\tfrom python\n" + "".join(f"{i + 2}\tline {i}\n" for i in range(99))
    c_out, c_err = c_reader.communicate(timeout=20)
    cli_out, cli_err = cli_reader.communicate(timeout=20)
    assert c_out.decode() == expected, c_err
    assert c_reader.returncode == 3  # CLOSED
    assert cli_out.decode() == expected, cli_err


async def test_the_cli_and_c_produce_python_reads(daemon: Daemon, tmp_path: pathlib.Path) -> None:
    producer = c_program(REPO / "scripts/faults/line_producer.c", tmp_path)
    async with await comet.connect(daemon.socket) as client:
        from_c = await client.subscribe("c.lines", wait=True)
        from_cli = await client.subscribe("cli.lines", wait=True)
        lines = "".join(f"c {i}\n" for i in range(1000)).encode()
        done = subprocess.run([producer, "c.lines", "2000"], input=lines, env=dict(os.environ, COMET_SOCKET=daemon.socket),
                              capture_output=True, timeout=30)
        assert done.returncode == 0, done.stderr
        got = []
        while len(got) < 1000:
            got += await asyncio.wait_for(from_c.batch(), 10)
        assert [m.text for m in got] == [f"c {i}" for i in range(1000)]
        assert from_c.owner.uid == os.getuid()
        pushed = run_cli("push", "cli.lines", "-s", daemon.socket, input=b"a\nb\nc\n")
        assert pushed.returncode == 0, pushed.stderr
        assert [m.text async for m in from_cli] == ["a", "b", "c"]


async def test_private_channel_between_python_and_the_cli(daemon: Daemon) -> None:
    async with await comet.connect(daemon.socket) as client:
        assert client.session is not None
        offers = client.offers()
        pushed = run_cli("push", "--session", f"{client.session.id:x}", "note", "hello", "there", "-s", daemon.socket)
        assert pushed.returncode == 0, pushed.stderr
        offer = await asyncio.wait_for(offers.__anext__(), 5)
        assert offer.name == "note"
        sub = await client.subscribe_private("note")
        assert [m.text async for m in sub] == ["hello", "there"]


def test_sync_listen_for_scripts(daemon: Daemon) -> None:
    pushed = subprocess.Popen([COMET, "push", "script.feed", "x", "y", "z", "--linger", "5", "-s", daemon.socket])
    try:
        for _ in range(250):
            if b"script.feed" in run_cli("channels", "-s", daemon.socket).stdout:
                break
        got = []
        for message in comet.listen("script.feed", "oldest", path=daemon.socket):
            got.append(message.text)
            if len(got) == 3:
                break
        assert got == ["x", "y", "z"]
        with pytest.raises(comet.NoSuchChannel):
            next(comet.listen("absent", path=daemon.socket))
    finally:
        pushed.terminate()
        pushed.wait()
