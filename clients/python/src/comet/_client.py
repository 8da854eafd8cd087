"""The asyncio client: one connection to cometd, its requests, and what it restores after a reconnect."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any, AsyncIterator, Callable, Sequence

from . import _wire as w
from ._producer import Producer, PullHandler, _Numbered
from ._protocol import _Protocol
from ._replies import (
    _ok_empty,
    _ok_sequence,
    _position,
    _read_adopt_reply,
    _read_create_reply,
    _read_list_reply,
    _read_sessions_reply,
    _read_subscribe_reply,
)
from ._subscription import Subscription
from ._types import (
    UNKNOWN_OWNER,
    ChannelInfo,
    Offer,
    Owner,
    OwnerPin,
    Position,
    ReconnectPolicy,
    SessionCredentials,
    SessionInfo,
    default_socket_path,
    owner_uid,
)
from .errors import (
    ChannelClosed,
    ChannelFull,
    ChannelReset,
    CometError,
    ConnectionLost,
    ErrorCode,
    ProtocolError,
    Unreachable,
    error_for,
)

log = logging.getLogger("comet")


class _Pending:
    __slots__ = ("future", "decode", "numbered")

    def __init__(self, future: asyncio.Future[Any], decode: Callable[[w.Reader], Any],
                 numbered: "tuple[Producer, _Numbered] | None" = None) -> None:
        self.future = future
        self.decode = decode
        self.numbered = numbered


class Client:
    """One connection to cometd. Use `comet.connect()`; close with `close()` or `async with`."""

    def __init__(self, path: str, reconnect: ReconnectPolicy | None) -> None:
        self._path = path
        self._reconnect = reconnect
        self._loop = asyncio.get_running_loop()
        self._protocol: _Protocol | None = None
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._subs: dict[int, Subscription] = {}
        self._producers: dict[int, Producer] = {}
        self._offers: asyncio.Queue[Offer | None] = asyncio.Queue()
        self._numbered = True
        self._serves_numbered = False
        self._max_frame = w.HANDSHAKE_MAX_FRAME
        self._closing = False
        self._ready = asyncio.Event()
        self._throttled: set[Subscription] = set()
        self._reconnector: asyncio.Task[None] | None = None
        self._fatal: BaseException | None = None
        self.server: w.HelloReply | None = None
        self.session: SessionCredentials | None = None
        #: Called with each event the connection goes through: "lost", "reconnected", "adopted".
        self.on_event: Callable[[str, Any], None] | None = None

    # ---- Connection --------------------------------------------------------------------------

    async def _open(self, resume: SessionCredentials | None) -> None:
        try:
            _, protocol = await self._loop.create_unix_connection(lambda: _Protocol(self), self._path)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError, OSError) as e:
            raise Unreachable(f"no cometd answers at {self._path}: {e}") from e
        self._protocol = protocol
        self._fatal = None
        hello: w.HelloReply = await self._request(w.hello, w.HelloReply.read)
        self.server = hello
        self._max_frame = hello.max_frame_size
        self._serves_numbered = bool(hello.features & w.FEATURE_NUMBERED)
        self.session = SessionCredentials(hello.session, hello.token)
        if resume is not None:
            await self._request(lambda rid: w.resume(rid, resume.id, resume.token), lambda r: r.u64())
            self.session = resume

    def _take_id(self) -> int:
        rid = self._next_id
        self._next_id = rid + 1 if rid < 0xFFFFFFFF else 1
        return rid

    def _write(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol is None or protocol.transport is None or protocol.transport.is_closing():
            raise ConnectionLost("not connected to cometd")
        protocol.transport.write(data)

    def _request(self, make: Callable[[int], bytes], decode: Callable[[w.Reader], Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        if self._closing:
            future.set_exception(ConnectionLost("the client is closed"))
            return future
        if self._fatal is not None and self._reconnect is None:
            future.set_exception(self._fatal)
            return future
        rid = self._take_id()
        self._pending[rid] = _Pending(future, decode)
        try:
            self._write(make(rid))
        except ConnectionLost as e:
            del self._pending[rid]
            future.set_exception(e)
        return future

    async def _call(self, make: Callable[[int], bytes], decode: Callable[[w.Reader], Any]) -> Any:
        if not self._ready.is_set() and not self._closing:
            await self._wait_ready()
        return await self._request(make, decode)

    async def _wait_ready(self) -> None:
        if self._reconnect is None:
            return
        await self._ready.wait()

    def _fire(self, make: Callable[[int], bytes]) -> None:
        """A request whose answer nobody awaits (ACK): a refusal is logged."""
        if not self._ready.is_set():
            return
        future = self._request(make, _ok_empty)

        def refused(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.debug("comet: %s", f.exception())

        future.add_done_callback(refused)

    def _send_numbered(self, producer: Producer, record: _Numbered, restoring: bool = False) -> None:
        if not self._ready.is_set() and not restoring and self._reconnect is not None and not self._closing:
            return  # sent, in order, once reconnected
        rid = self._take_id()
        self._pending[rid] = _Pending(record.future, record.decode, (producer, record))
        try:
            self._write(w.push_numbered(rid, producer.channel, record.number, record.entries, record.count))
            record.sent_on = self._protocol
        except ConnectionLost as e:
            del self._pending[rid]
            if self._reconnect is None:
                producer._unanswered.remove(record)
                record.future.set_exception(e)

    def _send_unsent(self, restoring: bool = False) -> None:
        """Numbered pushes not yet sent on this connection, in order per producer."""
        for producer in list(self._producers.values()):
            for record in list(producer._unanswered):
                if record.sent_on is not self._protocol:
                    self._send_numbered(producer, record, restoring)

    def _fail_unanswered(self, producer: Producer, error: BaseException) -> None:
        for record in producer._unanswered:
            if not record.future.done():
                record.future.set_exception(error)
        producer._unanswered.clear()

    def _throttle(self, sub: Subscription, on: bool) -> None:
        if on:
            self._throttled.add(sub)
        else:
            self._throttled.discard(sub)
        if self._protocol is not None:
            self._protocol.pause() if self._throttled else self._protocol.resume()

    def _forget(self, sub: Subscription) -> None:
        if self._subs.get(sub.id) is sub:
            del self._subs[sub.id]
        if sub in self._throttled:
            self._throttle(sub, False)

    def _violation(self, what: str) -> None:
        log.warning("comet: the daemon sent %s; closing the connection", what)
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.abort()

    # ---- Frames in ---------------------------------------------------------------------------

    def _frame(self, op: int, r: w.Reader) -> None:
        try:
            if op == w.OK or op == w.ERROR:
                rid = r.u32()
                pending = self._pending.pop(rid, None)
                if op == w.ERROR:
                    code, message = r.u16(), r.str()
                    error = error_for(code, message)
                    if rid == 0:
                        self._fatal = ProtocolError(code, message) if code <= ErrorCode.HANDSHAKE_REQUIRED else error
                        return
                    if pending is not None:
                        self._answered_numbered(pending, error)
                        if not pending.future.done():
                            pending.future.set_exception(error)
                    return
                if pending is None:
                    return
                self._answered_numbered(pending, None)
                try:
                    value = pending.decode(r)
                except w.ProtocolViolation as e:
                    if not pending.future.done():
                        pending.future.set_exception(ProtocolError(ErrorCode.MALFORMED_FRAME, f"a reply the client cannot read: {e}"))
                    raise
                if not pending.future.done():
                    pending.future.set_result(value)
            elif op == w.FULL:
                sub = self._subs.get(r.u32())
                if sub is not None:
                    first = r.u64()
                    sub._finish(ChannelFull(f"subscription to {sub.name!r} fell behind; oldest buffered: {first}", first))
            elif op == w.CLOSED:
                sub = self._subs.get(r.u32())
                if sub is not None:
                    sub._finish(None)
            elif op == w.STARTED:
                sub = self._subs.get(r.u32())
                if sub is not None:
                    sub.epoch, sub.next_sequence = r.u64(), r.u64()
                    sub.waiting = False
                    if r.remaining() >= 8:
                        sub.owner = Owner(r.u32(), r.u32())
                    sub._last = sub.next_sequence - 1
                    sub._acked = sub._ack_wanted = sub._last
            elif op == w.RESET:
                sub = self._subs.get(r.u32())
                if sub is not None:
                    sub._finish(ChannelReset(r.u64()))
            elif op == w.FAILED:
                sub = self._subs.get(r.u32())
                if sub is not None:
                    code, message = r.u16(), r.str()
                    sub._finish(error_for(code, message))
            elif op == w.OFFER:
                channel, kind, epoch, name = r.u64(), r.u8(), r.u64(), r.str()
                owner = Owner(r.u32(), r.u32()) if r.remaining() >= 8 else UNKNOWN_OWNER
                self._offers.put_nowait(Offer(channel, kind, epoch, name, owner))
            elif op == w.ENDED:
                channel, code, message = r.u64(), r.u16(), r.str()
                producer = self._producers.pop(channel, None)
                if producer is not None:
                    producer._ended = ChannelClosed(code, message)
            elif op == w.PULL:
                channel, pull = r.u64(), r.u64()
                producer = self._producers.get(channel)
                if producer is not None and producer.on_pull is not None:
                    self._loop.create_task(self._answer_pull(producer, pull))
            else:
                self._violation(f"opcode 0x{op:02x}")
        except w.ProtocolViolation as e:
            self._violation(str(e))

    def _answered_numbered(self, pending: _Pending, error: CometError | None) -> None:
        if pending.numbered is None:
            return
        producer, record = pending.numbered
        unanswered = producer._unanswered
        if unanswered and unanswered[0] is record:
            unanswered.popleft()
        else:
            try:
                unanswered.remove(record)
            except ValueError:
                pass

    async def _answer_pull(self, producer: Producer, pull: int) -> None:
        assert producer.on_pull is not None
        try:
            data = await producer.on_pull(pull)
            channel = producer.channel
            await self._call(lambda rid: w.answer(rid, channel, pull, data), _ok_sequence)
        except Exception as e:  # the handler's failure or a refused answer: the reader waits
            log.warning("comet: answering pull %d of %r failed: %s", pull, producer.name, e)

    # ---- Losing and regaining the connection ---------------------------------------------------

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if protocol is not self._protocol:
            return
        self._ready.clear()
        reason = self._fatal or ConnectionLost(f"the connection to cometd was lost{': ' + str(exc) if exc else ''}")
        pending, self._pending = self._pending, {}
        for p in pending.values():
            if p.numbered is not None and self._reconnect is not None and not self._closing:
                continue  # sent again after the reconnect
            if not p.future.done():
                p.future.set_exception(reason)
        if self._reconnect is None or self._closing:
            if self._fatal is None and not self._closing:
                self._fatal = reason
            for sub in list(self._subs.values()):
                # Closed by the application: its subscriptions simply end.
                sub._finish(None if self._closing and self._fatal is None else reason)
            for producer in self._producers.values():
                self._fail_unanswered(producer, ConnectionLost("the connection to cometd was lost"))
            self._offers.put_nowait(None)
            return
        if self.on_event:
            self.on_event("lost", reason)
        if self._reconnector is None or self._reconnector.done():
            self._reconnector = self._loop.create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        policy = self._reconnect
        assert policy is not None
        delay = policy.initial_delay
        deadline = time.monotonic() + policy.give_up_after
        subs = list(self._subs.values())
        while not self._closing:
            await asyncio.sleep(delay)
            delay = min(delay * 2, policy.max_delay)
            try:
                await self._open(None)
                if self.session is not None and self._resume_session is not None:
                    await self._resume_quietly(self._resume_session)
                await self._restore(subs)
                self._ready.set()
                self._send_unsent()
                if self.on_event:
                    self.on_event("reconnected", self.session)
                return
            except (Unreachable, ConnectionLost, OSError):
                pass
            except CometError as e:
                log.warning("comet: reconnecting: %s", e)
            if time.monotonic() > deadline:
                error = ConnectionLost(f"cometd did not come back within {policy.give_up_after:.0f} s")
                for sub in list(self._subs.values()):
                    sub._finish(error)
                for producer in self._producers.values():
                    self._fail_unanswered(producer, error)
                self._offers.put_nowait(None)
                self._closing = True
                self._ready.set()
                return

    _resume_session: SessionCredentials | None = None

    async def _resume_quietly(self, creds: SessionCredentials) -> None:
        try:
            await self._request(lambda rid: w.resume(rid, creds.id, creds.token), lambda r: r.u64())
            self.session = creds
        except CometError as e:
            log.info("comet: session %x not resumed (%s); a new one stands", creds.id, e.name)

    async def _restore(self, subs: list[Subscription]) -> None:
        # Producers: ADOPT, then their unanswered numbered pushes, in order.
        for producer in list(self._producers.values()):
            channel, token = producer.channel, producer.token
            try:
                _, epoch, last, _ = await self._request(lambda rid: w.adopt(rid, channel, token), _read_adopt_reply)
                producer.epoch = epoch
                if self.on_event:
                    self.on_event("adopted", (producer.name, last))
            except CometError as e:
                producer._ended = ChannelClosed(e.code, f"channel {producer.name!r} could not be adopted: {e.message}")
                self._producers.pop(producer.channel, None)
                self._fail_unanswered(producer, producer._ended)
                continue
            for record in list(producer._unanswered):
                self._send_numbered(producer, record, restoring=True)
        # Subscriptions: again, after their last message, under their epoch.
        for sub in subs:
            if sub._ended:
                continue
            try:
                await self._request(functools.partial(_resubscription, sub), functools.partial(self._resubscribed, sub))
            except CometError as e:
                sub._finish(e)

    def _resubscribed(self, sub: Subscription, r: w.Reader) -> None:
        """A subscription made again after a reconnect: under its new id at once (its messages may
        follow in the same read)."""
        sid, waiting, epoch, next_sequence, owner = _read_subscribe_reply(r)
        self._subs.pop(sub.id, None)
        sub.id = sid
        self._subs[sid] = sub
        same_epoch = epoch == sub.epoch
        if not waiting:
            sub.epoch, sub.owner = epoch, owner
        if sub.scope in ("private", "external") and next_sequence and next_sequence <= sub._held() \
                and (sub.scope == "private" or same_epoch):
            # Messages it has come again (a private channel from the first unacknowledged, a relay
            # with its history): they are dropped.
            sub._dedupe_until = sub._held()
            sub._kept = len(sub._queue)
        if sub.scope == "private" and next_sequence:
            sub._acked = next_sequence - 1
            sub._ack_wanted = max(sub._ack_wanted, sub._acked)
            sub._send_ack()

    # ---- Public API --------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The socket path this client connects to."""
        return self._path

    @property
    def serves_numbered_pushes(self) -> bool:
        """Whether the daemon takes PUSH_NUMBERED (its producers' resends are then exactly once)."""
        return self._serves_numbered

    @property
    def serves_mirrors(self) -> bool:
        """Whether the daemon takes MIRROR and its kin (comet-bridge's requests)."""
        return bool(self.server and self.server.features & w.FEATURE_MIRRORS)

    async def close(self) -> None:
        """Closes the connection: the channels it produces close, its subscriptions end."""
        if self._closing and self._protocol is None:
            return
        self._closing = True
        self._ready.set()
        if self._reconnector is not None:
            self._reconnector.cancel()
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            for producer in list(self._producers.values()):
                producer._hand_off()
            protocol.transport.close()
            await protocol.lost
        self._protocol = None

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ping(self) -> None:
        """A round trip: when it returns, every earlier request was answered."""
        await self._call(lambda rid: w.frame(w.PING, rid), _ok_empty)

    async def resume(self, session: SessionCredentials) -> None:
        """Moves this connection into an earlier session (RESUME); its private channels are offered."""
        await self._call(lambda rid: w.resume(rid, session.id, session.token), lambda r: r.u64())
        self.session = session
        self._resume_session = session

    # Producers.

    async def create(self, name: str, *, size: int = 0, newest: bool = False) -> Producer:
        """Creates site channel `name` (a ring of `size` messages, 0 = 1000; `newest`: keeps only
        the latest message)."""
        kind = w.KIND_NEWEST if newest else w.KIND_BUFFERED
        reply = await self._call(lambda rid: w.create(rid, name, kind, size), _read_create_reply)
        return self._produce(reply, name, kind)

    async def create_private(self, name: str, session: int, *, size: int = 0) -> Producer:
        """Creates private channel `name` addressed to session `session` (read once, acknowledged)."""
        reply = await self._call(lambda rid: w.create_private(rid, name, w.KIND_PRIVATE, size, session), _read_create_reply)
        return self._produce(reply, name, w.KIND_PRIVATE)

    async def create_unlimited(self, name: str, session: int, on_pull: PullHandler) -> Producer:
        """Creates unlimited channel `name` for session `session`: each time its reader wants a
        message, `on_pull(pull_id)` is awaited and its result sent (ANSWER)."""
        reply = await self._call(lambda rid: w.create_private(rid, name, w.KIND_UNLIMITED, 0, session), _read_create_reply)
        producer = self._produce(reply, name, w.KIND_UNLIMITED)
        producer.on_pull = on_pull
        return producer

    def _produce(self, reply: tuple[int, int, tuple[int, int]], name: str, kind: int) -> Producer:
        channel, epoch, token = reply
        producer = Producer(self, channel, epoch, token, name, kind)
        self._producers[channel] = producer
        return producer

    async def adopt(self, channel: int, token: tuple[int, int], name: str = "", *, kind: int = w.KIND_BUFFERED,
                    last_number: bool = True) -> Producer:
        """Takes back a channel whose producer's connection was lost in a restart (ADOPT)."""
        values = await self._call(lambda rid: w.adopt(rid, channel, token), _read_adopt_reply)
        _, epoch, last, number = values
        producer = Producer(self, channel, epoch, token, name, kind)
        producer.last_sequence = last
        producer._next_number = number + 1
        self._producers[channel] = producer
        return producer

    async def wait_timeout(self, session: int, timeout: float) -> bool:
        """Waits until session `session` has had no activity on its private channels for `timeout`
        seconds (False) or has ended (True)."""
        ms = int(timeout * 1000)
        return bool(await self._call(lambda rid: w.wait_timeout(rid, session, ms), lambda r: r.u8() == 1))

    # Consumers.

    async def subscribe(self, name: str, from_: Position = "next", *, epoch: int | None = None, wait: bool = False,
                        owner: OwnerPin = "implied") -> Subscription:
        """Subscribes to site channel `name` from `from_` ("next", "oldest", a sequence number,
        `Last(k)` or -k). `epoch`: the one last seen (another is refused with `EpochMismatch`).
        `wait`: wait for a channel of that name to exist. `owner`: whose channel to accept —
        "implied" (``user.NAME.…`` only from NAME), "any", a uid or a user name."""
        position, argument = _position(from_)
        flags = w.FLAG_WAIT if wait else 0
        uid = owner_uid(owner, name)
        again = {"flags": flags, "position": position, "argument": argument, "owner": uid}
        return await self._subscribe(name, "site", again,
                                     lambda rid: w.subscribe(rid, name, flags, position, argument, epoch or 0, uid))

    async def subscribe_private(self, name: str, *, owner: int | None = None) -> Subscription:
        """Subscribes to private channel `name` of this client's session, from its first
        unacknowledged message. Reading the next message acknowledges the previous ones."""
        return await self._subscribe(name, "private", {"owner": owner},
                                     lambda rid: w.subscribe(rid, name, w.FLAG_PRIVATE, w.POS_NEXT, 0, 0, owner))

    async def subscribe_external(self, address: str, name: str, *, history: int = 1, newest: bool = False) -> Subscription:
        """Reads channel `name` of the cometd at `address` (``unix:/PATH``), relayed by this one."""
        again = {"address": address, "history": history, "newest": newest}
        return await self._subscribe(name, "external", again,
                                     lambda rid: w.subscribe_external(rid, address, name, history, newest))

    async def _subscribe(self, name: str, scope: str, again: dict[str, Any], make: Callable[[int], bytes]) -> Subscription:
        if not self._ready.is_set() and not self._closing:
            await self._wait_ready()

        def registered(r: w.Reader) -> Subscription:
            # At once, on the reply: its messages may follow in the same read.
            sid, waiting, epoch, next_sequence, owner = _read_subscribe_reply(r)
            sub = Subscription(self, sid, name, scope, 0 if waiting else epoch, 0 if waiting else next_sequence, owner, again)
            sub.waiting = bool(waiting)
            self._subs[sid] = sub
            return sub

        sub: Subscription = await self._request(make, registered)
        return sub

    def offers(self) -> AsyncIterator[Offer]:
        """Private channels addressed to this client's session, as they are created (OFFER), until
        the client is closed or its connection is lost for good."""

        async def generate() -> AsyncIterator[Offer]:
            while True:
                offer = await self._offers.get()
                if offer is None:
                    self._offers.put_nowait(None)  # for any other iterator
                    return
                yield offer

        return generate()

    # Listings.

    async def channels(self) -> list[ChannelInfo]:
        """Every channel this client may see (LIST, all pages)."""
        result: list[ChannelInfo] = []
        after: tuple[str, int] | None = None
        while True:
            page, more = await self._call(lambda rid: w.list_from(rid, after), _read_list_reply)
            result += page
            if not more or not page:
                return result
            after = (page[-1].name, page[-1].scope)

    async def sessions(self) -> list[SessionInfo]:
        """This user's sessions (root: all), all pages."""
        result: list[SessionInfo] = []
        after: int | None = None
        while True:
            page, more = await self._call(lambda rid: w.sessions_from(rid, after), _read_sessions_reply)
            result += page
            if not more or not page:
                return result
            after = page[-1].id

    async def stats(self) -> w.Stats:
        """Daemon totals, per-channel counters, this user's usage and quotas, exports and imports."""
        stats: w.Stats = await self._call(lambda rid: w.frame(w.STATS, rid), w.Stats.read)
        return stats

    # Imports (comet-bridge's requests; docs/FEDERATION.md).

    async def mirror(self, name: str, *, epoch: int, next_sequence: int = 1, size: int = 1000, newest: bool = False) -> tuple[int, int]:
        """Declares or feeds import `name` (MIRROR): returns its handle and the last sequence it holds."""
        result: tuple[int, int] = await self._call(lambda rid: w.mirror(rid, name, newest, size, epoch, next_sequence),
                                                   lambda r: (r.u64(), r.u64()))
        return result

    async def mirror_push(self, handle: int, first: int, messages: Sequence[bytes]) -> None:
        """Messages of an import, numbered by their origin from `first` (MIRROR_PUSH)."""
        entries, count = w.batch_entries(messages)
        await self._call(lambda rid: w.mirror_push(rid, handle, first, entries, count), _ok_empty)

    async def mirror_state(self, handle: int, state: str, *, last: int = 0, reason: str = "") -> None:
        """An import's origin is "live", "stalled" (with `reason`) or "closed" after `last`."""
        code = {"live": 1, "stalled": 2, "closed": 3}[state]
        await self._call(lambda rid: w.mirror_state(rid, handle, code, last, reason), _ok_empty)

    async def bridge_report(self, exports: Sequence[w.ExportReport], imports: Sequence[w.ImportReport]) -> None:
        """A bridge's counters, which STATS then shows (BRIDGE_REPORT)."""
        await self._call(lambda rid: w.bridge_report(rid, exports, imports), _ok_empty)


def _resubscription(sub: Subscription, rid: int) -> bytes:
    """SUBSCRIBE (or SUBSCRIBE_EXTERNAL) again after a reconnect, after what `sub` holds."""
    again = sub._again
    if sub.scope == "private":
        return w.subscribe(rid, sub.name, w.FLAG_PRIVATE, w.POS_NEXT, 0, 0, again.get("owner"))
    if sub.scope == "external":
        return w.subscribe_external(rid, again["address"], sub.name, again["history"], again["newest"])
    if sub._held() > 0:
        return w.subscribe(rid, sub.name, 0, w.POS_FROM, sub._held() + 1, sub.epoch, again.get("owner"))
    return w.subscribe(rid, sub.name, again["flags"], again["position"], again["argument"], 0, again.get("owner"))


async def connect(path: str | None = None, *, resume: SessionCredentials | None = None,
                  reconnect: ReconnectPolicy | bool | None = None) -> Client:
    """Connects to cometd at `path` (default: `default_socket_path()`), optionally resuming an
    earlier session. `reconnect` (off by default; True for the default policy): after a crash of
    the daemon, connect again, resume the session, adopt the channels this client produces (their
    unanswered pushes are sent again, each applied once), and make every subscription again after
    its last message. Use as ``async with await comet.connect() as client:``."""
    policy = ReconnectPolicy() if reconnect is True else (reconnect or None)
    client = Client(path or default_socket_path(), policy)
    await client._open(resume)
    client._resume_session = resume if resume is not None else client.session
    client._ready.set()
    return client
