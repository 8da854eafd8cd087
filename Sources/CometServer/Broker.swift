import CometChannels
import CometWire
import Logging
import NIOCore

/// The daemon's state: the channel registry and every connection, confined to one event loop.
///
/// Requests come in from `ConnectionHandler`; everything written to a connection goes to its
/// outbox and leaves in one flush per delivery pass (`Broker+Delivery.swift`).
final class Broker {
    let eventLoop: EventLoop
    let configuration: ServerConfiguration
    let logger: Logger
    let registry: ChannelRegistry<ByteBuffer, WaiterKey>
    let sessions = SessionRegistry()
    /// Client-process channels by handle (handles with the top bit set).
    var privateChannels: [UInt64: PrivateChannel<ByteBuffer>] = [:]
    var nextPrivateID: UInt64 = 1
    /// External channels by (upstream, name, newest).
    var relays: [RelayKey: Relay] = [:]
    var nextRelayChannelID: UInt64 = 1
    /// Random id of this daemon, in HELLO replies: relays refuse to relay from themselves.
    let instance = UInt64.random(in: 1...UInt64.max)
    /// WAIT_TIMEOUT requests by session.
    var sessionWaiters: [UInt64: [TimeoutWaiter]] = [:]
    var connections: [UInt64: ConnectionState] = [:]
    var nextConnectionID: UInt64 = 1
    /// Connections with something to write, in the order they became so.
    var dirty: [ConnectionState] = []
    var deliveryScheduled = false
    var isShuttingDown = false
    private(set) var totalConnections: UInt64 = 0

    init(eventLoop: EventLoop, configuration: ServerConfiguration, logger: Logger) {
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.logger = logger
        self.registry = ChannelRegistry(limits: configuration.registry)
    }

    var summary: ServerStatus {
        ServerStatus(
            connections: connections.count, channels: registry.count,
            subscriptions: connections.values.reduce(0) { $0 + $1.subscriptions.count },
            totalConnections: totalConnections)
    }

    // MARK: Connections

    func connectionOpened(context: ChannelHandlerContext) -> ConnectionState {
        let state = ConnectionState(id: nextConnectionID, context: context)
        nextConnectionID += 1
        totalConnections += 1
        connections[state.id] = state
        return state
    }

    /// Forgets a connection whose socket closed: its subscriptions end and the channels it owns
    /// close (their readers drain, then get CLOSED).
    func connectionClosed(_ conn: ConnectionState) {
        guard connections.removeValue(forKey: conn.id) != nil else { return }
        conn.isClosing = true
        for sub in conn.subscriptions.values {
            detach(sub, of: conn)
        }
        conn.subscriptions = [:]
        for channel in registry.closeAll(ownedBy: conn.id) {
            wakeReaders(of: channel)
        }
        for channel in privateChannels.values where channel.owner == conn.id {
            closePrivate(channel)
        }
        if let session = conn.session {
            conn.session = nil
            leave(session, conn)
        }
    }

    func detach(_ sub: Subscription, of conn: ConnectionState) {
        switch sub.source {
        case .site(let channel):
            channel.removeReader(conn.id)
            releaseRelayIfUnused(channel)
        case .clientProcess(let channel):
            if channel.reader == conn.id { channel.reader = nil }
        case nil:
            registry.stopWaiting(for: sub.name, WaiterKey(connection: conn.id, subscription: sub.id))
        }
    }

    /// Ends the connection after a protocol violation: one ERROR frame with request id 0, then close.
    func fail(_ conn: ConnectionState, _ error: WireError) {
        guard !conn.isClosing else { return }
        logger.notice("closing connection after protocol violation", metadata: [
            "connection": "\(conn.id)", "error": "\(error)",
        ])
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
        context.writeAndFlush(NIOAny(out)).whenComplete { _ in
            context.close(promise: nil)
        }
    }

    // MARK: Shutdown

    /// Closes every channel, delivers what readers are owed, then ends every connection.
    func shutdown() -> EventLoopFuture<Void> {
        isShuttingDown = true
        for relay in Array(relays.values) { endRelay(relay) }
        for channel in registry.closeEverything() {
            wakeReaders(of: channel)
        }
        deliverDirty()
        let closes = connections.values.map { conn -> EventLoopFuture<Void> in
            ServerFrame.writeError(
                requestID: CometProtocol.connectionRequestID, code: .shuttingDown,
                message: "the daemon is shutting down", into: &conn.outbox)
            let context = conn.context
            let out = conn.outbox
            conn.outbox = context.channel.allocator.buffer(capacity: 0)
            conn.isClosing = true
            return context.writeAndFlush(NIOAny(out)).flatMap { context.close() }.recover { _ in }
        }
        return EventLoopFuture.andAllComplete(closes, on: eventLoop)
    }
}

/// A snapshot of the daemon for `STATUS=` and logs.
public struct ServerStatus: Sendable, Hashable, CustomStringConvertible {
    public var connections: Int
    public var channels: Int
    public var subscriptions: Int
    public var totalConnections: UInt64

    public var description: String {
        "\(connections) connections, \(channels) channels, \(subscriptions) subscriptions"
    }
}
