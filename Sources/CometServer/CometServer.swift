import CometChannels
import CometWire
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Serves comet's protocol on Unix stream sockets.
///
/// All connections and channels live on one event loop, so the broker needs no locks; the
/// listening sockets are either bound here or adopted from the service manager.
public final class CometServer: @unchecked Sendable {
    public let configuration: ServerConfiguration
    public let eventLoop: EventLoop
    let broker: Broker
    let logger: Logger
    private var listeners: [Channel] = []  // touched only on `eventLoop`
    /// The listening channels (on `eventLoop` only).
    var listenerChannels: [Channel] { listeners }

    /// Every connection keeps its receive buffer between reads: it starts small, so that an idle
    /// subscriber costs little, and grows to 64 KiB for a busy producer (256 KiB measured no
    /// faster on W1 and would let many connections that were busy once hold four times more).
    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 64 << 10)

    /// - Parameter eventLoop: the loop every connection and channel of this server lives on.
    /// - Parameter ticks: the observer given to `eventLoop`'s group as its metrics delegate, if
    ///   any: with it, a connection's next turn comes after the loop polled its sockets (without
    ///   it, right after the tasks before it).
    public init(configuration: ServerConfiguration = ServerConfiguration(), eventLoop: EventLoop, logger: Logger, ticks: LoopTicks? = nil) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
        self.broker = Broker(eventLoop: eventLoop, configuration: configuration, logger: logger)
        if let ticks {
            // Set on the loop, where every tick reads it. Until the waker's pipe is watched (or if
            // it cannot be made), next-turn work is queued at once.
            let broker = self.broker
            eventLoop.execute {
                ticks.observe { broker.tickEnded() }
                LoopWaker.make(on: eventLoop) { waker in broker.wakeForNextTurn = { waker.wake(then: $0) } }
            }
        }
        eventLoop.execute { [broker] in broker.start() }
    }

    /// Replaces the policy (e.g. on SIGHUP); nobody is disconnected.
    public func reload(policy: Policy) async throws {
        try await eventLoop.submit { self.broker.reload(policy: policy) }.get()
    }

    private var bootstrap: ServerBootstrap {
        let broker = self.broker
        let watermark = ChannelOptions.Types.WriteBufferWaterMark(
            low: configuration.outboundLowWatermark, high: configuration.outboundHighWatermark)
        let logger = self.logger
        return ServerBootstrap(group: eventLoop)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Out of file descriptors: stop accepting for a moment instead of spinning,
                    // keep serving the clients already connected, and say so once per interval.
                    try channel.pipeline.syncOperations.addHandler(AcceptPause(logger: logger))
                }
            }
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: watermark)
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 16)
            .childChannelOption(ChannelOptions.recvAllocator, value: Self.receiveBuffers)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ConnectionHandler(broker: broker))
                }
            }
    }

    /// Binds a new listening socket at `path` (the caller handles stale files).
    public func bind(unixPath path: String) async throws {
        let channel = try await bootstrap.bind(unixDomainSocketPath: path).get()
        try await add(channel)
        logger.info("listening", metadata: ["socket": "\(path)"])
    }

    /// Adopts a listening socket that is already bound, e.g. one passed by systemd.
    public func adopt(descriptor: CInt) async throws {
        let channel = try await bootstrap.withBoundSocket(descriptor).get()
        try await add(channel)
        logger.info("listening on inherited socket", metadata: ["fd": "\(descriptor)"])
    }

    private func add(_ channel: Channel) async throws {
        try await eventLoop.submit { self.listeners.append(channel) }.get()
    }

    /// A snapshot of connections and channels.
    public func status() async throws -> ServerStatus {
        try await eventLoop.submit { self.broker.summary }.get()
    }

    /// Stops accepting, closes every channel (readers get what is buffered, then CLOSED, within
    /// `configuration.shutdownDrain`), sends SHUTTING_DOWN to every client and closes the connections.
    public func shutdown() async {
        let listeners = (try? await eventLoop.submit { () -> [Channel] in
            defer { self.listeners = [] }
            return self.listeners
        }.get()) ?? []
        for listener in listeners { try? await listener.close() }
        try? await eventLoop.flatSubmit { self.broker.shutdown(drain: self.configuration.shutdownDrain) }.get()
    }
}

/// When accepting fails for lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), stops
/// accepting for a moment instead of spinning on the pending connection, keeps serving the
/// clients already connected, and says so at most once per ten seconds, with a count.
final class AcceptPause: ChannelInboundHandler, @unchecked Sendable {  // used on its channel's loop only
    typealias InboundIn = Channel

    static let pause: TimeAmount = .milliseconds(250)
    private let logger: Logger
    private var limiter = LogLimiter(burst: 1, interval: .seconds(10))
    private var paused = false

    init(logger: Logger) { self.logger = logger }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard let io = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(io.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        limiter.log(logger, .warning, kind: "accept", "cannot accept connections; pausing accept, serving the clients already connected", metadata: ["error": "\(error)"])
        guard !paused else { return }
        paused = true
        let channel = context.channel
        channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in
            channel.eventLoop.scheduleTask(in: Self.pause) { [weak self] in
                self?.paused = false
                channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
            }
        }
    }
}
