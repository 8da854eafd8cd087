import CometWire
import NIOCore

/// The NIO end of a client connection: frames requests, matches answers to request ids, routes
/// events to subscriptions and holds socket reads while a subscriber is not keeping up.
/// Confined to its channel's event loop.
final class ClientHandler: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    typealias Completion = (Result<ByteBuffer, Error>) -> Void

    var context: ChannelHandlerContext?
    var decoder = FrameDecoder()
    var pendingBytes: ByteBuffer?
    private var nextRequestID: UInt32 = 1
    var pending: [UInt32: Completion] = [:]
    /// Subscriptions by the daemon's id, and by the id they were made with (the same until an
    /// automatic reconnect).
    var sinks: [UInt32: SubscriptionSink] = [:]
    var byLocalID: [UInt32: SubscriptionSink] = [:]
    /// Automatic reconnection (`Reconnection.swift`); nil: a lost connection ends everything.
    var reconnection: Reconnection?
    var touched: [SubscriptionSink] = []
    var outbound: ByteBuffer?
    private var flushScheduled = false
    var pausedSinks = 0
    var readHeld = false
    /// A mapped subscription's ring is being fetched (RING): input waits in `pendingBytes` until
    /// it is mapped, so that every later event finds it (`ClientHandler+Mapped.swift`).
    var fetchingRing = false
    /// Counts the connections this handler served (a reconnect makes another): what was begun on
    /// an earlier one does not touch the current one.
    var connections = 0
    /// The daemon's socket (RING goes on a connection of its own).
    let socketPath: String
    /// Why the connection ended, once it did.
    var failure: ConnectionError?
    /// Numbered pushes without an answer, by channel handle (`ClientHandler+Numbered.swift`).
    var ledgers: [UInt64: PushLedger] = [:]
    /// PULL events of unlimited channels this client produces, by channel handle.
    var pullSinks: [UInt64: AsyncStream<UInt64>.Continuation] = [:]

    /// Routes the pulls of `channel` to `sink` (call on the loop before the first pull can arrive).
    func addPullSink(_ channel: UInt64, _ sink: AsyncStream<UInt64>.Continuation) { pullSinks[channel] = sink }

    /// OFFER and ENDED events, for `CometClient.events`.
    let events: AsyncStream<ClientEvent>.Continuation
    let eventStream: AsyncStream<ClientEvent>

    init(socketPath: String) {
        self.socketPath = socketPath
        (eventStream, events) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        pendingBytes = nil
        connections += 1
    }

    func setMaxFrameSize(_ size: UInt32) { decoder.maxFrameSize = size }

    /// Sends a request; `completion` runs on the event loop with the OK body or the error.
    func send(_ operation: Request.Operation, completion: @escaping Completion) {
        send(completion: completion) { Request(id: $0, operation).encode(into: &$1) }
    }

    /// Sends a request that `encode` frames with the id it is given.
    func send(completion: @escaping Completion, encode: (UInt32, inout ByteBuffer) -> Void) {
        if let reconnection, reconnection.isReconnecting {
            // Sent once the connection is back, after the subscriptions are made again.
            var frame = ByteBuffer()
            encode(0, &frame)
            reconnection.deferred.append((frame, completion))
            return
        }
        sendNow(completion: completion, encode: encode)
    }

    /// Sends at once (the reconnection's own handshake goes before what waits for it).
    func sendNow(completion: @escaping Completion, encode: (UInt32, inout ByteBuffer) -> Void) {
        guard let context, failure == nil else {
            completion(.failure(failure ?? ConnectionError(.lost, "the connection to cometd is closed")))
            return
        }
        let id = nextRequestID
        nextRequestID = nextRequestID == UInt32.max ? 1 : nextRequestID + 1
        pending[id] = completion
        var buffer = outbound ?? context.channel.allocator.buffer(capacity: 4096)
        encode(id, &buffer)
        outbound = buffer
        if !flushScheduled {
            flushScheduled = true
            context.eventLoop.execute { self.flushOutbound() }
        }
    }

    private func flushOutbound() {
        flushScheduled = false
        guard let context, let buffer = outbound else { return }
        outbound = nil
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    /// Registers a subscription whose SUBSCRIBE was answered; events for it may follow at once.
    func addSink(_ sink: SubscriptionSink) {
        sinks[sink.serverID] = sink
        byLocalID[sink.id] = sink
    }

    /// The daemon's id for the subscription made as `localID`.
    func serverID(of localID: UInt32) -> UInt32? { byLocalID[localID]?.serverID }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        if var carried = pendingBytes {
            carried.writeBuffer(&input)
            input = carried
            pendingBytes = nil
        }
        if fetchingRing {
            pendingBytes = input
            return
        }
        consume(&input, context: context)
    }

    /// Decodes and routes every whole frame of `input`; keeps the rest for the next read (all of
    /// it, undecoded, from where a ring fetch begins).
    func consume(_ input: inout ByteBuffer, context: ChannelHandlerContext) {
        do {
            var last: SubscriptionSink?
            while let body = try decoder.nextFrame(from: &input) {
                // The common case first: a MESSAGE, read in place.
                if body.readableBytes >= 13, body.getInteger(at: body.readerIndex, as: UInt8.self) == Opcode.message.rawValue,
                    let subscription = body.getInteger(at: body.readerIndex + 1, as: UInt32.self),
                    let sequence = body.getInteger(at: body.readerIndex + 5, as: UInt64.self)
                {
                    if last?.serverID != subscription { last = sinks[subscription] }
                    guard let sink = last else { continue }
                    if case .mapped = sink.path {
                        leaveRing(sink)
                        guard sinks[subscription] === sink else {
                            last = nil
                            continue
                        }
                    }
                    guard sequence > sink.last else {
                        redelivered(sink, sequence)
                        continue
                    }
                    sink.last = sequence
                    if sink.batch.isEmpty { touched.append(sink) }
                    let payload = body.readableBytesView.dropFirst(13)
                    sink.batch.append(CometMessage(sequence: sequence, payload: Array(payload)))
                    continue
                }
                last = nil
                try dispatch(try ServerFrame.decode(body: body))
                if fetchingRing { break }
            }
        } catch {
            fail(ConnectionError(.protocolViolation, "cometd sent a malformed frame: \(error)"))
            context.close(promise: nil)
            return
        }
        if input.readableBytes > 0 {
            var rest = context.channel.allocator.buffer(capacity: input.readableBytes)
            rest.writeBuffer(&input)
            pendingBytes = rest
        }
    }

    private func dispatch(_ frame: ServerFrame) throws {
        switch frame {
        case .ok(let requestID, let body):
            pending.removeValue(forKey: requestID)?(.success(body))
        case .error(let requestID, let code, let message):
            if requestID == CometProtocol.connectionRequestID {
                let kind: ConnectionError.Kind = code == .unsupportedVersion ? .versionMismatch : .lost
                failure = ConnectionError(kind, "cometd closed the connection: \(code.name): \(message)")
            } else {
                pending.removeValue(forKey: requestID)?(.failure(CometError(code: code, message: message)))
            }
        case .message(let subscription, let sequence, let payload):
            guard let sink = sinks[subscription] else { return }
            if case .mapped = sink.path {
                leaveRing(sink)
                guard sinks[subscription] === sink else { return }
            }
            guard sequence > sink.last else {
                redelivered(sink, sequence)
                return
            }
            sink.last = sequence
            if sink.batch.isEmpty { touched.append(sink) }
            sink.batch.append(CometMessage(sequence: sequence, payload: Array(payload.readableBytesView)))
        case .full(let subscription, let firstAvailable):
            end(subscription, ChannelFull(channel: sinks[subscription]?.name ?? "", firstAvailable: firstAvailable))
        case .closed(let subscription, let lastSequence):
            // A normal end: the `for try await` loop ends; `info.closedAfter` says why.
            sinks[subscription]?.info.withLockedValue { $0.closedAfter = lastSequence }
            end(subscription, nil)
        case .started(let subscription, let epoch, let next, let owner):
            sinks[subscription]?.info.withLockedValue {
                $0.epoch = epoch
                $0.nextSequence = next
                $0.waiting = false
                $0.owner = owner
            }
        case .offer(let channel, let kind, let epoch, let name, let owner):
            events.yield(.offer(channel: channel, name: name, kind: kind, epoch: epoch, owner: owner))
        case .failed(let subscription, let code, let message):
            end(subscription, CometError(code: code, message: message))
        case .ended(let channel, let code, let message):
            pullSinks.removeValue(forKey: channel)?.finish()
            events.yield(.ended(channel: channel, code: code, message: message))
        case .pull(let channel, let pull):
            pullSinks[channel]?.yield(pull)
        case .reset(let subscription, let epoch):
            end(subscription, EpochChanged(channel: sinks[subscription]?.name ?? "", epoch: epoch))
        case .ringAdvanced(let subscription, let last, let ticket, let report, let held, let newest):
            ringAdvanced(subscription, last: last, ticket: ticket, report: report, held: held, newest: newest)
        case .ringDetached(let subscription, _):
            guard let sink = sinks[subscription] else { return }
            // MESSAGE frames follow from the first message not reported; those read are dropped.
            leaveRing(sink, drain: false)
        }
    }

    /// A message handed on before came again (a private channel's unacknowledged one, after a
    /// reconnect): it is not handed on twice, but acknowledged again, as it was taken before.
    private func redelivered(_ sink: SubscriptionSink, _ sequence: UInt64) {
        guard sink.again?.scope == .clientProcess else { return }
        send(.ack(subscription: sink.serverID, sequence: sequence)) { _ in }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        deliverBatches()
        context.fireChannelReadComplete()
    }

    func deliverBatches() {
        let list = touched
        touched = []
        for sink in list where !sink.batch.isEmpty {
            let batch = sink.batch
            sink.batch = []
            if sink.source.yield(contentsOf: CollectionOfOne(batch)) == .stopProducing, !sink.paused {
                sink.paused = true
                pausedSinks += 1
            }
        }
    }

    /// Ends the subscription the daemon knows as `subscription` (a mapped one after what its
    /// ring still holds for it).
    func end(_ subscription: UInt32, _ error: Error?) {
        guard let sink = sinks[subscription] else { return }
        if case .mapped = sink.path {
            pump(sink, all: true)
            guard sinks[subscription] === sink else { return }
        }
        sinks[subscription] = nil
        finish(sink, error)
    }

    func finish(_ sink: SubscriptionSink, _ error: Error?) {
        sinks[sink.serverID] = nil
        byLocalID[sink.id] = nil
        if !sink.batch.isEmpty {
            _ = sink.source.yield(contentsOf: CollectionOfOne(sink.batch))
            sink.batch = []
        }
        unpause(sink)
        if let error { sink.source.finish(error) } else { sink.source.finish() }
    }

    /// `CometSubscription.cancel()`: iteration ends now (after what was already received); the
    /// UNSUBSCRIBE follows. Returns the daemon's id for the subscription made as `localID`.
    @discardableResult
    func cancel(_ localID: UInt32) -> UInt32? {
        guard let sink = byLocalID[localID] else { return nil }
        finish(sink, nil)
        return sink.serverID
    }

    // MARK: Flow control

    func read(context: ChannelHandlerContext) {
        if pausedSinks > 0 || fetchingRing {
            readHeld = true
        } else {
            context.read()
        }
    }

    /// A subscriber wants more.
    func resume(_ localID: UInt32) {
        guard let sink = byLocalID[localID] else { return }
        unpause(sink)
        if case .mapped = sink.path {
            pump(sink)
            deliverBatches()
        }
    }

    func unpause(_ sink: SubscriptionSink) {
        guard sink.paused else { return }
        sink.paused = false
        pausedSinks -= 1
        if pausedSinks == 0, !fetchingRing, readHeld, let context {
            readHeld = false
            context.read()
        }
    }

    /// A subscriber stopped iterating: tell the daemon.
    func terminated(_ localID: UInt32) {
        guard let sink = byLocalID[localID] else { return }
        sinks[sink.serverID] = nil
        byLocalID[localID] = nil
        unpause(sink)
        send(.unsubscribe(subscription: sink.serverID)) { _ in }
    }

    // MARK: End of connection

    func channelActive(context: ChannelHandlerContext) {
        if let reconnection, reconnection.isReconnecting { reconnection.connected(self) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let error = failure ?? ConnectionError(.lost, "the connection to cometd closed")
        self.context = nil
        if let reconnection, reconnection.shouldReconnect(after: error) {
            reconnection.dropped(self, error)
        } else {
            fail(error)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if failure == nil { failure = ConnectionError(.lost, "the connection to cometd failed: \(error)") }
        context.close(promise: nil)
    }

    func fail(_ error: ConnectionError) {
        reconnection = nil
        if failure == nil { failure = error }
        events.finish()
        for sink in pullSinks.values { sink.finish() }
        pullSinks = [:]
        let error = failure!
        let waiting = pending
        pending = [:]
        for completion in waiting.values { completion(.failure(error)) }
        failNumbered(error)
        let open = byLocalID
        sinks = [:]
        byLocalID = [:]
        for sink in open.values {
            if !sink.batch.isEmpty { _ = sink.source.yield(contentsOf: CollectionOfOne(sink.batch)) }
            sink.source.finish(error)
        }
    }
}
