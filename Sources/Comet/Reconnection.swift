import CometWire
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// How a client reconnects by itself when its connection to cometd is lost (a crash or a
/// restart of the daemon without its connections; docs/RESTARTS.md): attempts with a delay that
/// doubles from `initialDelay` up to `maxDelay`, for at most `giveUpAfter`.
public struct ReconnectPolicy: Sendable, Hashable {
    public var initialDelay: TimeAmount
    public var maxDelay: TimeAmount
    public var giveUpAfter: TimeAmount

    public init(initialDelay: TimeAmount = .milliseconds(20), maxDelay: TimeAmount = .seconds(2), giveUpAfter: TimeAmount = .seconds(60)) {
        self.initialDelay = initialDelay
        self.maxDelay = maxDelay
        self.giveUpAfter = giveUpAfter
    }

    public static let `default` = ReconnectPolicy()
}

/// A client's automatic reconnection, on its connection's event loop. When the connection is
/// lost, requests in flight fail with `ConnectionError.lost` (they may or may not have been
/// applied), except numbered pushes, which wait; requests made meanwhile wait. Once connected
/// again: HELLO, RESUME of the session (else the new session stands), ADOPT of every channel
/// this client produces (numbering goes on; `ClientEvent.adopted` says where), each followed by
/// that channel's pushes without an answer, sent again with their numbers (the daemon skips
/// those it has), every subscription made again from just after its last message under its
/// epoch (private ones from the first unacknowledged message; what was already handed on is
/// dropped), then what waited.
final class Reconnection: @unchecked Sendable {  // confined to the connection's event loop
    let policy: ReconnectPolicy
    let path: String
    let eventLoop: EventLoop
    let server: NIOLockedValueBox<HelloReply>
    /// Channels this client produces: handle → producer token.
    var producers: [UInt64: (high: UInt64, low: UInt64)] = [:]
    private(set) var isReconnecting = false
    var deferred: [(frame: ByteBuffer, completion: ClientHandler.Completion)] = []
    private var deadline = NIODeadline.distantFuture
    private var delay: TimeAmount = .zero
    var closedByUser = false
    /// The connection now (a new one after each reconnect).
    let channel: NIOLockedValueBox<Channel?>

    init(policy: ReconnectPolicy, path: String, eventLoop: EventLoop, server: NIOLockedValueBox<HelloReply>, channel: NIOLockedValueBox<Channel?>) {
        self.policy = policy
        self.path = path
        self.eventLoop = eventLoop
        self.server = server
        self.channel = channel
    }

    func shouldReconnect(after error: ConnectionError) -> Bool {
        !closedByUser && error.kind != .versionMismatch && error.kind != .protocolViolation
    }

    /// The connection is gone: fail what was in flight, keep the subscriptions, try again.
    func dropped(_ handler: ClientHandler, _ error: ConnectionError) {
        isReconnecting = true
        deadline = .now() + policy.giveUpAfter
        delay = policy.initialDelay
        handler.failure = nil
        // Frames laid out for the old connection are void with it (their requests fail below).
        handler.outbound = nil
        let inFlight = handler.pending
        handler.pending = [:]
        let lost = ConnectionError(.lost, "the connection to cometd was lost (\(error.message)); reconnecting: this request may or may not have been applied")
        for completion in inFlight.values { completion(.failure(lost)) }
        // The daemon's subscription ids are void; sinks wait under their own. A ring's mapping
        // goes: a subscription is made again from just after its last message.
        handler.sinks = [:]
        handler.fetchingRing = false
        for sink in handler.byLocalID.values {
            if case .mapped = sink.path {
                sink.path = .socket
                sink.info.withLockedValue { $0.mapped = false }
            }
            guard !sink.batch.isEmpty else { continue }
            _ = sink.source.yield(contentsOf: CollectionOfOne(sink.batch))
            sink.batch = []
        }
        // Pull streams stay: the daemon pulls again once the channel is taken back.
        attempt(handler)
    }

    private func attempt(_ handler: ClientHandler) {
        eventLoop.scheduleTask(in: delay) { [self] in
            guard isReconnecting, !closedByUser else { return }
            ClientBootstrap(group: eventLoop)
                .channelOption(ChannelOptions.allowRemoteHalfClosure, value: false)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler) }
                }
                .connect(unixDomainSocketPath: path)
                .whenComplete { [self] result in
                    switch result {
                    case .success(let channel):
                        self.channel.withLockedValue { $0 = channel }
                    case .failure(let error):
                        guard NIODeadline.now() < deadline, !closedByUser else {
                            giveUp(handler, "cometd could not be reached again at \(path) within \(policy.giveUpAfter.nanoseconds / 1_000_000_000) s: \(error)")
                            return
                        }
                        delay = .nanoseconds(min(delay.nanoseconds * 2, policy.maxDelay.nanoseconds))
                        attempt(handler)
                    }
                }
        }
    }

    func giveUp(_ handler: ClientHandler, _ why: String) {
        isReconnecting = false
        let waiting = deferred
        deferred = []
        let error = ConnectionError(.lost, why)
        handler.fail(error)
        for (_, completion) in waiting { completion(.failure(error)) }
    }

    /// Connected again: the handshake, then everything the client had, then what waited.
    func connected(_ handler: ClientHandler) {
        let previous = server.withLockedValue { $0 }
        handler.sendNow(completion: { [self] result in
            guard case .success(var body) = result, let hello = try? HelloReply(from: &body) else {
                handler.context?.close(promise: nil)
                return
            }
            handler.decoder.maxFrameSize = hello.maxFrameSize
            handler.sendNow(completion: { [self] result in
                var current = hello
                var resumed = false
                if case .success = result {
                    current.sessionID = previous.sessionID
                    current.tokenHigh = previous.tokenHigh
                    current.tokenLow = previous.tokenLow
                    resumed = true
                }
                server.withLockedValue { $0 = current }
                restore(handler, resumed: resumed)
            }) { Request(id: $0, .resume(session: previous.sessionID, tokenHigh: previous.tokenHigh, tokenLow: previous.tokenLow)).encode(into: &$1) }
        }) { Request(id: $0, .hello(versions: [CometProtocol.version])).encode(into: &$1) }
    }

    private func restore(_ handler: ClientHandler, resumed: Bool) {
        if !server.withLockedValue({ $0 }).servesNumberedPushes {
            handler.failNumbered(ConnectionError(.lost, "the daemon came back without numbered pushes: these pushes may or may not have been applied"))
        }
        for (id, token) in producers.sorted(by: { $0.key < $1.key }) {
            handler.sendNow(completion: { [self] result in
                switch result {
                case .success(var body):
                    if let reply = try? AdoptReply(from: &body) {
                        handler.events.yield(.adopted(channel: id, lastSequence: reply.lastSequence))
                    }
                case .failure(let error):
                    producers[id] = nil
                    let refusal = error as? CometError
                    handler.events.yield(.ended(
                        channel: id, code: refusal?.code ?? .noSuchChannel,
                        message: "the channel could not be taken back after a reconnect: \(error)"))
                }
            }) { Request(id: $0, .adopt(channel: id, tokenHigh: token.high, tokenLow: token.low)).encode(into: &$1) }
            // What was in flight goes again, in order and before anything new: the daemon skips
            // what it has and answers each with the sequence numbers it got.
            handler.resendNumbered(id)
        }
        handler.failNumbered(except: Set(producers.keys), ConnectionError(.lost, "the channel is no longer this client's: this push may or may not have been applied"))
        for sink in handler.byLocalID.values.sorted(by: { $0.id < $1.id }) {
            guard let again = sink.again else {
                handler.finish(sink, ConnectionError(.lost, "the connection to cometd was lost; external subscriptions are not made again"))
                continue
            }
            let info = sink.info.withLockedValue { $0 }
            let operation: Request.Operation
            let mapped = again.mapped && server.withLockedValue({ $0 }).servesMappedRings
            let returning = mapped && server.withLockedValue({ $0 }).returnsToRings
            if again.scope == .clientProcess {
                operation = .subscribe(name: sink.name, position: .next, epoch: 0, wait: false, scope: .clientProcess, owner: again.owner)
            } else if info.waiting && sink.last == 0 {
                operation = .subscribe(
                    name: sink.name, position: .next, epoch: 0, wait: again.wait, scope: .site, owner: again.owner, mapped: mapped,
                    returning: returning)
            } else {
                let next = sink.last > 0 ? sink.last + 1 : info.nextSequence
                operation = .subscribe(
                    name: sink.name, position: .from(max(1, next)), epoch: info.epoch, wait: false, scope: .site, owner: again.owner,
                    mapped: mapped, returning: returning)
            }
            handler.sendNow(completion: { result in
                switch result {
                case .success(var body):
                    guard let reply = try? SubscribeReply(from: &body), handler.byLocalID[sink.id] === sink else { return }
                    sink.serverID = reply.subscription
                    sink.returnsToRing = returning
                    if mapped {
                        sink.path = .mapped(MappedReading())
                        if reply.nextSequence > 0 { sink.last = max(sink.last, reply.nextSequence - 1) }
                    }
                    handler.sinks[reply.subscription] = sink
                    sink.info.withLockedValue {
                        $0.waiting = reply.waiting
                        if !reply.waiting { $0.epoch = reply.epoch }
                    }
                case .failure(let error):
                    guard handler.byLocalID[sink.id] === sink else { return }
                    if let refusal = error as? CometError, refusal.code == .epochMismatch {
                        handler.finish(sink, EpochChanged(channel: sink.name, epoch: 0))
                    } else {
                        handler.finish(sink, error)
                    }
                }
            }) { Request(id: $0, operation).encode(into: &$1) }
        }
        isReconnecting = false
        let waiting = deferred
        deferred = []
        for (frame, completion) in waiting {
            handler.sendNow(completion: completion) { id, out in
                var frame = frame
                // The frame was laid out with request id 0: the id sits after the length and opcode.
                frame.setInteger(id, at: frame.readerIndex + 5)
                out.writeBuffer(&frame)
            }
        }
        handler.events.yield(.reconnected(session: server.withLockedValue { $0 }.credentials, resumed: resumed))
    }
}

extension HelloReply {
    var credentials: SessionCredentials { SessionCredentials(id: sessionID, tokenHigh: tokenHigh, tokenLow: tokenLow) }
}
