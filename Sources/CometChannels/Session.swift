/// The secret that proves a client owns a session: 128 random bits.
public struct SessionToken: Hashable, Sendable {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public static func random() -> SessionToken {
        var generator = SystemRandomNumberGenerator()
        return SessionToken(high: generator.next(), low: generator.next())
    }

    /// Compares without an early exit, so timing does not tell how much of a guess was right.
    public func matches(_ other: SessionToken) -> Bool {
        ((high ^ other.high) | (low ^ other.low)) == 0
    }
}

/// A client process (Eliom's "client process"): one or more connections of one user that share
/// private channels. It outlives a disconnect by a grace period, so a reconnecting client that
/// proves it holds the token gets it back, with its channels and their unacknowledged messages.
public final class Session {
    public let id: UInt64
    public let token: SessionToken
    /// The user (SO_PEERCRED uid) that opened it; only the same uid may resume it.
    public let uid: UInt32
    public internal(set) var connections: Set<UInt64> = []
    /// When the last connection left (nil while one is attached).
    public internal(set) var detachedAt: UInt64?
    /// Last activity on the session's stateful channels (wait_timeout's clock), in the caller's
    /// nanoseconds.
    public internal(set) var lastActivity: UInt64

    /// Private channels addressed to this session, by name.
    public internal(set) var channels: [String: UInt64] = [:]

    init(id: UInt64, token: SessionToken, uid: UInt32, now: UInt64) {
        self.lastActivity = now
        self.id = id
        self.token = token
        self.uid = uid
    }
}

/// Every live session. Plain state, no clock: callers pass times in nanoseconds.
public final class SessionRegistry {
    public internal(set) var sessions: [UInt64: Session] = [:]
    private let makeID: () -> UInt64

    public init(makeID: @escaping () -> UInt64 = { UInt64.random(in: 1...UInt64.max) }) {
        self.makeID = makeID
    }

    /// Opens a new session for `connection` of user `uid`, active as of `now`.
    public func open(uid: UInt32, connection: UInt64, now: UInt64 = 0) -> Session {
        var id = makeID()
        while sessions[id] != nil || id == 0 { id = makeID() }
        let session = Session(id: id, token: .random(), uid: uid, now: now)
        session.connections.insert(connection)
        sessions[id] = session
        return session
    }

    public func session(_ id: UInt64) -> Session? { sessions[id] }

    /// Attaches `connection` to session `id` if `token` and `uid` prove it is the owner's.
    /// Every refusal reads the same to the caller except for its code, and none reveals whether
    /// a session with that id exists to a caller of another uid.
    public func resume(_ id: UInt64, token: SessionToken, uid: UInt32, connection: UInt64) throws(ChannelRefusal) -> Session {
        guard let session = sessions[id] else {
            throw ChannelRefusal(.noSuchSession, "no live session \(String(id, radix: 16)); it may have ended after its grace period")
        }
        guard session.uid == uid else {
            throw ChannelRefusal(.wrongUser, "session \(String(id, radix: 16)) belongs to another user")
        }
        guard session.token.matches(token) else {
            throw ChannelRefusal(.badToken, "wrong resume token for session \(String(id, radix: 16))")
        }
        session.connections.insert(connection)
        session.detachedAt = nil
        return session
    }

    /// Detaches `connection`; returns true when the session has no connection left (its grace
    /// period starts `now`).
    @discardableResult
    public func detach(_ connection: UInt64, from session: Session, now: UInt64) -> Bool {
        session.connections.remove(connection)
        guard session.connections.isEmpty else { return false }
        session.detachedAt = now
        return true
    }

    /// Ends `session` if it has had no connection for at least `grace` nanoseconds; returns it then.
    public func expire(_ id: UInt64, now: UInt64, grace: UInt64) -> Session? {
        guard let session = sessions[id], session.connections.isEmpty, let since = session.detachedAt,
            now >= since + grace
        else { return nil }
        sessions[id] = nil
        return session
    }

    /// Ends `session` at once (it was only a placeholder, or the daemon stops); forgets its channels.
    public func end(_ session: Session) {
        sessions[session.id] = nil
        session.channels = [:]
    }

    /// Notes activity on `session`'s stateful channels at `now`.
    public func touch(_ session: Session, now: UInt64) {
        session.lastActivity = now
    }

    /// Records that a private channel named `name` with handle `channel` is addressed to `session`.
    public func addChannel(_ name: String, _ channel: UInt64, to session: Session) {
        session.channels[name] = channel
    }

    public func removeChannel(_ name: String, from session: Session) {
        session.channels[name] = nil
    }
}
