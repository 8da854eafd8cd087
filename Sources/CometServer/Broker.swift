import CometChannels
import CometState
import CometWire
import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The coordinator of the daemon's parts, confined to one event loop. Each part owns its state
/// and is changed only through its operations; the broker decides nothing they can decide alone
/// and wires them together (docs/FLOW.md, "Parts and what they own"):
///
/// - channels: `registry` (site channels), `closedChannels`, `privateChannels`, `sessions`;
/// - connections: `connections`, and each connection's `InputFlow` in its handler;
/// - delivery: `delivery` (who has something to write), `holds` (who waits for whom);
/// - accounting: `accounts` (per-uid usage), `starved` (who waits for its user's output quota),
///   `trimmer` (when to give memory back);
/// - sessions: `sessions`, `timeoutWaiters`;
/// - federation: `links`; restarts: `restore`, `stateStore`.
///
/// Requests come in from `ConnectionHandler`; everything written to a connection goes to its
/// outbox and leaves in one flush per delivery pass (`Delivery/Broker+Delivery.swift`).
package final class Broker: @unchecked Sendable {  // confined to its event loop: closures hop there before touching it
    let eventLoop: EventLoop
    let configuration: ServerConfiguration
    let logger: Logger
    var logLimiter: LogLimiter
    /// When the broker started (uptime nanoseconds).
    let startedAt: UInt64
    /// Random id of this daemon, in HELLO replies: relays refuse to relay from themselves.
    var instance = UInt64.random(in: 1...UInt64.max)
    var isShuttingDown = false
    var sweeper: RepeatedTask?
    /// Set when `tickEnded()` is called at the end of every turn of the loop (`LoopTicks`): hands
    /// the work put off to the next turn to whatever wakes the loop for it (in cometd a pipe the
    /// loop watches, `Connections/LoopWaker.swift`; NIO does not wake a loop for tasks queued on
    /// it at the end of a tick). Nil: next-turn work is queued at once.
    package var wakeForNextTurn: (@Sendable (@escaping @Sendable () -> Void) -> Void)?
    /// Work for the next turn of the loop, after it polled its sockets.
    private var nextTurn: [@Sendable () -> Void] = []

    // Who may do what; replaced whole by `reload(policy:)`.
    var policy: Policy
    var groupDirectory = GroupDirectory()
    var userDirectory = UserDirectory()

    // Channels and sessions.
    let registry: ChannelRegistry<ByteRing, WaiterKey>
    /// Closed site channels kept for readers a crash may cut off (with a store only).
    let closedChannels = ClosedChannels<ByteRing>()
    let privateChannels = PrivateChannelTable()
    let sessions = SessionRegistry()
    /// Sessions charged to their user's session quota.
    var chargedSessions: Set<UInt64> = []
    let timeoutWaiters = TimeoutWaiters()

    // Connections, delivery and flow control.
    let connections = ConnectionTable()
    let delivery = DeliveryQueue()
    let holds: ProducerHolds
    /// Tickets of mapped readers for their rings' descriptors.
    var mappedRings = MappedRings()
    /// Connections' socket descriptors, for passing ring descriptors on them.
    let socketDescriptors = SocketDescriptors()
    /// Connections over their user's quota let in for one RING each.
    let overQuotaRings = OverQuotaRings()
    /// Set by the simulator, whose connections have no socket: takes RING's answer and the
    /// descriptors passed with it (they are closed after the call: duplicate those kept).
    package var passDescriptors: ((ByteBuffer, [Int32]) -> Bool)?

    // Accounting.
    let accounts: ResourceAccounts
    let starved = StarvedReaders()
    var trimmer = MemoryTrimmer()

    // Federation and restarts.
    let links = FederationLinks()
    let restore = RestoreProgress()
    /// Storage that outlives a crash (docs/RESTARTS.md); nil without a file-descriptor store.
    var stateStore: StateStore?

    package init(eventLoop: EventLoop, configuration: ServerConfiguration, logger: Logger) {
        self.eventLoop = eventLoop
        self.startedAt = eventLoop.now.uptimeNanoseconds
        self.configuration = configuration
        self.logger = logger
        self.policy = configuration.policy
        self.holds = ProducerHolds(grace: configuration.readerGrace)
        self.accounts = ResourceAccounts(quotas: configuration.quotas)
        self.logLimiter = LogLimiter(burst: configuration.logBurst, interval: configuration.logInterval)
        var limits = configuration.registry
        limits.maxChannels = configuration.quotas.total(.channels)
        self.registry = ChannelRegistry(limits: limits)
    }

    var summary: ServerStatus {
        ServerStatus(
            connections: connections.count, channels: registry.count,
            subscriptions: connections.values.reduce(0) { $0 + $1.subscriptions.count },
            totalConnections: connections.opened, estimatedMemory: accounts.estimatedMemory)
    }

    /// Starts the periodic sweep: handshake and idle timeouts, log summaries, returning memory.
    package func start() {
        let period = TimeAmount.nanoseconds(
            max(TimeAmount.milliseconds(50).nanoseconds,
                min(TimeAmount.seconds(1).nanoseconds, configuration.handshakeTimeout.nanoseconds / 4, configuration.idleTimeout.nanoseconds / 4)))
        sweeper = eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { [weak self] _ in
            self?.sweep()
        }
    }

    /// Runs `work` at the next turn of the loop: after the loop polled its sockets when something
    /// wakes the loop for it, else after the tasks already queued.
    func atNextTurn(_ work: @escaping @Sendable () -> Void) {
        if wakeForNextTurn != nil {
            nextTurn.append(work)
        } else {
            eventLoop.execute(work)
        }
    }

    /// A turn of the loop ended: the work put off to the next one goes to `wakeForNextTurn` (it
    /// runs once the loop has polled its sockets). Returns whether there was any.
    @discardableResult
    package func tickEnded() -> Bool {
        guard !nextTurn.isEmpty, let wakeForNextTurn else { return false }
        let work = nextTurn
        nextTurn = []
        wakeForNextTurn {
            for item in work { item() }
        }
        return true
    }

    /// Replaces the policy; connections, channels and subscriptions stay as they are.
    func reload(policy: Policy) {
        self.policy = policy
        groupDirectory.clear()
        userDirectory.clear()
        for conn in connections.values { conn.identity.groups = groups(of: conn.identity) }
    }

    /// The uid of a user name, for policy rules with a `%u` segment (`user.%u.*`).
    func userID(named name: String) -> UInt32? { userDirectory.uid(named: name) }

    /// What the policy's rule for a channel's name says of its creator (LIST; readers that do
    /// not pin an owner). Imports are judged by the `mirror` rules, private channels by none.
    func standing(of name: String, creator: Identity, imported: Bool = false) -> (rule: String, standing: ChannelInfo.RuleStanding) {
        let decision = imported ? policy.feeding(name, creator, users: userID(named:)) : policy.creation(name, creator, users: userID(named:))
        guard let pattern = decision.pattern else { return ("", .unruled) }
        return (pattern.description, decision.allows ? .allowed : .notAllowed)
    }

    /// Supplementary groups of a peer, looked up only when the policy names groups.
    func groups(of identity: Identity) -> [UInt32] {
        guard policy.namesGroups else { return [] }
        return groupDirectory.groups(of: identity.uid, primary: identity.gid)
    }

    // MARK: Connections

    func connectionOpened(context: ChannelHandlerContext, identity: Identity) -> ConnectionState {
        var identity = identity
        identity.groups = groups(of: identity)
        return connections.open(context: context, identity: identity, now: uptime())
    }

    /// Charges a new connection to its user's connection quota, or ends it (QUOTA_EXCEEDED).
    /// Over the quota, a few are let in for one RING each (`OverQuotaRings`): a mapped reader
    /// redeems its ticket on a connection of its own. Called once the handler holds the
    /// connection, so that a close at once still reaches `connectionClosed`.
    func admit(_ conn: ConnectionState) {
        do throws(ChannelRefusal) {
            try accounts.charge(.connections, uid: conn.uid)
            conn.admission = .counted
        } catch {
            connections.countRefusal()
            refused(error, uid: conn.uid)
            if overQuotaRings.admit(uid: conn.uid) {
                conn.admission = .ringOnly(refusal: error.message)
                return
            }
            fail(conn, WireError(.quotaExceeded, error.message), log: false)
        }
    }

    /// Forgets a connection whose socket closed: its subscriptions end and the channels it owns
    /// close (their readers drain, then get CLOSED); everything charged for it is released.
    func connectionClosed(_ conn: ConnectionState) {
        guard connections.remove(conn) else { return }
        conn.isClosing = true
        conn.holdReleased = nil
        holds.forget(conn.id)
        syncQueuedOutput(conn, closing: true)
        readerDrained(conn)
        for sub in conn.subscriptions.values {
            detach(sub, of: conn)
        }
        conn.subscriptions = [:]
        mappedRings.closed(connection: conn.id, at: uptime())
        if let cookie = conn.socketCookie { socketDescriptors.forget(cookie) }
        for channel in registry.closeAll(ownedBy: conn.id) {
            channelClosed(channel)
        }
        for channel in privateChannels.values where channel.owner == conn.id {
            closePrivate(channel)
        }
        feederLeft(conn)
        for waiter in conn.timeoutWaits { dropTimeoutWaiter(waiter) }
        conn.timeoutWaits = []
        if let session = conn.session {
            conn.session = nil
            leave(session, conn)
        }
        switch conn.admission {
        case .counted: accounts.release(.connections, uid: conn.uid)
        case .ringOnly: overQuotaRings.release(uid: conn.uid)
        case .pending: break
        }
        accounts.release(.unfinishedFrameBytes, conn.unfinishedFrameBytes, uid: conn.uid)
        conn.unfinishedFrameBytes = 0
        starved.forget(conn)
    }

    func detach(_ sub: Subscription, of conn: ConnectionState) {
        accounts.release(.subscriptions, uid: conn.uid)
        if sub.mapped != nil { mappedRings.ended(connection: conn.id, subscription: sub.id) }
        switch sub.source {
        case .site(let channel):
            channel.removeReader(conn.id)
            releaseIfDrained(channel)
            releaseRelayIfUnused(channel)
        case .clientProcess(let channel):
            if channel.reader == conn.id { channel.reader = nil }
        case nil:
            registry.stopWaiting(for: sub.name, WaiterKey(connection: conn.id, subscription: sub.id))
        }
    }

    /// Ends the connection after a protocol violation: one ERROR frame with request id 0, then close.
    func fail(_ conn: ConnectionState, _ error: WireError, log: Bool = true) {
        guard !conn.isClosing else { return }
        if log {
            logLimiter.log(logger, .notice, kind: "protocol-violation", "closing connection after protocol violation", metadata: [
                "connection": "\(conn.id)", "uid": "\(conn.uid)", "error": "\(error)",
            ])
        }
        ServerFrame.writeError(
            requestID: CometProtocol.connectionRequestID, code: error.code, message: error.message, into: &conn.outbox)
        closeAfterFlush(conn)
    }

    /// Writes what the outbox holds, then closes the socket.
    func closeAfterFlush(_ conn: ConnectionState) {
        guard !conn.isClosing else { return }
        conn.isClosing = true
        let context = conn.context
        let out = conn.outbox
        conn.outbox = context.channel.allocator.buffer(capacity: 0)
        let channel = context.channel
        context.writeAndFlush(NIOAny(out)).whenComplete { _ in
            channel.close(promise: nil)
        }
        // A peer that does not read cannot hold the connection open.
        context.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
    }

    // MARK: Periodic work

    /// Nanoseconds on the loop's clock (monotonic uptime; virtual time in the simulator).
    func uptime() -> UInt64 { eventLoop.now.uptimeNanoseconds }

    /// Closes connections that did not finish HELLO in time or that sit idle holding nothing;
    /// summarises suppressed log lines; returns freed memory to the system after a big release.
    func sweep() {
        let now = uptime()
        let handshake = UInt64(configuration.handshakeTimeout.nanoseconds)
        let idle = UInt64(configuration.idleTimeout.nanoseconds)
        for conn in connections.values where !conn.isClosing {
            if conn.queuedOutput > 0 { syncQueuedOutput(conn) }
            if !conn.handshaken, now - conn.openedAt >= handshake {
                logLimiter.log(logger, .info, kind: "handshake-timeout", "closing connection that did not complete HELLO in time", metadata: ["uid": "\(conn.uid)"])
                fail(conn, WireError(.timedOut, "HELLO was not completed within \(configuration.handshakeTimeout.nanoseconds / 1_000_000) ms"), log: false)
            } else if conn.handshaken, conn.holdsNothing, now - conn.lastRequest >= idle {
                logLimiter.log(logger, .info, kind: "idle-timeout", "closing idle connection that holds nothing", metadata: ["uid": "\(conn.uid)"])
                fail(conn, WireError(.timedOut, "the connection held nothing and was idle for \(configuration.idleTimeout.nanoseconds / 1_000_000) ms"), log: false)
            }
        }
        logLimiter.flush(logger)
        let memory = accounts.estimatedMemory
        // Trimming a large heap stalls the loop for tens of milliseconds: only after two quiet
        // sweeps in a row (a burst that ended, not a pause between two).
        if trimmer.sweep(memory: memory) { Self.returnFreeMemory() }
    }

    /// glibc's `malloc_trim(0)`: gives freed heap memory back to the system.
    static func returnFreeMemory() {
        typealias Trim = @convention(c) (Int) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return }
        _ = unsafeBitCast(symbol, to: Trim.self)(0)
    }

    /// Logs a quota refusal (rate-limited, with the uid).
    func refused(_ refusal: ChannelRefusal, uid: UInt32) {
        logLimiter.log(logger, .notice, kind: "quota", "refused: \(refusal.message)", metadata: ["uid": "\(uid)"])
    }
}

/// A snapshot of the daemon for `STATUS=` and logs.
public struct ServerStatus: Sendable, Hashable, CustomStringConvertible {
    public var connections: Int
    public var channels: Int
    public var subscriptions: Int
    public var totalConnections: UInt64
    /// Memory the accounting attributes to clients, in bytes.
    public var estimatedMemory: Int

    public var description: String {
        "\(connections) connections, \(channels) channels, \(subscriptions) subscriptions, \(estimatedMemory >> 20) MiB accounted"
    }
}
