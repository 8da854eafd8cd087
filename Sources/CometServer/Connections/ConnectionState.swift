import CometChannels
import CometWire
import NIOCore

/// What the broker knows of one client connection. Confined to the server's event loop.
final class ConnectionState: @unchecked Sendable {  // confined to the broker's loop
    let id: UInt64
    let context: ChannelHandlerContext
    /// Its socket's SO_COOKIE (nil where there is no socket: the simulator), to find its descriptor.
    let socketCookie: UInt64?
    /// The peer's credentials (SO_PEERCRED), read when the connection opened.
    var identity = Identity()
    var uid: UInt32 { identity.uid }
    /// When the connection opened, and when it last sent a request (uptime nanoseconds).
    let openedAt: UInt64
    var lastRequest: UInt64
    /// Bytes handed to the socket and not yet written (charged as queued output).
    var queuedOutput = 0
    /// Reads the bytes the socket has not taken, where NIO's count does not apply (the simulator's
    /// sockets); nil: NIO's `bufferedWritableBytes`.
    var socketQueue: (() -> Int)?
    /// Bytes of an unfinished frame charged to the peer's user.
    var unfinishedFrameBytes = 0
    /// How it stands against its user's connection quota.
    var admission = Admission.pending
    /// Whether the connection was counted against its user's connection quota.
    var counted: Bool {
        if case .counted = admission { return true }
        return false
    }
    /// Whether delivery to it waits for its user's queued output to go down.
    var starved = false
    /// Pending WAIT_TIMEOUTs of this connection, by waiter id.
    var timeoutWaits: Set<UInt64> = []
    /// The session (client process) this connection belongs to, from HELLO or RESUME on.
    var session: Session?
    var handshaken = false
    /// Set once the connection is being torn down: nothing more is written or read.
    var isClosing = false
    /// Set when the peer half-closed: close once everything owed is written.
    var inputClosed = false
    /// Requests received but held back until the peer takes its answers.
    var inputPending = false
    var subscriptions: [UInt32: Subscription] = [:]
    var ownedChannels = 0
    var nextSubscriptionID: UInt32 = 1
    /// Frames written but not yet handed to the socket.
    var outbox: ByteBuffer
    /// Queued for a delivery pass.
    var isDirty = false
    /// Lets a push held for a reader go on (set by the connection's handler; `InputFlow`).
    var holdReleased: (() -> Void)?
    /// The last `queuedOutput` bytes handed to the socket, by reference: what it has not written.
    /// Small at first: most connections never have more than a write or two outstanding.
    var unsent = CircularBuffer<ByteBuffer>(initialCapacity: 2)
    var unsentBytes = 0
    /// Bytes read and not yet handled, as the connection's handler holds them (for an image).
    var pendingInput: (() -> ByteBuffer?)?
    /// Set on a connection carried over from a previous process: lets it go on once every
    /// connection is back.
    var afterAdoption: (() -> Void)?

    init(id: UInt64, context: ChannelHandlerContext, now: UInt64) {
        self.openedAt = now
        self.lastRequest = now
        self.id = id
        self.context = context
        self.socketCookie = SocketCookies.cookie(of: context.channel)
        self.outbox = context.channel.allocator.buffer(capacity: 0)
    }

    /// Whether the connection holds nothing that the idle timeout would take away.
    var holdsNothing: Bool {
        subscriptions.isEmpty && ownedChannels == 0 && timeoutWaits.isEmpty && (session?.channels.isEmpty ?? true)
    }

    /// Bytes waiting to reach the peer: the outbox and what the socket has not taken.
    var pendingOutput: Int { outbox.readableBytes + queuedOutput }

    /// Drops from `unsent` what the socket has written, keeping the last `queuedOutput` bytes.
    func trimUnsent() {
        var excess = unsentBytes - queuedOutput
        while excess > 0, !unsent.isEmpty {
            let length = unsent[unsent.startIndex].readableBytes
            if length <= excess {
                unsent.removeFirst()
                unsentBytes -= length
                excess -= length
            } else {
                unsent[unsent.startIndex].moveReaderIndex(forwardBy: excess)
                unsentBytes -= excess
                excess = 0
            }
        }
    }

    func allocateSubscriptionID() -> UInt32 {
        while subscriptions[nextSubscriptionID] != nil || nextSubscriptionID == 0 {
            nextSubscriptionID &+= 1
        }
        defer { nextSubscriptionID &+= 1 }
        return nextSubscriptionID
    }
}
