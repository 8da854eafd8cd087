import CometChannels
import CometState
import CometWire
import NIOCore

/// The thin NIO end of a client connection: splits bytes into frames, decodes requests and hands
/// them to the broker; reports writability and closure. Whether requests are handled now is
/// decided by one state machine, `InputFlow`; this type only carries out what it says.
///
/// A peer that pipelines requests without reading the answers is not read from while its answers
/// wait (`InputFlow.State.waitingForOutput`), so the daemon's memory for it stays bounded; a peer
/// that sends thousands of requests at once is served a share per turn of the loop, so it does
/// not delay the others.
package final class ConnectionHandler: ChannelDuplexHandler, @unchecked Sendable {  // used on its channel's loop only
    package typealias InboundIn = ByteBuffer
    package typealias OutboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private let broker: Broker
    /// Frames up to 1 MiB before HELLO (PROTOCOL.md §3), the configured maximum after it.
    private var decoder: FrameDecoder
    private var state: ConnectionState?
    /// Bytes read and not handled yet: an incomplete frame, or requests held back by the flow.
    private var pending: ByteBuffer?
    private var flow: InputFlow
    /// A connection carried over from a previous process (docs/RESTARTS.md).
    private var carried: ConnectionImage?
    /// Credentials given by whoever made the connection (the simulator), instead of SO_PEERCRED.
    private let givenIdentity: Identity?
    /// The simulator's count of bytes its socket has not taken (`ConnectionState.socketQueue`).
    private let socketQueue: (() -> Int)?

    /// A handler for a new connection, or for `image`, one carried over a restart. `identity` and
    /// `socketQueue` stand in for SO_PEERCRED and NIO's count of unwritten bytes (the simulator).
    package init(
        broker: Broker, carrying image: ConnectionImage? = nil, identity: Identity? = nil, socketQueue: (() -> Int)? = nil
    ) {
        self.socketQueue = socketQueue
        self.broker = broker
        self.decoder = FrameDecoder(maxFrameSize: CometProtocol.defaultMaxFrameSize)
        self.carried = image
        self.flow = InputFlow(adopting: image != nil)
        self.givenIdentity = identity
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { open(context) }
    }

    package func channelActive(context: ChannelHandlerContext) {
        open(context)
        context.fireChannelActive()
    }

    private func open(_ context: ChannelHandlerContext) {
        guard state == nil else { return }
        if let image = carried {
            carried = nil
            adopt(image, context)
            return
        }
        if broker.isShuttingDown {
            flow.close()
            context.close(promise: nil)
            return
        }
        let identity: Identity
        if let givenIdentity {
            identity = givenIdentity
        } else {
            // On the channel's own loop the credentials are there at once.
            let box = NIOLoopBoundBox(Identity(), eventLoop: context.eventLoop)
            PeerCredentials.of(context.channel).whenSuccess { box.value = $0.identity }
            identity = box.value
        }
        let conn = broker.connectionOpened(context: context, identity: identity)
        conn.socketQueue = socketQueue
        state = conn
        installHooks(conn, context)
        broker.admit(conn)
    }

    /// Takes over a connection of the previous process: its state, the bytes it had read and not
    /// handled, and the decoder's limit. It goes on when the broker says all are back.
    private func adopt(_ image: ConnectionImage, _ context: ChannelHandlerContext) {
        let conn = broker.adopt(image, context: context)
        state = conn
        if image.input.readableBytes > 0 {
            var input = context.channel.allocator.buffer(capacity: image.input.readableBytes)
            input.writeImmutableBuffer(image.input)
            pending = input
        }
        if conn.handshaken { decoder.maxFrameSize = broker.configuration.maxFrameSize }
        installHooks(conn, context)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        conn.afterAdoption = { [weak self] in
            guard let self else { return }
            self.perform(self.flow.adopted(), bound.value)
        }
    }

    private func installHooks(_ conn: ConnectionState, _ context: ChannelHandlerContext) {
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        conn.holdReleased = { [weak self] in
            guard let self else { return }
            self.perform(self.flow.holdReleased(), bound.value)
        }
        conn.pendingInput = { [weak self] in self?.pending }
    }

    /// Carries out what the flow decided.
    private func perform(_ actions: InputFlow.Actions, _ context: ChannelHandlerContext) {
        if actions.process, let conn = state, !conn.isClosing {
            process(context, conn)
            broker.deliverDirty()
        }
        if actions.read { context.read() }
        if actions.scheduleTurn {
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            broker.atNextTurn {
                self.perform(self.flow.nextTurn(), bound.value)
            }
        }
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let conn = state, !conn.isClosing else { return }
        var input = unwrapInboundIn(data)
        if var carried = pending {
            if flow.isHandling, let missing = decoder.bytesMissing(in: carried), missing < input.readableBytes {
                // The last read cut a frame: it takes only the bytes it lacks, and the rest of
                // this read is decoded where it lies (not copied behind it).
                var tail = input.readSlice(length: missing)!
                carried.writeBuffer(&tail)
                pending = carried
                process(context, conn)
                guard !conn.isClosing else { return }
                if var stopped = pending {
                    // Stopped before that frame was handled: the read waits behind it.
                    stopped.writeBuffer(&input)
                    pending = stopped
                    return
                }
                pending = input
                if flow.isHandling { process(context, conn) }
                return
            }
            carried.writeBuffer(&input)
            input = carried
        }
        pending = input
        if flow.isHandling { process(context, conn) }
    }

    /// Decodes and handles requests from `pending` until it holds no whole frame, until the
    /// answers waiting for this peer do not fit in its socket, until a push must wait for a
    /// reader, or until the connection has had its share of this turn of the loop; tells the flow
    /// which one stopped it.
    private func process(_ context: ChannelHandlerContext, _ conn: ConnectionState) {
        let stop = handleRequests(context, conn)
        guard !conn.isClosing else {
            flow.close()
            return
        }
        let actions = flow.processed(stop)
        conn.inputPending = flow.isStopped
        _ = broker.chargeUnfinishedFrame(pending?.readableBytes ?? 0, conn)
        perform(actions, context)
    }

    private func handleRequests(_ context: ChannelHandlerContext, _ conn: ConnectionState) -> InputFlow.Stop {
        guard var input = pending else { return .drained }
        pending = nil
        // Requests are being handled: a flush meanwhile must not close a half-closed connection.
        conn.inputPending = true
        defer {
            if input.readableBytes > 0, !conn.isClosing {
                // Keep only what is left, in a buffer of its own, not the whole read buffer.
                var rest = context.channel.allocator.buffer(capacity: input.readableBytes)
                rest.writeBuffer(&input)
                pending = rest
            }
        }
        var handled = 0
        do {
            while !conn.isClosing {
                if conn.outbox.readableBytes >= broker.configuration.outboundHighWatermark {
                    // Answers piling up: hand them to the socket; wait only if it does not take them.
                    broker.flush(conn)
                }
                if !context.channel.isWritable { return input.readableBytes > 0 ? .outputBlocked : .drained }
                if handled >= broker.configuration.requestsPerTurn { return input.readableBytes > 0 ? .turnUsed : .drained }
                let start = input.readerIndex
                guard let body = try decoder.nextFrame(from: &input) else { return .drained }
                handled += 1
                let request: Request
                do {
                    request = try Request.decode(body: body)
                } catch where !error.code.isFatal {
                    // The layout was readable up to a bad value: answer this request, keep the connection
                    // (unless it used the connection's id 0, which only fatal errors carry).
                    let id: UInt32 = body.getInteger(at: body.readerIndex + 1) ?? 0
                    guard id != CometProtocol.connectionRequestID else {
                        broker.fail(conn, WireError(.malformedFrame, "request id 0 is reserved for errors that end the connection"))
                        return .drained
                    }
                    broker.reply(error: error.code, error.message, to: id, conn)
                    continue
                }
                if request.id == CometProtocol.connectionRequestID {
                    // Id 0 names the connection itself: a request may not use it (PROTOCOL.md §4).
                    broker.fail(conn, WireError(.malformedFrame, "request id 0 is reserved for errors that end the connection"))
                    return .drained
                }
                if broker.mustHold(request, from: conn) {
                    // A reader that may hold this producer has a full queue: the push waits for it.
                    input.moveReaderIndex(to: start)
                    return .pushHeld
                }
                broker.handle(request, from: conn)
                if conn.handshaken, decoder.maxFrameSize != broker.configuration.maxFrameSize {
                    decoder.maxFrameSize = broker.configuration.maxFrameSize
                }
            }
        } catch {
            broker.fail(conn, error)
        }
        return .drained
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        // Deliver what this read produced now, before the loop polls again: one hop less latency.
        broker.deliverDirty()
        context.fireChannelReadComplete()
    }

    package func read(context: ChannelHandlerContext) {
        if flow.readRequested().read { context.read() }
    }

    package func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            if let conn = state {
                broker.syncQueuedOutput(conn)
                broker.markDirty(conn)
                broker.readerDrained(conn)
            }
            perform(flow.writable(), context)
        }
        context.fireChannelWritabilityChanged()
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event, let conn = state {
            // The peer sent all it will: answer what it asked, then close.
            conn.inputClosed = true
            broker.markDirty(conn)
        }
        context.fireUserInboundEventTriggered(event)
    }

    package func channelInactive(context: ChannelHandlerContext) {
        flow.close()
        if let conn = state { broker.connectionClosed(conn) }
        state = nil
        context.fireChannelInactive()
    }

    package func errorCaught(context: ChannelHandlerContext, error: Error) {
        broker.logger.debug("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
