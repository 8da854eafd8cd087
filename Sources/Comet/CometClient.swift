import CometWire
import FoundationEssentials
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A connection to cometd.
///
/// Thread-safe: every method may be called from any task; requests are pipelined on one socket
/// and answered in order.
public final class CometClient: Sendable {
    /// What the daemon said in the handshake: protocol version, limits, session id (after an
    /// automatic reconnect, the latest handshake's, with the session resumed if it could be).
    public var server: HelloReply { serverBox.withLockedValue { $0 } }
    private let serverBox: NIOLockedValueBox<HelloReply>
    /// The path this client connected to.
    public let socketPath: String
    /// The connection now (another one after an automatic reconnect).
    private let channelBox: NIOLockedValueBox<Channel?>
    /// The loop the connection lives on (every reconnection stays on it).
    let eventLoop: EventLoop
    let handler: ClientHandler  // touched only on eventLoop

    private init(channel: Channel, handler: ClientHandler, server: HelloReply, socketPath: String) {
        self.channelBox = NIOLockedValueBox(channel)
        self.eventLoop = channel.eventLoop
        self.handler = handler
        self.serverBox = NIOLockedValueBox(server)
        self.socketPath = socketPath
    }

    /// The socket path used when none is given (see `CometProtocol.defaultSocketPath`).
    public static var defaultSocketPath: String? {
        CometProtocol.defaultSocketPath(environment: ProcessInfo.processInfo.environment, isRoot: geteuid() == 0)
    }

    /// Connects and performs the handshake; with `resuming`, also takes that session back
    /// (its private channels are then offered again through `events`).
    /// - Parameter reconnect: reconnect by itself when the connection is lost (a crash of the
    ///   daemon), resuming the session, every subscription and every channel this client
    ///   produces (`ReconnectPolicy`; docs/RESTARTS.md). Off by default.
    /// - Throws: `ConnectionError` (`.unreachable` when no daemon answers, `.versionMismatch`);
    ///   `CometError` with `.noSuchSession`, `.badToken` or `.wrongUser` when the resume is refused.
    public static func connect(
        to socketPath: String? = nil, resuming: SessionCredentials? = nil, reconnect: ReconnectPolicy? = nil,
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> CometClient {
        guard let path = socketPath ?? defaultSocketPath else {
            throw ConnectionError(.unreachable, "no socket path: set COMET_SOCKET or XDG_RUNTIME_DIR, or name one")
        }
        let handler = ClientHandler(socketPath: path)
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelOption(ChannelOptions.allowRemoteHalfClosure, value: false)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
                }
                .connect(unixDomainSocketPath: path).get()
        } catch {
            throw ConnectionError(.unreachable, "no cometd answers at \(path): \(Self.plainWords(error))")
        }
        let client = CometClient(channel: channel, handler: handler, server: HelloReply(
            version: 0, maxFrameSize: 0, maxChannelSize: 0, maxNameLength: 0, sessionID: 0), socketPath: path)
        var hello: HelloReply
        do {
            hello = try await client.request(.hello(versions: [CometProtocol.version])) { try HelloReply(from: &$0) }
            if let resuming {
                _ = try await client.request(.resume(session: resuming.id, tokenHigh: resuming.tokenHigh, tokenLow: resuming.tokenLow)) {
                    try ResumeReply(from: &$0).session
                }
                hello.sessionID = resuming.id
                hello.tokenHigh = resuming.tokenHigh
                hello.tokenLow = resuming.tokenLow
            }
        } catch {
            try? await channel.close()
            throw error
        }
        let maxFrameSize = hello.maxFrameSize
        let connected = CometClient(channel: channel, handler: handler, server: hello, socketPath: path)
        try await channel.eventLoop.submit {
            handler.setMaxFrameSize(maxFrameSize)
            if let reconnect {
                handler.reconnection = Reconnection(
                    policy: reconnect, path: path, eventLoop: channel.eventLoop, server: connected.serverBox, channel: connected.channelBox)
            }
        }.get()
        return connected
    }

    /// Completes when this connection closes (the daemon went, or `close()`). With automatic
    /// reconnection it is the connection of the moment: a reconnect makes another one.
    public var closeFuture: EventLoopFuture<Void> {
        channelBox.withLockedValue { $0 }?.closeFuture ?? eventLoop.makeSucceededVoidFuture()
    }

    /// An error of connect(2) as a person reads it ("No such file or directory").
    static func plainWords(_ error: Error) -> String {
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        if let socket = error as? SocketAddressError, case .unixDomainSocketPathTooLong = socket {
            return "the socket path is too long"
        }
        return "\(error)"
    }

    /// Closes the connection (and stops reconnecting). Channels this client created close; its
    /// subscriptions end.
    public func close() async {
        let handler = self.handler
        let current: Channel?? = try? await eventLoop.submit { () -> Channel? in
            if let reconnection = handler.reconnection {
                reconnection.closedByUser = true
                if reconnection.isReconnecting { reconnection.giveUp(handler, "the client closed the connection") }
            }
            return handler.context?.channel
        }.get()
        if let channel = current ?? nil { try? await channel.close() }
    }

    /// Remembers a channel this client produces, so that a reconnect takes it back (ADOPT).
    func produces(_ channel: UInt64, token: (high: UInt64, low: UInt64)) {
        let handler = self.handler
        eventLoop.execute { handler.reconnection?.producers[channel] = token }
    }

    func stopsProducing(_ channel: UInt64) {
        let handler = self.handler
        eventLoop.execute { handler.reconnection?.producers[channel] = nil }
    }

    // MARK: Requests

    /// Sends a request from any task and waits for its answer: one hop to the event loop (the
    /// completion resumes the caller directly, without a future's own hop to register on it).
    func request<T: Sendable>(_ operation: Request.Operation, _ decode: @escaping @Sendable (inout ByteBuffer) throws -> T) async throws -> T {
        let handler = self.handler
        return try await withUnsafeThrowingContinuation { continuation in
            eventLoop.execute { handler.send(operation, completion: Self.resuming(continuation, decode)) }
        }
    }

    /// A completion that decodes the OK body and hands the outcome to `deliver`.
    static func decoding<T: Sendable>(
        _ decode: @escaping @Sendable (inout ByteBuffer) throws -> T, into deliver: @escaping (Result<T, Error>) -> Void
    ) -> ClientHandler.Completion {
        { result in deliver(result.flatMap { body in var body = body; return Result { try decode(&body) } }) }
    }

    /// A completion that decodes the OK body into `continuation`, or throws the error there.
    static func resuming<T: Sendable>(
        _ continuation: UnsafeContinuation<T, Error>, _ decode: @escaping @Sendable (inout ByteBuffer) throws -> T
    ) -> ClientHandler.Completion {
        decoding(decode) { continuation.resume(with: $0) }
    }

    func send<T: Sendable>(_ operation: Request.Operation, promise: EventLoopPromise<T>, _ decode: @escaping @Sendable (inout ByteBuffer) throws -> T) {
        let handler = self.handler
        eventLoop.execute { handler.send(operation, completion: Self.fulfilling(promise, decode)) }
    }

    /// A completion that decodes the OK body into `promise`, or fails it.
    static func fulfilling<T: Sendable>(
        _ promise: EventLoopPromise<T>, _ decode: @escaping @Sendable (inout ByteBuffer) throws -> T
    ) -> ClientHandler.Completion {
        decoding(decode) { promise.completeWith($0) }
    }

    /// Whether pushes carry producer numbers (the daemon serves PUSH_NUMBERED): a reconnect then
    /// sends again what had no answer, and the daemon applies each message once.
    var numbersPushes: Bool { server.servesNumberedPushes }

    /// A numbered push of `count` messages laid out in `messages`, from any task.
    func pushNumbered(channel: UInt64, count: UInt32, messages: ByteBuffer) async throws -> PushReply {
        let handler = self.handler
        return try await withUnsafeThrowingContinuation { continuation in
            eventLoop.execute {
                handler.sendNumbered(
                    channel: channel, count: count, messages: messages, completion: Self.resuming(continuation) { try PushReply(from: &$0) })
            }
        }
    }

    /// A numbered push from any task, its answer decoded into `promise` (as `send`).
    func sendNumbered<T: Sendable>(
        channel: UInt64, count: UInt32, messages: ByteBuffer, promise: EventLoopPromise<T>,
        _ decode: @escaping @Sendable (inout ByteBuffer) throws -> T
    ) {
        let handler = self.handler
        eventLoop.execute {
            handler.sendNumbered(channel: channel, count: count, messages: messages, completion: Self.fulfilling(promise, decode))
        }
    }

    /// A numbered push from the event loop (see `PublishQueue`).
    func handlerSendNumbered(channel: UInt64, count: UInt32, messages: ByteBuffer, completion: @escaping ClientHandler.Completion) {
        handler.sendNumbered(channel: channel, count: count, messages: messages, completion: completion)
    }

    /// Whether the client is still connected or reconnecting (it has not given up).
    func reconnects() async -> Bool {
        let handler = self.handler
        return (try? await eventLoop.submit { handler.reconnection != nil && handler.failure == nil }.get()) ?? false
    }

    func forgetLedger(_ channel: UInt64) {
        let handler = self.handler
        eventLoop.execute { handler.forgetLedger(channel) }
    }

    /// Sends a pre-framed request from the event loop (see `PublishQueue`).
    func handlerSend(completion: @escaping ClientHandler.Completion, encode: (UInt32, inout ByteBuffer) -> Void) {
        handler.send(completion: completion, encode: encode)
    }

    /// This client's session: `id` is what producers address private channels to; the token
    /// resumes it from a new connection (`connect(resuming:)`).
    public var session: SessionCredentials {
        SessionCredentials(id: server.sessionID, tokenHigh: server.tokenHigh, tokenLow: server.tokenLow)
    }

    /// Offers of private channels for this session, and ends of channels this client produces.
    /// Finishes when the connection ends. Iterate it from one task.
    public var events: AsyncStream<ClientEvent> { handler.eventStream }

    /// Creates a private (client-process) channel addressed to session `session` (Eliom's default
    /// scope). Only a connection of that session can read it, once; it keeps messages until they
    /// are acknowledged, at most `size` (default 1000): one more overflows it (`CometError`
    /// `.channelFull` on the push, `ChannelFull` for the reader).
    public func createPrivate(_ name: String, for session: UInt64, size: Int? = nil) async throws -> ChannelProducer {
        let reply = try await request(.createPrivate(name: name, kind: .private, size: UInt32(clamping: size ?? 0), session: session)) {
            try CreateReply(from: &$0)
        }
        produces(reply.channel, token: (reply.tokenHigh, reply.tokenLow))
        return ChannelProducer(client: self, name: name, id: reply.channel, epoch: reply.epoch, token: (reply.tokenHigh, reply.tokenLow))
    }

    /// The live sessions this user may see (its own; root: all), never their tokens. Pages
    /// through SESSIONS_FROM when the daemon cuts the answer.
    public func sessions() async throws -> [SessionInfo] {
        var all: [SessionInfo] = []
        var page = try await request(.sessions) { try SessionsReply(from: &$0) }
        all += page.sessions
        while page.more, let last = page.sessions.last {
            page = try await request(.sessionsFrom(session: last.id)) { try SessionsReply(from: &$0) }
            all += page.sessions
        }
        return all
    }

    /// Registers a pull sink on the handler; call only on the event loop.
    var pullRegistrar: @Sendable (UInt64, AsyncStream<UInt64>.Continuation) -> Void {
        let handler = self.handler
        return { handler.addPullSink($0, $1) }
    }

    /// What the daemon is doing: totals, counters of every site channel, usage against the
    /// quotas of this user (root: of every user).
    public func stats() async throws -> StatsReply {
        try await request(.stats) { try StatsReply(from: &$0) }
    }

    /// Round trip to the daemon.
    public func ping() async throws {
        try await request(.ping) { _ in () }
    }

    /// The live channels, with their sizes, fill, readers and owners. Pages through LIST_FROM
    /// when the daemon cuts the answer to fit a frame.
    public func channels() async throws -> [ChannelInfo] {
        var all: [ChannelInfo] = []
        var page = try await request(.list) { try ListReply(from: &$0) }
        all += page.channels
        while page.more, let last = page.channels.last {
            page = try await request(.listFrom(name: last.name, scope: last.scope)) { try ListReply(from: &$0) }
            all += page.channels
        }
        return all
    }

    /// Creates a site-scope channel that this connection owns (Eliom's `create ~scope:site`).
    ///
    /// - Parameters:
    ///   - size: ring size in messages; `nil` for the daemon's default (1000).
    /// - Throws: `CometError` with `.channelExists`, `.invalidName`, `.invalidArgument`, `.limitExceeded`.
    public func create(_ name: String, size: Int? = nil) async throws -> ChannelProducer {
        let reply = try await request(.create(name: name, kind: .buffered, size: UInt32(clamping: size ?? 0))) {
            try CreateReply(from: &$0)
        }
        produces(reply.channel, token: (reply.tokenHigh, reply.tokenLow))
        return ChannelProducer(client: self, name: name, id: reply.channel, epoch: reply.epoch, token: (reply.tokenHigh, reply.tokenLow))
    }

    /// Creates a newest channel (Eliom's `create_newest`): site scope, only the latest message is
    /// kept; a subscriber gets the current value at once, then each newer one, skipping values it
    /// was too slow for (sequence numbers then jump), and never gets `ChannelFull`.
    public func createNewest(_ name: String) async throws -> ChannelProducer {
        let reply = try await request(.create(name: name, kind: .newest, size: 1)) { try CreateReply(from: &$0) }
        produces(reply.channel, token: (reply.tokenHigh, reply.tokenLow))
        return ChannelProducer(client: self, name: name, id: reply.channel, epoch: reply.epoch, token: (reply.tokenHigh, reply.tokenLow))
    }


}
