import NIOCore

/// A reply body carried by an OK frame. Decoding ignores trailing bytes, so a v1 server may
/// append fields that older clients skip.
public protocol Reply: Sendable {
    /// Reads the fields from an OK body.
    init(from body: inout ByteBuffer) throws(WireError)
    /// Writes the fields into an OK body.
    func write(to body: inout ByteBuffer)
}

/// Reply to HELLO: the version chosen and the server's limits.
public struct HelloReply: Reply, Hashable {
    public var version: UInt16
    /// Largest frame body the server accepts and sends.
    public var maxFrameSize: UInt32
    /// Largest `size` a channel may have.
    public var maxChannelSize: UInt32
    /// Longest channel name, in bytes.
    public var maxNameLength: UInt16
    /// The id of the session this connection belongs to: public, what producers address.
    public var sessionID: UInt64
    /// The secret that resumes the session from another connection (RESUME). Keep it private.
    public var tokenHigh: UInt64
    public var tokenLow: UInt64
    /// Random id of the daemon process, fixed at start: relays use it to refuse relaying to themselves.
    public var instance: UInt64
    /// What the daemon serves beyond version 1's first operations (appended in comet 0.6; 0 from
    /// an older daemon): `Features.numberedPushes`.
    public var features: UInt64

    /// Bits of `features`.
    public enum Features {
        /// PUSH_NUMBERED and ADOPT's `last_number`: idempotent pushes.
        public static let numberedPushes: UInt64 = 1
        /// MIRROR, MIRROR_PUSH and MIRROR_STATE: imports a bridge feeds (comet 0.7).
        public static let mirrors: UInt64 = 2
        /// SUBSCRIBE's MAPPED, RING and RING_ADVANCED: readers of shared-memory rings (comet 0.9).
        public static let mappedRings: UInt64 = 4
        /// SUBSCRIBE's RETURN: a detached mapped reader is given its ring back once it caught up
        /// (comet 0.9.2).
        public static let ringReturn: UInt64 = 8
    }

    public var servesNumberedPushes: Bool { features & Features.numberedPushes != 0 }
    public var servesMirrors: Bool { features & Features.mirrors != 0 }
    public var servesMappedRings: Bool { features & Features.mappedRings != 0 }
    public var returnsToRings: Bool { features & Features.ringReturn != 0 }

    public init(
        version: UInt16, maxFrameSize: UInt32, maxChannelSize: UInt32, maxNameLength: UInt16, sessionID: UInt64,
        tokenHigh: UInt64 = 0, tokenLow: UInt64 = 0, instance: UInt64 = 0, features: UInt64 = 0
    ) {
        self.instance = instance
        self.features = features
        self.version = version
        self.maxFrameSize = maxFrameSize
        self.maxChannelSize = maxChannelSize
        self.maxNameLength = maxNameLength
        self.sessionID = sessionID
        self.tokenHigh = tokenHigh
        self.tokenLow = tokenLow
    }

    public init(from body: inout ByteBuffer) throws(WireError) {
        version = try body.readWire(UInt16.self, "version")
        maxFrameSize = try body.readWire(UInt32.self, "max frame size")
        maxChannelSize = try body.readWire(UInt32.self, "max channel size")
        maxNameLength = try body.readWire(UInt16.self, "max name length")
        sessionID = try body.readWire(UInt64.self, "session id")
        tokenHigh = try body.readWire(UInt64.self, "token")
        tokenLow = try body.readWire(UInt64.self, "token")
        instance = try body.readWire(UInt64.self, "instance")
        features = body.readInteger(as: UInt64.self) ?? 0
    }

    public func write(to body: inout ByteBuffer) {
        body.writeMultipleIntegers(version, maxFrameSize, maxChannelSize, maxNameLength, sessionID, tokenHigh, tokenLow, instance)
        body.writeInteger(features)
    }
}

/// Reply to CREATE: the handle for PUSH and CLOSE, and the channel's epoch.
public struct CreateReply: Reply, Hashable {
    public var channel: UInt64
    public var epoch: UInt64
    /// The producer token (appended in 0.5): proves the producer in ADOPT after a restart. 0, 0
    /// from an older daemon.
    public var tokenHigh: UInt64
    public var tokenLow: UInt64

    public init(channel: UInt64, epoch: UInt64, tokenHigh: UInt64 = 0, tokenLow: UInt64 = 0) {
        self.channel = channel
        self.epoch = epoch
        self.tokenHigh = tokenHigh
        self.tokenLow = tokenLow
    }

    public init(from body: inout ByteBuffer) throws(WireError) {
        channel = try body.readWire(UInt64.self, "channel")
        epoch = try body.readWire(UInt64.self, "epoch")
        tokenHigh = body.readInteger(as: UInt64.self) ?? 0
        tokenLow = body.readInteger(as: UInt64.self) ?? 0
    }

    public func write(to body: inout ByteBuffer) { body.writeMultipleIntegers(channel, epoch, tokenHigh, tokenLow) }
}

/// Reply to ADOPT: the channel's handle, epoch and last sequence number; pushing goes on from there.
public struct AdoptReply: Reply, Hashable {
    public var channel: UInt64
    public var epoch: UInt64
    public var lastSequence: UInt64
    /// The producer number of the last numbered push applied (PUSH_NUMBERED; appended in comet
    /// 0.6): 0 when the channel has taken none, or from an older daemon.
    public var lastNumber: UInt64

    public init(channel: UInt64, epoch: UInt64, lastSequence: UInt64, lastNumber: UInt64 = 0) {
        self.channel = channel
        self.epoch = epoch
        self.lastSequence = lastSequence
        self.lastNumber = lastNumber
    }

    public init(from body: inout ByteBuffer) throws(WireError) {
        channel = try body.readWire(UInt64.self, "channel")
        epoch = try body.readWire(UInt64.self, "epoch")
        lastSequence = try body.readWire(UInt64.self, "last sequence")
        lastNumber = body.readInteger(as: UInt64.self) ?? 0
    }

    public func write(to body: inout ByteBuffer) { body.writeMultipleIntegers(channel, epoch, lastSequence, lastNumber) }
}

/// Reply to PUSH and PUSH_BATCH: the sequence numbers given, `first ..< first + count`.
public struct PushReply: Reply, Hashable {
    public var firstSequence: UInt64
    public var count: UInt32

    public init(firstSequence: UInt64, count: UInt32) {
        self.firstSequence = firstSequence
        self.count = count
    }

    public init(from body: inout ByteBuffer) throws(WireError) {
        firstSequence = try body.readWire(UInt64.self, "first sequence")
        count = try body.readWire(UInt32.self, "count")
    }

    public func write(to body: inout ByteBuffer) { body.writeMultipleIntegers(firstSequence, count) }
}

/// Reply to RING: the ring file's size in bytes (what to map); its descriptor comes with it.
public struct RingReply: Reply, Hashable {
    /// Bytes of the ring file (the first descriptor).
    public var length: UInt64
    /// Bytes of the reader's position page (the second descriptor), 0 when none follows.
    public var positionLength: UInt64

    public init(length: UInt64, positionLength: UInt64 = 0) {
        self.length = length
        self.positionLength = positionLength
    }

    public init(from body: inout ByteBuffer) throws(WireError) {
        length = try body.readWire(UInt64.self, "length")
        positionLength = body.readableBytes >= 8 ? try body.readWire(UInt64.self, "position length") : 0
    }

    public func write(to body: inout ByteBuffer) {
        body.writeInteger(length)
        body.writeInteger(positionLength)
    }
}

/// Reply to CLOSE: the last sequence number the channel gave (0 if none).
public struct CloseReply: Reply, Hashable {
    public var lastSequence: UInt64

    public init(lastSequence: UInt64) { self.lastSequence = lastSequence }

    public init(from body: inout ByteBuffer) throws(WireError) {
        lastSequence = try body.readWire(UInt64.self, "last sequence")
    }

    public func write(to body: inout ByteBuffer) { body.writeInteger(lastSequence) }
}

/// Reply to MIRROR: the handle MIRROR_PUSH and MIRROR_STATE name, and the last sequence number
/// the mirror holds of the epoch asked for (0 when it holds none: feed it from the start).
public struct MirrorReply: Reply, Hashable {
    public var mirror: UInt64
    public var lastSequence: UInt64

    public init(mirror: UInt64, lastSequence: UInt64) {
        self.mirror = mirror
        self.lastSequence = lastSequence
    }

    public init(from body: inout ByteBuffer) throws(WireError) {
        mirror = try body.readWire(UInt64.self, "mirror")
        lastSequence = try body.readWire(UInt64.self, "last sequence")
    }

    public func write(to body: inout ByteBuffer) { body.writeMultipleIntegers(mirror, lastSequence) }
}

/// Reply to SUBSCRIBE.
public struct SubscribeReply: Reply, Hashable {
    /// The id that MESSAGE, FULL, CLOSED and STARTED events of this subscription carry.
    public var subscription: UInt32
    /// True when the channel does not exist yet and the subscription waits for it (STARTED follows).
    public var waiting: Bool
    /// The channel's epoch (0 while waiting).
    public var epoch: UInt64
    /// The sequence number of the first message this subscription will deliver (0 while waiting).
    public var nextSequence: UInt64
    /// Who produces the channel (`.unknown` while waiting, or from a daemon that does not say).
    public var owner: Owner

    public init(subscription: UInt32, waiting: Bool, epoch: UInt64, nextSequence: UInt64, owner: Owner = .unknown) {
        self.owner = owner
        self.subscription = subscription
        self.waiting = waiting
        self.epoch = epoch
        self.nextSequence = nextSequence
    }

    public init(from body: inout ByteBuffer) throws(WireError) {
        subscription = try body.readWire(UInt32.self, "subscription")
        waiting = try body.readWire(UInt8.self, "state") == 1
        epoch = try body.readWire(UInt64.self, "epoch")
        nextSequence = try body.readWire(UInt64.self, "next sequence")
        owner = body.readOptionalOwner()
    }

    public func write(to body: inout ByteBuffer) {
        body.writeMultipleIntegers(subscription, UInt8(waiting ? 1 : 0), epoch, nextSequence, owner.uid, owner.gid)
    }
}

/// One session in a SESSIONS reply. Tokens are never listed.
public struct SessionInfo: Hashable, Sendable {
    public var id: UInt64
    public var uid: UInt32
    public var connections: UInt32
    public var privateChannels: UInt32
    /// Milliseconds since the session's last activity on its private channels (or since it opened).
    public var idleMilliseconds: UInt64

    public init(id: UInt64, uid: UInt32, connections: UInt32, privateChannels: UInt32, idleMilliseconds: UInt64) {
        self.id = id
        self.uid = uid
        self.connections = connections
        self.privateChannels = privateChannels
        self.idleMilliseconds = idleMilliseconds
    }
}

/// Reply to SESSIONS and SESSIONS_FROM: one page of the sessions this connection may see, by
/// id. `more` says that sessions follow the last one (ask with SESSIONS_FROM).
public struct SessionsReply: Reply, Hashable {
    public var sessions: [SessionInfo]
    public var more: Bool

    public init(sessions: [SessionInfo], more: Bool = false) {
        self.sessions = sessions
        self.more = more
    }

    /// Bytes one entry takes in the reply.
    public static let entrySize = 28
    /// Bytes of the reply around its entries (count and `more`).
    public static let overhead = 5

    public init(from body: inout ByteBuffer) throws(WireError) {
        let count = try body.readWire(UInt32.self, "count")
        guard Int(count) <= body.readableBytes / 28 else { throw WireError.malformed("session count exceeds frame") }
        sessions = []
        for _ in 0..<count {
            sessions.append(SessionInfo(
                id: try body.readWire(UInt64.self, "id"), uid: try body.readWire(UInt32.self, "uid"),
                connections: try body.readWire(UInt32.self, "connections"),
                privateChannels: try body.readWire(UInt32.self, "channels"),
                idleMilliseconds: try body.readWire(UInt64.self, "idle")))
        }
        more = (body.readInteger(as: UInt8.self) ?? 0) == 1
    }

    public func write(to body: inout ByteBuffer) {
        body.writeInteger(UInt32(sessions.count))
        for s in sessions {
            body.writeMultipleIntegers(s.id, s.uid, s.connections, s.privateChannels, s.idleMilliseconds)
        }
        body.writeInteger(UInt8(more ? 1 : 0))
    }
}

/// Reply to RESUME: the session the connection now belongs to.
public struct ResumeReply: Reply, Hashable {
    public var session: UInt64

    public init(session: UInt64) { self.session = session }

    public init(from body: inout ByteBuffer) throws(WireError) {
        session = try body.readWire(UInt64.self, "session")
    }

    public func write(to body: inout ByteBuffer) { body.writeInteger(session) }
}

/// Reply to WAIT_TIMEOUT: why the wait ended.
public struct WaitTimeoutReply: Reply, Hashable {
    /// 0: the session was inactive for the whole timeout; 1: the session ended.
    public var ended: Bool

    public init(ended: Bool) { self.ended = ended }

    public init(from body: inout ByteBuffer) throws(WireError) {
        ended = try body.readWire(UInt8.self, "reason") == 1
    }

    public func write(to body: inout ByteBuffer) { body.writeInteger(UInt8(ended ? 1 : 0)) }
}
