import CometChannels
import CometState
import CometWire
import NIOCore

/// Identifies an external channel: one relay (one upstream subscription) serves all its local readers.
struct RelayKey: Hashable {
    /// Socket path of the upstream daemon.
    let path: String
    let name: String
    let newest: Bool
}

/// A local reader waiting for a relay's first upstream answer.
struct PendingExternal {
    let connection: UInt64
    let requestID: UInt32
    let history: UInt32
}

/// The local end of an external channel (Eliom's `external_channel`): a connection to another
/// cometd, one subscription there, and a local channel that mirrors it with the same sequence
/// numbers and epoch, fanned out to any number of local readers.
final class Relay: @unchecked Sendable {  // confined to the broker's loop
    let key: RelayKey
    /// How many recent messages the upstream subscription starts with, and the local ring keeps at least.
    let history: UInt32
    /// The local mirror of the current upstream epoch; nil until the first upstream answer.
    var channel: SiteChannel<ByteRing>?
    var upstream: Channel?
    var pending: [PendingExternal] = []
    /// The upstream subscription and the ids of the requests in flight there.
    var upstreamSubscription: UInt32?
    var helloID: UInt32?
    var subscribeID: UInt32?
    var nextRequestID: UInt32 = 1
    /// Reconnection delay, doubled after each failure up to `maxBackoff`.
    var backoff: TimeAmount = .milliseconds(50)
    static let maxBackoff: TimeAmount = .seconds(2)
    var removed = false
    /// Incomplete upstream frame bytes.
    var input: ByteBuffer?

    /// The user whose request made the relay: its mirror's messages are charged to it.
    let uid: UInt32
    /// Who produces the upstream channel, as the upstream daemon says.
    var upstreamOwner = Owner.unknown

    init(key: RelayKey, history: UInt32, uid: UInt32) {
        self.uid = uid
        self.key = key
        self.history = key.newest ? 1 : max(1, history)
    }

    /// Local ring size: room for slow local readers, and at least `history`.
    var ringSize: Int { key.newest ? 1 : max(1000, Int(history)) }

    func requestID() -> UInt32 {
        defer { nextRequestID = nextRequestID == UInt32.max ? 1 : nextRequestID + 1 }
        return nextRequestID
    }

    /// Sends one request upstream.
    func send(_ operation: Request.Operation) -> UInt32 {
        let id = requestID()
        guard let upstream else { return id }
        var buffer = upstream.allocator.buffer(capacity: 64)
        Request(id: id, operation).encode(into: &buffer)
        upstream.writeAndFlush(buffer, promise: nil)
        return id
    }
}

/// The NIO end of a relay's upstream connection: frames in, to the broker.
final class UpstreamHandler: ChannelInboundHandler, @unchecked Sendable {  // used on its channel's loop only
    typealias InboundIn = ByteBuffer

    private let broker: Broker
    private let relay: Relay
    private let decoder: FrameDecoder

    init(broker: Broker, relay: Relay) {
        self.broker = broker
        self.relay = relay
        self.decoder = FrameDecoder(maxFrameSize: broker.configuration.maxFrameSize)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var input = unwrapInboundIn(data)
        if var carried = relay.input {
            carried.writeBuffer(&input)
            input = carried
            relay.input = nil
        }
        do {
            while !relay.removed, let body = try decoder.nextFrame(from: &input) {
                broker.relayReceived(try ServerFrame.decode(body: body), relay)
            }
        } catch {
            broker.logger.warning("upstream sent a malformed frame", metadata: ["upstream": "\(relay.key.path)", "error": "\(error)"])
            context.close(promise: nil)
            return
        }
        if input.readableBytes > 0 {
            var rest = context.channel.allocator.buffer(capacity: input.readableBytes)
            rest.writeBuffer(&input)
            relay.input = rest
        }
        broker.deliverDirty()
    }

    func channelInactive(context: ChannelHandlerContext) {
        broker.relayLost(relay, channel: context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
