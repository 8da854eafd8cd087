"""make bench-python: the Python client next to redis-py (pub/sub) and nats-py, same run, same
machine, 64-byte messages. Each reader is fed by the same C driver (bench/peers, each system's own
C client library) publishing as fast as its server takes it; each producer publishes from Python
and ends when its server has everything (comet: flush() answered; Redis: every PUBLISH answered;
NATS: flush() round trip). Median of RUNS runs. Prints a table and comet's ratios.

    python bench.py --driver DRIVER --comet SOCK --redis SOCK --nats URL [--count N] [--runs R]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time
from typing import Awaitable, Callable

import comet

PAYLOAD = b"p" * 64


def feed(driver: str, system: str, address: str, topic: str, count: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([driver, system, address, "0", "produce", topic, str(count)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def finish(process: subprocess.Popen[bytes]) -> str:
    out, err = process.communicate(timeout=120)
    if process.returncode != 0:
        raise RuntimeError(f"driver failed: {err.decode()}")
    return out.decode().strip()


# ---- comet -------------------------------------------------------------------------------------

async def comet_read(args: argparse.Namespace, topic: str, batches: bool) -> float:
    import os
    async with await comet.connect(args.comet) as client:
        sub = await client.subscribe(topic, wait=True)
        process = feed(args.driver, "comet", args.comet, topic, args.count, dict(os.environ, RING=str(args.count + 1)))
        got, first = 0, 0.0
        if batches:
            while got < args.count:
                batch = await sub.batch()
                if not batch:
                    break
                if not got:
                    first = time.perf_counter()
                    got = len(batch) - 1
                    continue
                got += len(batch)
        else:
            async for _ in sub:
                if not got:
                    first = time.perf_counter()
                got += 1
                if got == args.count:
                    break
            got -= 1
        elapsed = time.perf_counter() - first
        finish(process)
        assert got == args.count - 1, f"comet read {got + 1} of {args.count}"
        return got / elapsed


async def comet_publish(args: argparse.Namespace, topic: str) -> float:
    async with await comet.connect(args.comet) as client:
        producer = await client.create(topic, size=args.count)
        start = time.perf_counter()
        for _ in range(args.count):
            await producer.publish(PAYLOAD)
        last = await producer.flush()
        elapsed = time.perf_counter() - start
        assert last == args.count
        await producer.close()
        return args.count / elapsed


# ---- Redis (redis-py, asyncio) -------------------------------------------------------------------

async def redis_read(args: argparse.Namespace, topic: str) -> float:
    import redis.asyncio as redis
    client = redis.Redis(unix_socket_path=args.redis)
    pubsub = client.pubsub()
    await pubsub.subscribe(topic)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    process = feed(args.driver, "redis", args.redis, topic, args.count)
    got, first = 0, 0.0
    while got < args.count:
        message = await pubsub.get_message(timeout=10)
        if message is None:
            break
        if message["type"] != "message":
            continue
        if not got:
            first = time.perf_counter()
        got += 1
    elapsed = time.perf_counter() - first
    finish(process)
    await pubsub.aclose()
    await client.aclose()
    assert got == args.count, f"redis-py read {got} of {args.count}"
    return (got - 1) / elapsed


async def redis_publish(args: argparse.Namespace, topic: str) -> float:
    import redis.asyncio as redis
    client = redis.Redis(unix_socket_path=args.redis)
    start = time.perf_counter()
    left = args.count
    while left:
        n = min(left, 1000)
        pipe = client.pipeline(transaction=False)
        for _ in range(n):
            pipe.publish(topic, PAYLOAD)
        await pipe.execute()
        left -= n
    elapsed = time.perf_counter() - start
    await client.aclose()
    return args.count / elapsed


# ---- NATS (nats-py) --------------------------------------------------------------------------------

async def nats_read(args: argparse.Namespace, topic: str) -> float:
    import nats
    nc = await nats.connect(args.nats)
    done = asyncio.get_running_loop().create_future()
    state = {"got": 0, "first": 0.0}

    async def on_message(_: object) -> None:
        if not state["got"]:
            state["first"] = time.perf_counter()
        state["got"] += 1
        if state["got"] == args.count and not done.done():
            done.set_result(time.perf_counter())

    await nc.subscribe(topic, cb=on_message, pending_msgs_limit=args.count * 2, pending_bytes_limit=1 << 30)
    await nc.flush()
    process = feed(args.driver, "nats", args.nats, topic, args.count)
    try:
        end = await asyncio.wait_for(done, 120)
    finally:
        finish(process)
        await nc.close()
    return (args.count - 1) / (end - state["first"])


async def nats_publish(args: argparse.Namespace, topic: str) -> float:
    import nats
    nc = await nats.connect(args.nats, pending_size=64 << 20)
    start = time.perf_counter()
    for _ in range(args.count):
        await nc.publish(topic, PAYLOAD)
    await nc.flush(timeout=60)
    elapsed = time.perf_counter() - start
    await nc.close()
    return args.count / elapsed


async def median(runs: int, name: str, measure: Callable[[str], Awaitable[float]]) -> float:
    rates = []
    for i in range(runs):
        rates.append(await measure(f"{name}.{i}"))
    print(f"  {name}: " + ", ".join(f"{r:,.0f}" for r in rates) + " msgs/s", flush=True)
    return statistics.median(rates)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--driver", required=True)
    parser.add_argument("--comet", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--count", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    r = args.runs
    print(f"64-byte messages, {args.count:,} per run, median of {r}:", flush=True)
    results = {
        "comet read, batch()": await median(r, "comet.batch", lambda t: comet_read(args, t, True)),
        "comet read, async for": await median(r, "comet.iter", lambda t: comet_read(args, t, False)),
        "comet publish + flush": await median(r, "comet.publish", lambda t: comet_publish(args, t)),
        "redis-py read (pub/sub, hiredis)": await median(r, "redis.read", lambda t: redis_read(args, t)),
        "redis-py publish (pipelined)": await median(r, "redis.publish", lambda t: redis_publish(args, t)),
        "nats-py read": await median(r, "nats.read", lambda t: nats_read(args, t)),
        "nats-py publish + flush": await median(r, "nats.publish", lambda t: nats_publish(args, t)),
    }
    print()
    print(f"| {'':34} | {'msgs/s':>12} |")
    print(f"| {'-' * 34} | {'-' * 12} |")
    for name, rate in results.items():
        print(f"| {name:34} | {rate:12,.0f} |")
    best_read = max(results["redis-py read (pub/sub, hiredis)"], results["nats-py read"])
    best_publish = max(results["redis-py publish (pipelined)"], results["nats-py publish + flush"])
    print()
    print(f"read:    comet async for {results['comet read, async for'] / best_read:.1f}x, "
          f"batch() {results['comet read, batch()'] / best_read:.1f}x the faster peer ({best_read:,.0f} msgs/s)")
    print(f"publish: comet {results['comet publish + flush'] / best_publish:.1f}x the faster peer ({best_publish:,.0f} msgs/s)")


if __name__ == "__main__":
    asyncio.run(main())
