import CometChannels
import NIOCore

/// What the broker knows of one client connection. Confined to the server's event loop.
final class ConnectionState {
    let id: UInt64
    let context: ChannelHandlerContext
    /// The peer's credentials (SO_PEERCRED), read when the connection opened.
    var credentials = PeerCredentials()
    /// The session (client process) this connection belongs to, from HELLO or RESUME on.
    var session: Session?
    var handshaken = false
    /// Set once the connection is being torn down: nothing more is written or read.
    var isClosing = false
    /// Set when the peer half-closed: close once everything owed is written.
    var inputClosed = false
    var subscriptions: [UInt32: Subscription] = [:]
    var ownedChannels = 0
    var nextSubscriptionID: UInt32 = 1
    /// Frames written but not yet handed to the socket.
    var outbox: ByteBuffer
    /// Queued for a delivery pass.
    var isDirty = false

    init(id: UInt64, context: ChannelHandlerContext) {
        self.id = id
        self.context = context
        self.outbox = context.channel.allocator.buffer(capacity: 0)
    }

    func allocateSubscriptionID() -> UInt32 {
        while subscriptions[nextSubscriptionID] != nil || nextSubscriptionID == 0 {
            nextSubscriptionID &+= 1
        }
        defer { nextSubscriptionID &+= 1 }
        return nextSubscriptionID
    }
}
