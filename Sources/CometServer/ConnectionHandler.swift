import CometChannels
import CometState
import CometWire
import NIOCore

/// The thin NIO end of a client connection: splits bytes into frames, decodes requests and hands
/// them to the broker; reports writability and closure. Holds no protocol state of its own.
///
/// It also stops reading from a peer whose answers are piling up unread (the socket is not
/// writable): a client that pipelines requests without reading replies is slowed down, and the
/// daemon's memory for it stays bounded.
final class ConnectionHandler: ChannelDuplexHandler, @unchecked Sendable {  // used on its channel's loop only
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let broker: Broker
    /// Frames up to 1 MiB before HELLO (PROTOCOL.md §3), the configured maximum after it.
    private var decoder: FrameDecoder
    private var state: ConnectionState?
    /// Bytes of an incomplete frame carried over to the next read.
    private var pending: ByteBuffer?
    /// A read NIO asked for while the peer was not taking our output.
    private var readHeld = false
    /// Requests wait in `pending` until the peer takes its answers.
    private var paused = false
    private var resumeScheduled = false
    /// A push waits for a reader of its channel (`Broker.mustHold`): only `resumeInput` goes on.
    private var held = false
    /// A connection carried over from a previous process (docs/RESTARTS.md): nothing is read or
    /// handled until every connection is back.
    private var carried: ConnectionImage?
    private var adopting = false

    init(broker: Broker, carrying image: ConnectionImage? = nil) {
        self.broker = broker
        self.decoder = FrameDecoder(maxFrameSize: CometProtocol.defaultMaxFrameSize)
        self.carried = image
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { open(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
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
            context.close(promise: nil)
            return
        }
        // On the channel's own loop the credentials are there at once.
        let identity = NIOLoopBoundBox(Identity(), eventLoop: context.eventLoop)
        PeerCredentials.of(context.channel).whenSuccess { identity.value = $0.identity }
        let conn = broker.connectionOpened(context: context, identity: identity.value)
        state = conn
        installHooks(conn, context)
    }

    /// Takes over a connection of the previous process: its state, the bytes it had read and not
    /// handled, and the decoder's limit. It goes on when the broker says all are back.
    private func adopt(_ image: ConnectionImage, _ context: ChannelHandlerContext) {
        let conn = broker.adopt(image, context: context)
        state = conn
        adopting = true
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
            self.adopting = false
            let context = bound.value
            self.process(context, conn)
            if self.readHeld, !self.paused {
                self.readHeld = false
                context.read()
            }
        }
    }

    private func installHooks(_ conn: ConnectionState, _ context: ChannelHandlerContext) {
        conn.resumeInput = { [weak self] in
            guard let self, self.held else { return }
            self.held = false
            self.scheduleResume(context)
        }
        conn.pendingInput = { [weak self] in self?.pending }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let conn = state, !conn.isClosing else { return }
        var input = unwrapInboundIn(data)
        if var carried = pending {
            carried.writeBuffer(&input)
            input = carried
        }
        pending = input
        if !adopting { process(context, conn) }
    }

    /// Decodes and handles requests from `pending` until it holds no whole frame, until the
    /// answers waiting for this peer reach the high watermark, or until it has had its share of
    /// this turn of the event loop: then the rest waits (and reads are held) until the peer has
    /// taken its answers, or until the next turn. The output for one peer is thus bounded per
    /// answer written, and a peer that pipelines thousands of requests does not delay the others.
    private func process(_ context: ChannelHandlerContext, _ conn: ConnectionState) {
        guard var input = pending else { return }
        pending = nil
        paused = false
        var handled = 0
        do {
            while !conn.isClosing {
                // Answers piling up for this peer, or its share of this turn used up: the rest waits.
                if conn.outbox.readableBytes >= broker.configuration.outboundHighWatermark || !context.channel.isWritable
                    || handled >= broker.configuration.requestsPerTurn
                {
                    paused = true
                    break
                }
                handled += 1
                let start = input.readerIndex
                guard let body = try decoder.nextFrame(from: &input) else { break }
                let request: Request
                do {
                    request = try Request.decode(body: body)
                } catch where !error.code.isFatal {
                    // The layout was readable up to a bad value: answer this request, keep the connection
                    // (unless it used the connection's id 0, which only fatal errors carry).
                    let id: UInt32 = body.getInteger(at: body.readerIndex + 1) ?? 0
                    guard id != CometProtocol.connectionRequestID else {
                        broker.fail(conn, WireError(.malformedFrame, "request id 0 is reserved for errors that end the connection"))
                        return
                    }
                    broker.reply(error: error.code, error.message, to: id, conn)
                    continue
                }
                if request.id == CometProtocol.connectionRequestID {
                    // Id 0 names the connection itself: a request may not use it (PROTOCOL.md §4).
                    broker.fail(conn, WireError(.malformedFrame, "request id 0 is reserved for errors that end the connection"))
                    return
                }
                if broker.mustHold(request, from: conn) {
                    // A reader of the channel has a full queue: this push waits for it to drain.
                    input.moveReaderIndex(to: start)
                    paused = true
                    held = true
                    break
                }
                broker.handle(request, from: conn)
                if conn.handshaken, decoder.maxFrameSize != broker.configuration.maxFrameSize {
                    decoder.maxFrameSize = broker.configuration.maxFrameSize
                }
            }
        } catch {
            broker.fail(conn, error)
            return
        }
        guard !conn.isClosing else { return }
        if input.readableBytes > 0 {
            // Keep only what is left, in a buffer of its own, not the whole read buffer.
            var rest = context.channel.allocator.buffer(capacity: input.readableBytes)
            rest.writeBuffer(&input)
            pending = rest
        }
        conn.inputPending = paused
        _ = broker.chargeUnfinishedFrame(pending?.readableBytes ?? 0, conn)
    }

    /// Goes on with requests held back by `process`, once the peer took its answers.
    private func resume(_ context: ChannelHandlerContext) {
        guard let conn = state, !conn.isClosing, paused, !adopting, context.channel.isWritable else { return }
        process(context, conn)
        broker.deliverDirty()
        if paused {
            if context.channel.isWritable, !held { scheduleResume(context) }
        } else if readHeld {
            readHeld = false
            context.read()
        }
    }

    private func scheduleResume(_ context: ChannelHandlerContext) {
        guard !resumeScheduled else { return }
        resumeScheduled = true
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            self.resumeScheduled = false
            self.resume(bound.value)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Deliver what this read produced now, before the loop polls again: one hop less latency.
        broker.deliverDirty()
        if paused, !held, context.channel.isWritable { scheduleResume(context) }
        context.fireChannelReadComplete()
    }

    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable, !paused, !adopting {
            context.read()
        } else {
            readHeld = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            if let conn = state {
                broker.syncQueuedOutput(conn)
                broker.markDirty(conn)
                broker.readerDrained(conn)
            }
            if adopting {
                // Goes on once every connection is back.
            } else if paused, !held {
                scheduleResume(context)
            } else if readHeld, !paused {
                readHeld = false
                context.read()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event, let conn = state {
            // The peer sent all it will: answer what it asked, then close.
            conn.inputClosed = true
            broker.markDirty(conn)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let conn = state { broker.connectionClosed(conn) }
        state = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        broker.logger.debug("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
