import NIOCore
import NIOEmbedded

/// A Unix socket between a simulated peer and the daemon, as the first handler of an
/// `EmbeddedChannel`: it keeps what the daemon writes until the peer reads it, reports
/// writability as NIO would (a kernel buffer, then NIO's queue against the watermarks), and
/// hands the daemon what the peer sent only when the daemon asked to read.
final class SimulatedSocket: ChannelDuplexHandler, @unchecked Sendable {  // used on the simulator's one thread
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Bytes the kernel holds for the peer before NIO starts queueing.
    let kernelCapacity: Int
    let highWatermark: Int
    let lowWatermark: Int
    /// Largest read the daemon gets at once.
    let readSize: Int

    private var context: ChannelHandlerContext?
    /// Written by the daemon, not read by the peer yet.
    private var toPeer = CircularBuffer<ByteBuffer>()
    private(set) var toPeerBytes = 0
    /// Sent by the peer, not read by the daemon yet.
    private var toDaemon: ByteBuffer
    private var readRequested = false
    private var writable = true
    /// The peer shut its sending side; told to the daemon once it read everything before it.
    private var peerShutWrite = false
    private var shutWriteTold = false

    init(kernelCapacity: Int, highWatermark: Int, lowWatermark: Int, readSize: Int) {
        self.kernelCapacity = kernelCapacity
        self.highWatermark = highWatermark
        self.lowWatermark = lowWatermark
        self.readSize = readSize
        self.toDaemon = ByteBufferAllocator().buffer(capacity: 0)
    }

    /// Bytes NIO would hold: what the kernel buffer does not.
    var queued: Int { max(0, toPeerBytes - kernelCapacity) }

    var isOpen: Bool { context?.channel.isActive ?? false }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        if buffer.readableBytes > 0 {
            toPeer.append(buffer)
            toPeerBytes += buffer.readableBytes
        }
        promise?.succeed(())
        updateWritability()
    }

    func flush(context: ChannelHandlerContext) {}

    func read(context: ChannelHandlerContext) { readRequested = true }

    // MARK: Driven by the simulator

    /// The peer sends `bytes`.
    func peerSends(_ bytes: ByteBuffer) {
        var bytes = bytes
        toDaemon.writeBuffer(&bytes)
    }

    /// The peer half-closes its side.
    func peerShutsWrite() { peerShutWrite = true }

    /// Hands the daemon one read of what the peer sent, if it asked to read. Returns whether it did.
    @discardableResult
    func deliverToDaemon() -> Bool {
        guard let context, context.channel.isActive else { return false }
        if toDaemon.readableBytes == 0 {
            if peerShutWrite, !shutWriteTold, readRequested {
                shutWriteTold = true
                context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
                return true
            }
            return false
        }
        guard readRequested else { return false }
        readRequested = false
        let length = min(readSize, toDaemon.readableBytes)
        var chunk = context.channel.allocator.buffer(capacity: length)
        var slice = toDaemon.readSlice(length: length)!
        chunk.writeBuffer(&slice)
        if toDaemon.readableBytes == 0 { toDaemon = context.channel.allocator.buffer(capacity: 0) }
        context.fireChannelRead(wrapInboundOut(chunk))
        context.fireChannelReadComplete()
        // Auto-read: the channel asks for the next read through the pipeline.
        if context.channel.isActive { context.pipeline.read() }
        return true
    }

    /// Whether the peer has bytes the daemon has not read.
    var daemonHasInput: Bool { toDaemon.readableBytes > 0 || (peerShutWrite && !shutWriteTold) }

    /// The peer reads up to `limit` bytes of what the daemon wrote.
    func peerReads(upTo limit: Int, into out: inout ByteBuffer) {
        var left = limit
        while left > 0, !toPeer.isEmpty {
            var first = toPeer.removeFirst()
            if first.readableBytes <= left {
                left -= first.readableBytes
                toPeerBytes -= first.readableBytes
                out.writeBuffer(&first)
            } else {
                var part = first.readSlice(length: left)!
                toPeerBytes -= left
                left = 0
                out.writeBuffer(&part)
                toPeer.prepend(first)
            }
        }
        updateWritability()
    }

    private func updateWritability() {
        guard let context, let channel = context.channel as? EmbeddedChannel else { return }
        if writable, queued > highWatermark {
            writable = false
            channel.isWritable = false
            context.fireChannelWritabilityChanged()
        } else if !writable, queued < lowWatermark {
            writable = true
            channel.isWritable = true
            context.fireChannelWritabilityChanged()
        }
    }
}
