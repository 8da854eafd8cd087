import CometWire
import NIOConcurrencyHelpers
import NIOCore

/// What a subscription knows of its channel; changes when a waiting subscription starts.
public struct SubscriptionInfo: Sendable, Hashable {
    /// The channel's epoch; 0 while waiting for the channel to exist.
    public var epoch: UInt64
    /// Sequence number of the first message this subscription delivers (0 while waiting).
    public var nextSequence: UInt64
    /// Whether the channel does not exist yet.
    public var waiting: Bool
    /// Who produces the channel (uid and gid of its creator); `.unknown` while waiting.
    public var owner: Owner = .unknown
    /// Set when the channel closed: the last message it had (iteration then simply ends).
    public var closedAfter: UInt64? = nil
    /// Whether messages are read now from the channel's ring, mapped from shared memory
    /// (docs/PROTOCOL.md §6.23), rather than from the socket. It turns false when the daemon
    /// detaches a reader that fell behind its ring (the same messages follow from the socket), and
    /// true again when a daemon of comet 0.9.2 or later gives the reader its ring back once it
    /// caught up.
    public var mapped = false
}

/// A subscription's messages cross from the event loop to the consumer in chunks (all that one
/// socket read brought), so the hand-over costs one lock and at most one resume per chunk.
typealias MessageSequence = NIOThrowingAsyncSequenceProducer<
    [CometMessage], Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, SinkDelegate
>

/// The handler's side of a subscription: where its events go.
final class SubscriptionSink: @unchecked Sendable {  // used on the connection's loop only
    /// The id the subscription was made with (what `CometSubscription.id` says), and the one the
    /// daemon knows it by now (another after an automatic reconnect).
    let id: UInt32
    var serverID: UInt32
    let name: String
    let source: MessageSequence.Source
    let info: NIOLockedValueBox<SubscriptionInfo>
    var batch: [CometMessage] = []
    var paused = false
    /// The sequence number of the last message handed on: a reconnect resumes after it, and
    /// anything at or below it that comes again (unacknowledged private messages) is dropped.
    var last: UInt64 = 0
    /// How to make the subscription again after a reconnect (nil: it cannot be, e.g. external).
    let again: Resubscription?
    /// Where its messages come from now.
    var path: ReadPath
    /// Subscribed with RETURN: detached from its ring, it takes it back when the daemon offers it.
    var returnsToRing = false

    init(
        id: UInt32, name: String, source: MessageSequence.Source, info: NIOLockedValueBox<SubscriptionInfo>, again: Resubscription?,
        path: ReadPath = .socket
    ) {
        self.id = id
        self.serverID = id
        self.name = name
        self.source = source
        self.info = info
        self.again = again
        self.path = path
    }
}

/// Where a subscription's messages come from.
enum ReadPath {
    /// MESSAGE frames on the connection.
    case socket
    /// The channel's ring, mapped (SUBSCRIBE `MAPPED`, docs/PROTOCOL.md §6.23).
    case mapped(MappedReading)
}

/// A mapped subscription's reading: the ring (nil until its first ticket is redeemed) and what
/// RING_ADVANCED said. (The daemon's simulator reads rings with it too.)
package struct MappedReading {
    package var ring: MappedRing?
    /// The newest message announced: the reader copies no further.
    package var announced: UInt64 = 0
    /// The daemon protects this reader: overtaken in the ring, it waits for RING_DETACHED or FULL.
    package var held = false
    /// A newest channel: overtaken, skip to the latest value.
    package var newest = false
    /// Say (ACK) how far it read once it has read through `announced`.
    package var reportWanted = false
    /// The last sequence an ACK said was read.
    package var acknowledged: UInt64 = 0

    package init() {}
}

/// What a subscription asked for, to ask again after a reconnect.
struct Resubscription: Sendable {
    var scope: Scope
    var wait: Bool
    var owner: UInt32?
    /// Read the ring mapped when the daemon offers it.
    var mapped = false
}

/// Tells the handler when a subscriber wants more or has gone.
final class SinkDelegate: NIOAsyncSequenceProducerDelegate, @unchecked Sendable {
    private let eventLoop: EventLoop
    private let handler: ClientHandler
    private let subscription: UInt32

    init(eventLoop: EventLoop, handler: ClientHandler, subscription: UInt32) {
        self.eventLoop = eventLoop
        self.handler = handler
        self.subscription = subscription
    }

    func produceMore() {
        eventLoop.execute { self.handler.resume(self.subscription) }
    }

    func didTerminate() {
        eventLoop.execute { self.handler.terminated(self.subscription) }
    }
}
