#!/usr/bin/python3
"""A mapped reader of cometd speaking docs/PROTOCOL.md directly, for MappedReaderTests.

Subscribes with MAPPED, fetches ring descriptors with RING, reads messages from its own read-only
mapping as docs/RESTARTS.md ("Ring file") says, and prints one JSON object with what it got.
Modes:
  read SOCKET NAME COUNT [FROM] [PAUSE_AFTER PAUSE_SECONDS]  read COUNT messages (or to CLOSED/FULL)
  tamper SOCKET NAME                                          try to write through the descriptor
  steal SOCKET NAME UID                                       another uid redeems this reader's ticket
  crowd SOCKET NAME COUNT                                     COUNT connections at once (over the quota?)
"""
import ctypes, errno, json, mmap, os, socket, struct, sys, time

HEADER_FIRST, HEADER_LAST, HEADER_CAPACITY, HEADER_DATA_SIZE = 104, 112, 16, 24
ERRORS = {20: "BAD_TOKEN", 30: "PERMISSION_DENIED", 9: "NO_SUCH_CHANNEL", 7: "INVALID_ARGUMENT", 17: "UNSUPPORTED",
          29: "QUOTA_EXCEEDED"}


def frame(op, rid, body=b""):
    payload = bytes([op]) + struct.pack(">I", rid) + body
    return struct.pack(">I", len(payload)) + payload


class Conn:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf, self.at = b"", 0
        self.sock.sendall(frame(0x01, 1, b"\x01\x00\x01"))
        body = self.read_frame()
        assert body[0] == 0x80, "hello refused"
        self.features = struct.unpack(">Q", body[49:57])[0] if len(body) >= 57 else 0

    def read_frame(self, timeout=20):
        """The next frame's body. Frames are cut from `buf` at `at` (no copy of the rest per frame:
        a reader served thousands of queued frames at once stays linear)."""
        self.sock.settimeout(timeout)
        while True:
            if len(self.buf) - self.at >= 4:
                n = struct.unpack_from(">I", self.buf, self.at)[0]
                if len(self.buf) - self.at >= 4 + n:
                    body = bytes(self.buf[self.at + 4:self.at + 4 + n])
                    self.at += 4 + n
                    return body
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError("closed")
            self.buf = self.buf[self.at:] + data
            self.at = 0

    def subscribe_mapped(self, name, start, epoch=0):
        position, argument = (2, start) if start else (1, 0)  # from N, or oldest
        n = name.encode()
        # MAPPED, and RETURN where the daemon offers it (HELLO feature bit 3): detached, take the ring back.
        flags = 0x08 | (0x10 if self.features & 8 else 0)
        self.sock.sendall(frame(0x06, 2, bytes([flags, position]) + struct.pack(">QQH", argument, epoch, len(n)) + n))
        while True:
            body = self.read_frame()
            if body[0] == 0x81:
                return None, ERRORS.get(struct.unpack(">H", body[5:7])[0], "error")
            if body[0] == 0x80:
                sub, state, epoch, nxt = struct.unpack(">IBQQ", body[5:26])
                self.epoch = epoch
                return (sub, nxt), None


def fetch(path, ticket):
    """RING: the descriptor a ticket stands for, or the error name."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(frame(0x1A, 1, struct.pack(">Q", ticket)))
    data, fds, _, _ = socket.recv_fds(s, 4096, 2)
    s.close()
    if len(data) < 5 or data[4] != 0x80:
        for fd in fds:
            os.close(fd)
        code = struct.unpack(">H", data[9:11])[0] if len(data) >= 11 else 0
        return None, ERRORS.get(code, "error %d" % code)
    # OK: u64 length, u64 position_length (a protected reader's position page, the second descriptor).
    position_length = struct.unpack(">Q", data[17:25])[0] if len(data) >= 25 else 0
    page = fds[1] if position_length and len(fds) > 1 else None
    return (fds[0], page), None


LIBC = ctypes.CDLL(None)
FENCE_LOCK = ctypes.c_int(0)
LIBC.pthread_spin_init(ctypes.byref(FENCE_LOCK), 0)


def full_fence():
    """A locked instruction: the store before it is visible before the load after it."""
    LIBC.pthread_spin_lock(ctypes.byref(FENCE_LOCK))
    LIBC.pthread_spin_unlock(ctypes.byref(FENCE_LOCK))


class Position:
    """A protected reader's position page: how far it read (offset 0), whether a producer waits
    for its ACK (offset 64)."""

    def __init__(self, fd):
        self.map = mmap.mmap(fd, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        os.close(fd)

    def say(self, next_sequence):
        """Stores how far it read; True when the daemon wants an ACK too."""
        struct.pack_into("<Q", self.map, 0, next_sequence)
        full_fence()
        return struct.unpack_from("<Q", self.map, 64)[0] != 0


class Ring:
    def __init__(self, fd):
        self.map = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
        os.close(fd)
        self.capacity = self.u64(HEADER_CAPACITY)
        self.size = self.u64(HEADER_DATA_SIZE)
        self.data = 4096 + ((self.capacity * 16 + 4095) & ~4095)

    def u64(self, at):
        return struct.unpack_from("<Q", self.map, at)[0]

    def read(self, s):
        """Message s; (None, first available) when overtaken; (None, None) when this file does not
        hold it (the ring moved: the next ticket follows). Copy, then check `first` again (x86:
        loads stay in order)."""
        if s > self.u64(HEADER_LAST):
            return None, None
        first = self.u64(HEADER_FIRST)
        if s < first:
            return None, first
        offset, length = struct.unpack_from("<QI", self.map, 4096 + ((s - 1) % self.capacity) * 16)
        at = offset & (self.size - 1)
        data = bytes(self.map[self.data + at:self.data + at + length]) if at + length <= self.size else None
        first = self.u64(HEADER_FIRST)
        if s < first or data is None:
            return None, max(first, s + 1)
        return data, None


def read(path, name, count, start=0, pause_after=-1, pause=0.0):
    c = Conn(path)
    if not c.features & 4:
        return {"error": "the daemon does not serve mapped rings"}
    sub, error = c.subscribe_mapped(name, start)
    if error:
        return {"error": error}
    sid, cursor = sub
    ring, position, acked, got, ok = None, None, 0, [], True
    result = {"tickets": 0, "socket_messages": 0, "full": None, "closed": None}

    def pause_at(cursor):
        """Stops reading for `pause` seconds once, after `pause_after` messages, wherever they came from."""
        if len(got) == pause_after and not result.get("paused"):
            print(json.dumps({"paused": cursor}), flush=True)
            result["paused"] = cursor
            time.sleep(pause)
    while len(got) < count:
        try:
            body = c.read_frame()
        except (EOFError, ConnectionError):
            # The daemon went away (a crash): connect again and go on after the last message read,
            # mapped again, in the same epoch.
            c, sid = reconnect(path, name, cursor, c.epoch)
            ring = None
            result["reconnects"] = result.get("reconnects", 0) + 1
            continue
        op = body[0]
        if op == 0x99:
            _, last, ticket = struct.unpack(">IQQ", body[1:21])
            flags = body[21] if len(body) > 21 else 0
            report, held, newest = flags & 1, flags & 2, flags & 4
            if ticket and ring is None and (result.get("detached") or result["socket_messages"]):
                result["returns"] = result.get("returns", 0) + 1  # given the ring back (RETURN)
            if ticket:
                fds, error = fetch(path, ticket)
                if error and error != "BAD_TOKEN":  # BAD_TOKEN: superseded, the next ticket follows
                    return {"error": error}
                if fds is not None:
                    ring = Ring(fds[0])
                    position = Position(fds[1]) if fds[1] is not None else None
                    result["tickets"] += 1
                    if position:
                        result["position_page"] = True
            # No file (its ticket was superseded, or it was detached again before it fetched it):
            # the next ticket, or RING_DETACHED, follows.
            while ring is not None and cursor <= last and len(got) < count:
                pause_at(cursor)
                data, full = ring.read(cursor)
                if data is None and full is not None and newest:
                    cursor = full  # a newest channel moved on: skip to its latest value
                    result["skipped"] = result.get("skipped", 0) + 1
                    continue
                if data is None:
                    if full is not None and not held:
                        result["full"] = full
                    break  # held: RING_DETACHED (or FULL) follows; moved: the next ticket
                got.append(cursor)
                ok = ok and data == b"m%d" % cursor
                cursor += 1
                result["last_from"] = "ring"
            if result["full"] is not None:
                break
            if ring is not None and position is not None and position.say(cursor) and cursor - 1 > acked:
                acked = cursor - 1  # a producer of our user waits for this reader: ACK too
                c.sock.sendall(frame(0x0C, 3, struct.pack(">IQ", sid, acked)))
                result["reports"] = result.get("reports", 0) + 1
            if report and cursor > last:  # asked to say how far it read
                acked = max(acked, last)
                c.sock.sendall(frame(0x0C, 3, struct.pack(">IQ", sid, last)))
                result["reports"] = result.get("reports", 0) + 1
        elif op == 0x9A:  # detached from the ring: served over the socket from here
            ring = None
            result["detached"] = struct.unpack(">Q", body[5:13])[0]
        elif op == 0x90:  # detached, or after a live upgrade: served over the socket
            ring = None
            seq = struct.unpack(">Q", body[5:13])[0]
            if seq < cursor:
                continue  # read from the ring already
            pause_at(cursor)
            ok = ok and seq == cursor and body[13:] == b"m%d" % seq
            got.append(seq)
            cursor = seq + 1
            result["socket_messages"] += 1
            result["last_from"] = "socket"
        elif op == 0x91:
            result["full"] = struct.unpack(">Q", body[5:13])[0]
            break
        elif op == 0x92:
            result["closed"] = struct.unpack(">Q", body[5:13])[0]
            break
        elif op in (0x97, 0x98):
            result["ended"] = op
            break
    result.update(count=len(got), first=got[0] if got else 0, last=got[-1] if got else 0,
                  in_order=got == list(range(got[0], got[0] + len(got))) if got else True, payloads=ok)
    return result


def reconnect(path, name, cursor, epoch, within=20):
    deadline = time.time() + within
    while True:
        try:
            c = Conn(path)
            sub, error = c.subscribe_mapped(name, cursor, epoch)
            if error:
                raise RuntimeError(error)
            return c, sub[0]
        except (OSError, EOFError, AssertionError, RuntimeError):
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def first_ticket(path, name):
    c = Conn(path)
    sub, error = c.subscribe_mapped(name, 0)
    if error:
        return c, None
    while True:
        body = c.read_frame()
        if body[0] == 0x99:
            return c, struct.unpack(">IQQ", body[1:21])[2]


def outcome(action):
    try:
        action()
        return "allowed"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def tamper(path, name):
    keep, ticket = first_ticket(path, name)
    fds, error = fetch(path, ticket)
    if error:
        return {"error": error}
    fd, page = fds
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    size = os.fstat(fd).st_size
    result = {"mode": oct(os.fstat(fd).st_mode & 0o777)}
    result["mmap_shared_writable"] = outcome(lambda: mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE))
    address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)

    def protect():
        if libc.mprotect(address, size, mmap.PROT_READ | mmap.PROT_WRITE) != 0:
            raise OSError(ctypes.get_errno(), "mprotect")
    result["mprotect_writable"] = outcome(protect)
    result["write"] = outcome(lambda: os.pwrite(fd, b"x", 4096 + 16))
    result["truncate"] = outcome(lambda: os.ftruncate(fd, 0))
    try:
        again = os.open("/proc/self/fd/%d" % fd, os.O_RDWR)
        result["reopen_rw"] = "allowed"
        result["reopen_write"] = outcome(lambda: os.pwrite(again, b"x", 4096 + 16))
        result["reopen_mmap_writable"] = outcome(lambda: mmap.mmap(again, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE))
        result["reopen_truncate"] = outcome(lambda: os.ftruncate(again, 0))
        os.close(again)
    except OSError as e:
        result["reopen_rw"] = errno.errorcode.get(e.errno, str(e.errno))
    # A private copy may be scribbled on: nobody else sees it.
    private = mmap.mmap(fd, 0, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
    private[:size] = b"\xff" * size
    shared = Ring(os.dup(fd))
    result["private_scribbled"] = private[HEADER_LAST] == 0xff
    result["shared_last_after"] = shared.u64(HEADER_LAST)
    if page is not None:
        # The position page is the reader's to write, never to resize (the daemon reads it).
        result["page_write"] = outcome(lambda: os.pwrite(page, struct.pack("<Q", 1 << 62), 0))
        result["page_truncate"] = outcome(lambda: os.ftruncate(page, 0))
        result["page_grow"] = outcome(lambda: os.ftruncate(page, 1 << 20))
        os.close(page)
    os.close(fd)
    keep.sock.close()
    return result


def steal(path, name, uid):
    keep, ticket = first_ticket(path, name)
    child = os.fork()
    if child == 0:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        fd, error = fetch(path, ticket)
        os._exit(0 if error == "BAD_TOKEN" and fd is None else 1)
    _, status = os.waitpid(child, 0)
    fd, error = fetch(path, ticket)
    again, again_error = fetch(path, ticket) if fd is not None else (None, None)
    keep.sock.close()
    return {"other_uid_refused": os.waitstatus_to_exitcode(status) == 0, "owner_error": error,
            "owner_got_descriptor": fd is not None, "second_use": again_error}


def crowd(path, count):
    """`count` connections opened at once, sending nothing: which the daemon ends at once; then the
    last of the others sends RING with a ticket it was never given, the rest HELLO."""
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        socks.append(s)
    time.sleep(0.3)

    def answer(s, timeout):
        s.settimeout(timeout)
        try:
            data = s.recv(4096)
        except socket.timeout:
            return None
        if len(data) < 11:
            return "closed"
        if data[4] == 0x80:
            return "OK"
        return ERRORS.get(struct.unpack(">H", data[9:11])[0], "error %d" % struct.unpack(">H", data[9:11])[0])
    at_once = [answer(s, 0.05) for s in socks]
    waiting = [s for s, got in zip(socks, at_once) if got is None]
    answers = []
    for i, s in enumerate(waiting):
        last = i == len(waiting) - 1
        s.sendall(frame(0x1A, 1, struct.pack(">Q", 12345)) if last else frame(0x01, 1, b"\x01\x00\x01"))
        answers.append(answer(s, 5))
    for s in socks:
        s.close()
    return {"at_once": [got for got in at_once if got is not None], "answers": answers}


if __name__ == "__main__":
    mode, path, name = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "read":
        rest = [int(a) if "." not in a else float(a) for a in sys.argv[5:]]
        print(json.dumps(read(path, name, int(sys.argv[4]), *rest)), flush=True)
    elif mode == "tamper":
        print(json.dumps(tamper(path, name)), flush=True)
    elif mode == "crowd":
        print(json.dumps(crowd(path, int(sys.argv[4]))), flush=True)
    elif mode == "steal":
        print(json.dumps(steal(path, name, int(sys.argv[4]))), flush=True)
