#!/usr/bin/python3
"""A hostile local user of cometd, for the trust tests (Tests/CometIntegrationTests/TrustTests.swift).

Run as another uid (setpriv). Each attack prints one JSON object on stdout with what it got.
Speaks the wire protocol of docs/PROTOCOL.md directly; bounded in count and time."""
import json, os, socket, struct, sys, time

ERRORS = {15: "LIMIT_EXCEEDED", 19: "NO_SUCH_SESSION", 29: "QUOTA_EXCEEDED", 30: "PERMISSION_DENIED",
          32: "TIMED_OUT", 25: "UPSTREAM_UNREACHABLE", 21: "WRONG_USER", 8: "CHANNEL_EXISTS", 9: "NO_SUCH_CHANNEL",
          10: "NOT_OWNER"}


def frame(op, rid, body=b""):
    payload = bytes([op]) + struct.pack(">I", rid) + body
    return struct.pack(">I", len(payload)) + payload


def s(text):
    b = text.encode()
    return struct.pack(">H", len(b)) + b


class Conn:
    def __init__(self, path, hello=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        self.rid = 1
        if hello:
            self.send(0x01, b"\x01\x00\x01")
            op, rid, body = self.reply()
            if op != 0x80:
                raise RuntimeError("hello refused: %s" % error_name(body))
            self.session = struct.unpack(">Q", body[12:20])[0]
            self.token = body[20:36]

    def send(self, op, body=b"", flush=True):
        rid = self.rid
        self.rid += 1
        self.sock.sendall(frame(op, rid, body))
        return rid

    def read_frame(self, timeout=10):
        self.sock.settimeout(timeout)
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    body = self.buf[4:4 + n]
                    self.buf = self.buf[4 + n:]
                    return body
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError("closed")
            self.buf += data

    def reply(self, timeout=10):
        """The next OK or ERROR (events are skipped): (op, request id, rest)."""
        while True:
            body = self.read_frame(timeout)
            if body[0] in (0x80, 0x81):
                return body[0], struct.unpack(">I", body[1:5])[0], body[5:]

    def call(self, op, body=b""):
        self.send(op, body)
        return self.reply()


def error_name(rest):
    code = struct.unpack(">H", rest[:2])[0]
    return ERRORS.get(code, "ERROR_%d" % code)


def create(conn, name, size=0, kind=0):
    op, _, rest = conn.call(0x02, bytes([kind]) + struct.pack(">I", size) + s(name))
    return struct.unpack(">Q", rest[:8])[0] if op == 0x80 else error_name(rest)


def out(**result):
    print(json.dumps(result), flush=True)


def attack_list_flood(path, channels, seconds):
    """Many long channel names, then LIST pipelined without reading the answers."""
    c = Conn(path)
    made = 0
    for i in range(channels):
        name = ("l%05d" % i) + "x" * 249
        if isinstance(create(c, name), int):
            made += 1
    c.sock.setblocking(False)
    sent = 0
    deadline = time.time() + seconds
    request = frame(0x08, 1)
    pending = b""
    while time.time() < deadline:
        try:
            if not pending:
                pending = request * 256
            n = c.sock.send(pending)
            pending = pending[n:]
            sent += n // len(request)
        except BlockingIOError:
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            out(created=made, lists_sent=sent, closed=True)
            return
    out(created=made, lists_sent=sent, closed=False)


def attack_partial_frames(path, count, hold):
    """Connections each holding an unfinished 1 MiB frame."""
    conns, refused = [], 0
    for _ in range(count):
        try:
            c = Conn(path)
            c.sock.sendall(struct.pack(">I", (1 << 20) - 1) + b"\x03" + b"\0" * ((1 << 20) - 16))
            conns.append(c)
        except (OSError, EOFError, RuntimeError):
            refused += 1
    time.sleep(0.5)
    closed = 0
    for c in conns:
        try:
            c.sock.settimeout(0.05)
            if c.sock.recv(4096) == b"":
                closed += 1
            else:
                closed += 1
        except socket.timeout:
            pass
        except OSError:
            closed += 1
    time.sleep(hold)
    out(opened=len(conns), refused=refused, closed_by_daemon=closed)


def attack_fill_bytes(path, size, message):
    """One big channel filled with large messages until the daemon refuses."""
    c = Conn(path)
    ch = create(c, "filler", size)
    payload = b"\xab" * message
    pushed = 0
    while pushed < 100000:
        op, _, rest = c.call(0x03, struct.pack(">Q", ch) + payload)
        if op != 0x80:
            out(pushed=pushed, bytes=pushed * message, error=error_name(rest))
            time.sleep(1.5)
            return
        pushed += 1
    out(pushed=pushed, bytes=pushed * message, error=None)


def attack_empty_messages(path, batch):
    """Empty messages in batches into channels of 1,000,000 until the daemon refuses."""
    c = Conn(path)
    body_msgs = struct.pack(">I", batch) + b"\0\0\0\0" * batch
    total, channel_no = 0, 0
    ch = create(c, "empty0", 1000000)
    while total < 50000000:
        op, _, rest = c.call(0x04, struct.pack(">Q", ch) + body_msgs)
        if op != 0x80:
            out(messages=total, error=error_name(rest))
            return
        total += batch
        if total % 1000000 == 0:
            channel_no += 1
            ch = create(c, "empty%d" % channel_no, 1000000)
            if not isinstance(ch, int):
                out(messages=total, error=ch)
                return
    out(messages=total, error=None)


def attack_waits(path, count):
    """WAIT_TIMEOUTs pipelined on one's own session with a long timeout."""
    import select
    c = Conn(path)
    body = struct.pack(">QQ", c.session, 3600 * 1000)
    # Pipelined as fast as the daemon reads, reading the refusals meanwhile (a client that never
    # reads stops being read once 256 KiB of answers wait for it: PROTOCOL.md §9).
    pending = b"".join(frame(0x0F, 10 + i, body) for i in range(count))
    c.sock.setblocking(False)
    refused = 0
    errors = set()
    idle_since = time.time()
    while time.time() - idle_since < 2:
        readable, writable, _ = select.select([c.sock], [c.sock] if pending else [], [], 0.2)
        if writable:
            n = c.sock.send(pending)
            pending = pending[n:]
            idle_since = time.time()
        if readable:
            data = c.sock.recv(1 << 20)
            if not data:
                break
            c.buf += data
            idle_since = time.time()
            at = 0
            while len(c.buf) - at >= 4 and len(c.buf) - at >= 4 + struct.unpack(">I", c.buf[at:at + 4])[0]:
                n = struct.unpack(">I", c.buf[at:at + 4])[0]
                if c.buf[at + 4] == 0x81:
                    refused += 1
                    errors.add(error_name(c.buf[at + 9:at + 11]))
                at += 4 + n
            c.buf = c.buf[at:]
    c.sock.setblocking(True)
    huge = c.call(0x0F, struct.pack(">QQ", c.session, 1 << 62))
    out(sent=count, refused=refused, errors=sorted(errors), huge=error_name(huge[2]) if huge[0] == 0x81 else "OK")


def attack_subscriptions(path, per_conn, conns):
    """Waiting subscriptions over several connections until refused."""
    made, refused, errors = 0, 0, set()
    keep = []
    for k in range(conns):
        c = Conn(path)
        keep.append(c)
        for i in range(per_conn):
            c.send(0x06, b"\x01\x00" + b"\0" * 16 + s("w%d.%d" % (k, i)))
        for i in range(per_conn):
            op, _, rest = c.reply()
            if op == 0x80:
                made += 1
            else:
                refused += 1
                errors.add(error_name(rest))
        if refused:
            break
    out(subscriptions=made, refused=refused, errors=sorted(errors))


def attack_channels(path, count):
    """As many channels as possible, over several connections."""
    made, errors, keep = 0, set(), []
    c = None
    for i in range(count):
        if i % 4000 == 0:
            c = Conn(path)
            keep.append(c)
        r = create(c, "ch%d" % i)
        if isinstance(r, int):
            made += 1
        else:
            errors.add(r)
            break
    out(channels=made, errors=sorted(errors))


def attack_connections(path, count, hello, hold):
    """Many connections, with or without HELLO, held open."""
    conns, failed = [], 0
    for _ in range(count):
        try:
            conns.append(Conn(path, hello=hello))
        except (OSError, EOFError, RuntimeError):
            failed += 1
    time.sleep(hold)
    closed = 0
    for c in conns:
        try:
            c.sock.settimeout(0.01)
            data = c.sock.recv(65536)
            if data == b"" or b"\x81" in data:
                closed += 1
        except socket.timeout:
            pass
        except OSError:
            closed += 1
    out(opened=len(conns), failed=failed, closed_by_daemon=closed)


def attack_sessions_inject(path, victim):
    """CREATE_PRIVATE and WAIT_TIMEOUT for someone else's session; SESSIONS."""
    c = Conn(path)
    op, _, rest = c.call(0x0B, b"\x02" + struct.pack(">IQ", 0, victim) + s("inbox"))
    create_result = error_name(rest) if op == 0x81 else "OK"
    op, _, rest = c.call(0x0F, struct.pack(">QQ", victim, 10))
    wait_result = error_name(rest) if op == 0x81 else "OK"
    op, _, rest = c.call(0x0D)
    n = struct.unpack(">I", rest[:4])[0]
    uids = sorted({struct.unpack(">I", rest[4 + 28 * i + 8:4 + 28 * i + 12])[0] for i in range(n)})
    out(create_private=create_result, wait_timeout=wait_result, sessions=n, uids=uids)


def attack_relay(path, address):
    c = Conn(path)
    op, _, rest = c.call(0x10, b"\x00" + struct.pack(">I", 1) + s(address) + s("secret"))
    out(result=error_name(rest) if op == 0x81 else "OK")


def attack_mirror(path, name, handle):
    """Feeds the import `name` (MIRROR), then pushes to the import `handle` (another's)."""
    c = Conn(path)
    op, _, rest = c.call(0x16, b"\x00" + struct.pack(">IQQ", 100, 7, 1) + s(name))
    mirror = error_name(rest) if op == 0x81 else "OK"
    op, _, rest = c.call(0x17, struct.pack(">QQI", handle, 1, 1) + struct.pack(">I", 5) + b"spoof")
    push = error_name(rest) if op == 0x81 else "OK"
    out(mirror=mirror, push=push)


def attack_create(path, name, hold):
    c = Conn(path)
    r = create(c, name)
    out(result="OK" if isinstance(r, int) else r)
    time.sleep(hold)


def attack_slow_readers(path, name, count, hold):
    """Subscribers on their own connections that never read."""
    keep, made = [], 0
    for _ in range(count):
        try:
            c = Conn(path)
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            op, _, _ = c.call(0x06, b"\x00\x01" + b"\0" * 16 + s(name))
            if op == 0x80:
                made += 1
            keep.append(c)
        except (OSError, EOFError, RuntimeError):
            break
    out(subscribers=made)
    time.sleep(hold)


def timed_call(conn, op, body=b""):
    """One request and its answer: (op, rest, seconds)."""
    start = time.time()
    rop, _, rest = conn.call(op, body)
    return rop, rest, time.time() - start


def list_entries(rest):
    """The entries of a LIST reply: [(name, scope)], more."""
    count = struct.unpack(">I", rest[:4])[0]
    off, entries = 4, []
    for _ in range(count):
        n = struct.unpack(">H", rest[off:off + 2])[0]
        name = rest[off + 2:off + 2 + n]
        off += 2 + n
        scope = rest[off + 1]
        off += 1 + 1 + 4 + 4 + 4 + 8 + 8
        entries.append((name, scope))
    return entries, rest[off] == 1


def page_twice(path, first, parse, follow):
    """On a new connection: request `first` (an opcode), then every next page (`follow(last)`
    gives LIST_FROM or SESSIONS_FROM's opcode and body), then PING; twice. Then a new
    connection's HELLO. Returns (pages, entries, worst answer ms, HELLO ms, error)."""
    c = Conn(path)
    worst, pages, entries = 0.0, 0, 0
    for _ in range(2):
        op, rest, took = timed_call(c, first)
        while True:
            worst = max(worst, took)
            if op != 0x80:
                return pages, entries, worst * 1000, 0.0, error_name(rest)
            pages += 1
            got, last, more = parse(rest)
            entries += got
            if not more:
                break
            op, rest, took = timed_call(c, *follow(last))
        op, rest, took = timed_call(c, 0x09)
        worst = max(worst, took)
    start = time.time()
    Conn(path)
    return pages, entries, worst * 1000, (time.time() - start) * 1000, None


def attack_long_names_list(path, channels):
    """Channels with 255-byte names, then LIST paged to the end and PING on another connection,
    twice, and a new connection's HELLO: the worst time of each answer."""
    owner = Conn(path)
    made = 0
    for i in range(channels):
        if isinstance(create(owner, ("n%05d" % i) + "x" * 249), int):
            made += 1

    def parse(rest):
        entries, more = list_entries(rest)
        return len(entries), entries[-1] if entries else None, more

    def follow(last):
        name, scope = last
        return 0x11, bytes([scope]) + struct.pack(">H", len(name)) + name

    pages, listed, worst, hello, error = page_twice(path, 0x08, parse, follow)
    out(created=made, pages=pages, listed=listed, worst_answer_ms=worst, new_hello_ms=hello, error=error)


def attack_many_sessions(path, count):
    """`count` connections with a session each, then SESSIONS paged to the end and PING, twice,
    and a new connection's HELLO: the worst time of each answer."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 256), hard))
    keep = []
    for _ in range(count):
        try:
            keep.append(Conn(path))
        except (OSError, EOFError, RuntimeError):
            break

    def parse(rest):
        n = struct.unpack(">I", rest[:4])[0]
        last = struct.unpack(">Q", rest[4 + (n - 1) * 28:12 + (n - 1) * 28])[0] if n else 0
        return n, last, rest[4 + n * 28] == 1

    pages, seen, worst, hello, error = page_twice(path, 0x0D, parse, lambda last: (0x12, struct.pack(">Q", last)))
    out(connections=len(keep), pages=pages, sessions_seen=seen, worst_answer_ms=worst, new_hello_ms=hello, error=error)


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randint(0, 3)
        if kind == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:
            data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        elif kind == 2 and data:
            del data[rng.randrange(len(data))]
        else:
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(data)


def attack_random_frames(path, count, seed):
    """`count` connections, 50 at a time, each sending HELLO and a few randomly mutated requests,
    then shutting its sending side: each must end answered and closed by the daemon (ERROR with
    request id 0, or EOF after its answers) within the handshake timeout."""
    import random, select
    rng = random.Random(seed)
    requests = [frame(0x09, 2), frame(0x08, 3), frame(0x0D, 4), frame(0x13, 5),
                frame(0x02, 6, b"\x00" + struct.pack(">I", 10) + s("fz")),
                frame(0x06, 7, b"\x00\x01" + b"\0" * 16 + s("fz")),
                frame(0x03, 8, struct.pack(">Q", 1) + s("m")),
                frame(0x11, 9, b"\x00" + s("a")), frame(0x0F, 10, struct.pack(">QQ", 1, 5)),
                frame(0x15, 11, struct.pack(">QQI", 1, 1, 1) + struct.pack(">I", 1) + b"m"),
                frame(0x16, 12, b"\x00" + struct.pack(">IQQ", 10, 7, 1) + s("fz.mirror")),
                frame(0x17, 13, struct.pack(">QQI", (1 << 62) | 1, 1, 1) + struct.pack(">I", 1) + b"m"),
                frame(0x18, 14, struct.pack(">QBQ", (1 << 62) | 1, 2, 0) + s("why")),
                frame(0x19, 15, struct.pack(">II", 0, 0))]
    ended, hung, done = 0, 0, 0
    while done < count:
        batch = []
        for _ in range(min(50, count - done)):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            data = (frame(0x01, 1, b"\x01\x00\x01") if rng.random() < 0.9 else b"")
            for _ in range(rng.randint(1, 6)):
                data += mutate(rng, rng.choice(requests)) if rng.random() < 0.7 else rng.choice(requests)
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            batch.append(sock)
        done += len(batch)
        deadline = time.time() + 8
        live = list(batch)
        while live and time.time() < deadline:
            readable, _, _ = select.select(live, [], [], 0.5)
            for sock in readable:
                try:
                    chunk = sock.recv(1 << 16)
                except OSError:
                    chunk = b""
                if not chunk:
                    live.remove(sock)
                    ended += 1
        hung += len(live)
        for sock in batch:
            sock.close()
    out(connections=done, ended=ended, hung=hung)


ATTACKS = {
    "list-flood": lambda a: attack_list_flood(a[0], int(a[1]), float(a[2])),
    "partial-frames": lambda a: attack_partial_frames(a[0], int(a[1]), float(a[2])),
    "fill-bytes": lambda a: attack_fill_bytes(a[0], int(a[1]), int(a[2])),
    "empty-messages": lambda a: attack_empty_messages(a[0], int(a[1])),
    "waits": lambda a: attack_waits(a[0], int(a[1])),
    "subscriptions": lambda a: attack_subscriptions(a[0], int(a[1]), int(a[2])),
    "channels": lambda a: attack_channels(a[0], int(a[1])),
    "connections": lambda a: attack_connections(a[0], int(a[1]), a[2] == "hello", float(a[3])),
    "sessions-inject": lambda a: attack_sessions_inject(a[0], int(a[1], 16)),
    "relay": lambda a: attack_relay(a[0], a[1]),
    "mirror": lambda a: attack_mirror(a[0], a[1], int(a[2])),
    "create": lambda a: attack_create(a[0], a[1], float(a[2])),
    "slow-readers": lambda a: attack_slow_readers(a[0], a[1], int(a[2]), float(a[3])),
    "long-names-list": lambda a: attack_long_names_list(a[0], int(a[1])),
    "many-sessions": lambda a: attack_many_sessions(a[0], int(a[1])),
    "random-frames": lambda a: attack_random_frames(a[0], int(a[1]), int(a[2])),
}

if __name__ == "__main__":
    ATTACKS[sys.argv[1]](sys.argv[2:])
