import CometChannels
import CometFederation
import CometState
import CometWire
import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's state: the channel registry and every connection, confined to one event loop.
///
/// Requests come in from `ConnectionHandler`; everything written to a connection goes to its
/// outbox and leaves in one flush per delivery pass (`Broker+Delivery.swift`). Everything a user
/// makes is charged to its uid in `accounts` and released when it goes (`Broker+Accounting.swift`).
package final class Broker: @unchecked Sendable {  // confined to its event loop: closures hop there before touching it
    let eventLoop: EventLoop
    let configuration: ServerConfiguration
    let logger: Logger
    let registry: ChannelRegistry<ByteBuffer, WaiterKey>
    let sessions = SessionRegistry()
    /// Per-uid usage against the quotas.
    let accounts: ResourceAccounts
    /// Who may do what; replaced whole by `reload(policy:)`.
    var policy: Policy
    var groupDirectory = GroupDirectory()
    var logLimiter: LogLimiter
    /// Client-process channels by handle (handles with the top bit set).
    var privateChannels: [UInt64: PrivateChannel<ByteBuffer>] = [:]
    var nextPrivateID: UInt64 = 1
    /// External channels by (upstream, name, newest).
    var relays: [RelayKey: Relay] = [:]
    var nextRelayChannelID: UInt64 = 1
    /// NATS servers in use, by URL (docs/FEDERATION.md).
    var natsLinks: [String: NATSLink] = [:]
    /// Site channels mirrored to NATS, by channel id: the link that publishes each.
    var exported: [UInt64: NATSLink] = [:]
    /// Imports readers asked for, by (server, subject, newest), and the config-declared ones by local name.
    var natsRelays: [NATSRelayKey: NATSRelay] = [:]
    var imports: [String: NATSRelay] = [:]
    /// Random id of this daemon, in HELLO replies: relays refuse to relay from themselves.
    var instance = UInt64.random(in: 1...UInt64.max)
    /// Pending WAIT_TIMEOUT requests by waiter id, and the ids waiting on each session.
    var timeoutWaiters: [UInt64: TimeoutWaiter] = [:]
    var waitersBySession: [UInt64: Set<UInt64>] = [:]
    var nextWaiterID: UInt64 = 1
    /// Sessions charged to their user's session quota.
    var chargedSessions: Set<UInt64> = []
    /// Connections whose delivery waits for their user's queued output to go down, by uid.
    var starvedByUser: [UInt32: Set<UInt64>] = [:]
    var connections: [UInt64: ConnectionState] = [:]
    var nextConnectionID: UInt64 = 1
    /// Connections with something to write, in the order they became so.
    var dirty: [ConnectionState] = []
    var deliveryScheduled = false
    var isShuttingDown = false
    var totalConnections: UInt64 = 0
    /// Connections refused at once (over a quota or limit).
    var refusedConnections: UInt64 = 0
    /// When the broker started (uptime nanoseconds).
    let startedAt: UInt64
    /// Estimated memory when the allocator last returned free memory to the system.
    var memoryAtLastTrim = 0
    /// Requests handled and messages pushed since the last sweep (trimming waits for quiet).
    var requestsSinceSweep = 0
    var quietSweeps = 0
    /// Bytes handed to sockets so far (delivery passes measure their share with it).
    var bytesWritten = 0
    var sweeper: RepeatedTask?
    /// Which producers wait for which readers (`Flow/ProducerHolds.swift`).
    let holds: ProducerHolds
    /// While a previous process's state is being put back: its site channels by handle, and the
    /// connections whose sockets are not adopted yet (`Restarts/Broker+Image.swift`).
    var restoredSites: [UInt64: SiteChannel<ByteBuffer>] = [:]
    var adopting: [UInt64: ConnectionImage] = [:]
    /// Storage that outlives a crash (docs/RESTARTS.md); nil without a file-descriptor store.
    var stateStore: StateStore?
    var storedNamesToForget: [String] = []

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
            totalConnections: totalConnections, estimatedMemory: accounts.estimatedMemory)
    }

    /// Starts the periodic sweep: handshake and idle timeouts, log summaries, returning memory.
    package func start() {
        let period = TimeAmount.nanoseconds(
            max(TimeAmount.milliseconds(50).nanoseconds,
                min(TimeAmount.seconds(1).nanoseconds, configuration.handshakeTimeout.nanoseconds / 4, configuration.idleTimeout.nanoseconds / 4)))
        sweeper = eventLoop.scheduleRepeatedTask(initialDelay: period, delay: period) { [weak self] _ in
            self?.sweep()
        }
        startFederation()
    }

    /// Replaces the policy; connections, channels and subscriptions stay as they are.
    func reload(policy: Policy) {
        self.policy = policy
        groupDirectory.clear()
        for conn in connections.values { conn.identity.groups = groups(of: conn.identity) }
    }

    /// Supplementary groups of a peer, looked up only when the policy names groups.
    func groups(of identity: Identity) -> [UInt32] {
        guard policy.namesGroups else { return [] }
        return groupDirectory.groups(of: identity.uid, primary: identity.gid)
    }

    // MARK: Connections

    func connectionOpened(context: ChannelHandlerContext, identity: Identity) -> ConnectionState {
        let state = ConnectionState(id: nextConnectionID, context: context, now: uptime())
        nextConnectionID += 1
        totalConnections += 1
        var identity = identity
        identity.groups = groups(of: identity)
        state.identity = identity
        connections[state.id] = state
        return state
    }

    /// Charges a new connection to its user's connection quota, or ends it (QUOTA_EXCEEDED).
    /// Called once the handler holds the connection, so that a close at once still reaches
    /// `connectionClosed`.
    func admit(_ conn: ConnectionState) {
        do throws(ChannelRefusal) {
            try accounts.charge(.connections, uid: conn.uid)
            conn.counted = true
        } catch {
            refusedConnections += 1
            refused(error, uid: conn.uid)
            fail(conn, WireError(.quotaExceeded, error.message), log: false)
        }
    }

    /// Forgets a connection whose socket closed: its subscriptions end and the channels it owns
    /// close (their readers drain, then get CLOSED); everything charged for it is released.
    func connectionClosed(_ conn: ConnectionState) {
        guard connections.removeValue(forKey: conn.id) != nil else { return }
        conn.isClosing = true
        conn.holdReleased = nil
        holds.forget(conn.id)
        syncQueuedOutput(conn, closing: true)
        readerDrained(conn)
        for sub in conn.subscriptions.values {
            detach(sub, of: conn)
        }
        conn.subscriptions = [:]
        for channel in registry.closeAll(ownedBy: conn.id) {
            channelClosed(channel)
        }
        for channel in privateChannels.values where channel.owner == conn.id {
            closePrivate(channel)
        }
        for waiter in conn.timeoutWaits { dropTimeoutWaiter(waiter) }
        conn.timeoutWaits = []
        if let session = conn.session {
            conn.session = nil
            leave(session, conn)
        }
        if conn.counted { accounts.release(.connections, uid: conn.uid) }
        accounts.release(.unfinishedFrameBytes, conn.unfinishedFrameBytes, uid: conn.uid)
        conn.unfinishedFrameBytes = 0
        if conn.starved { starvedByUser[conn.uid]?.remove(conn.id) }
    }

    func detach(_ sub: Subscription, of conn: ConnectionState) {
        accounts.release(.subscriptions, uid: conn.uid)
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
        quietSweeps = requestsSinceSweep < 1000 ? quietSweeps + 1 : 0
        requestsSinceSweep = 0
        if memoryAtLastTrim - memory > 16 << 20, quietSweeps >= 2 {
            Self.returnFreeMemory()
            memoryAtLastTrim = memory
        } else if memory > memoryAtLastTrim {
            memoryAtLastTrim = memory
        }
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
