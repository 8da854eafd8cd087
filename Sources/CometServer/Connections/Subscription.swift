import CometChannels
import CometState
import NIOCore

/// What a subscription reads.
enum SubscriptionSource {
    case site(SiteChannel<ByteRing>)
    case clientProcess(PrivateChannel<ByteRing>)
}

/// One subscription of a connection: a cursor into a channel, or a wait for a name.
struct Subscription {
    let id: UInt32
    let name: String
    /// The channel read; `nil` while waiting for a site channel of that name to be created.
    var source: SubscriptionSource?
    /// Sequence number of the next message to deliver.
    var cursor: UInt64
    /// The uid the reader requires the channel's producer to have (`--owner`), if any.
    var pinnedOwner: UInt32? = nil
    /// A waiting subscription that resumes (`from N` with an epoch): where it starts when a
    /// channel of that epoch appears (an import rebuilt after a restart); any other epoch ends it.
    var resumeAt: (sequence: UInt64, epoch: UInt64)? = nil
    /// A mapped reader's state (SUBSCRIBE MAPPED); its cursor is then the first message it was
    /// not told of. nil: it reads from the socket.
    var mapped: MappedReading? = nil
    /// A detached mapped reader that takes its ring back once it caught up (SUBSCRIBE `RETURN`).
    var ringReturn: RingReturn? = nil
}

/// What the daemon knows of a reader that maps its channel's ring.
struct MappedReading {
    /// The generation of the ring file it was last given a ticket for (0: none yet).
    var generation: UInt64 = 0
    /// Whether it is protected (RING_ADVANCED `HELD`; every mapped reader but a newest channel's):
    /// before a push evicts a message it has not said it read, it is detached from the ring and
    /// handed what it misses over the socket, as a socket reader would be. A reader that may hold
    /// the producer (`ProducerHolds`) is first waited for, for at most the reader grace, on a
    /// ring of `mappedHoldMinimumRing` messages or more (docs/SEMANTICS.md).
    let held: Bool
    /// The first message it has not said it read (ACK).
    var read: UInt64
    /// Detached, it takes its ring back once it caught up (SUBSCRIBE `RETURN`, protected readers).
    var returns = false
    /// When it was (last) given its ring, and how many detaches in a row came before (`RingReturn`).
    var attachedAt: UInt64 = 0
    var detachesBefore = 0
    /// A producer waits for its ACK: the next RING_ADVANCED asks for one (REPORT), even if it
    /// announces nothing new.
    var reportNow = false
    /// The highest `last` a RING_ADVANCED asked it to report (0: none).
    var reportAsked: UInt64 = 0
    /// Where a protected reader says how far it read without a request (nil: it reports with
    /// ACK when RING_ADVANCED asks, REPORT).
    var position: PositionPage? = nil

    /// The first message it has read up to, by what it said (ACK, or its position page clamped
    /// to what was announced before `announcedUpTo`).
    func readUpTo(announcedUpTo cursor: UInt64) -> UInt64 {
        guard let position else { return read }
        return max(read, min(position.read, cursor))
    }
}

/// Identifies a waiting subscription in the registry.
struct WaiterKey: Hashable {
    let connection: UInt64
    let subscription: UInt32
}
