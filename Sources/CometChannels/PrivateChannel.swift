/// A client-process channel (Eliom's default scope): addressed to one session, read by one
/// subscription of that session at a time, and kept until the reader acknowledges.
///
/// At most `size` messages are unacknowledged. The push that would make `size + 1` overflows the
/// channel: it is refused, every pending message is dropped, the reader gets `full`, and every later
/// push is refused too. Acknowledged messages are never delivered again; unacknowledged ones are
/// delivered again to the next subscription after a reconnect (resume without loss).
public final class PrivateChannel<Ring: ChannelRing> {
    public typealias Payload = Ring.Payload
    public let id: UInt64
    public let name: String
    public let epoch: UInt64
    public let session: UInt64
    /// The connection that created it and may push and close; 0 while it waits for its
    /// producer to take it back after a restart (ADOPT).
    public internal(set) var owner: UInt64
    /// The secret that lets its producer take it back (ADOPT), given at CREATE.
    public var producerToken = SessionToken(high: 0, low: 0)
    /// The producer's own numbers (PUSH_NUMBERED), kept for idempotent resends.
    public var numbering = ProducerNumbering()
    public let size: Int
    @usableFromInline var messages: Ring
    /// Highest acknowledged sequence number.
    public internal(set) var acknowledged: UInt64 = 0
    public internal(set) var isClosed = false
    /// Whether it overflowed; nothing more can be pushed or read.
    public internal(set) var isFull = false
    /// The connection whose subscription reads it, if any.
    public var reader: UInt64?
    /// An unlimited channel (Eliom's `create_unlimited`): nothing is buffered ahead; each message is
    /// asked of the producer (a pull) when the reader has acknowledged the previous one.
    public let isUnlimited: Bool
    /// The pull the producer owes an answer to, and the owner it was sent to (nil: none yet — it
    /// was restored); another owner is asked for it again.
    var outstanding: (pull: UInt64, askedOf: UInt64?)?
    /// The pull the producer owes an answer to, if any.
    public var outstandingPull: UInt64? { outstanding?.pull }
    var nextPull: UInt64 = 1

    /// Who created it (SO_PEERCRED of the producer), shown to the reader.
    public let creator: Identity

    /// - Parameters:
    ///   - unlimited: a pulled channel (`ring` then keeps one message, the one in flight).
    ///   - ring: where its messages are kept, empty; its capacity is the channel's size.
    public init(
        id: UInt64, name: String, epoch: UInt64, session: UInt64, owner: UInt64, unlimited: Bool = false,
        creator: Identity = Identity(), ring: Ring
    ) {
        precondition(!unlimited || ring.capacity == 1, "an unlimited channel keeps the message in flight")
        self.creator = creator
        self.isUnlimited = unlimited
        self.id = id
        self.name = name
        self.epoch = epoch
        self.session = session
        self.owner = owner
        self.size = ring.capacity
        self.messages = ring
    }

    public var lastSequence: UInt64 { messages.lastSequence }
    /// Memory the kept messages take, as `weigh` counts it.
    public var bufferedBytes: Int { messages.bytes }
    /// The part of `bufferedBytes` charged to a user's quota (bookkeeping of the caller).
    public var chargedBytes = 0

    /// Drops every buffered message (a closed channel nobody reads any more), freeing its memory.
    public func discardMessages() { messages.removeAll() }
    /// Messages pushed and not yet acknowledged.
    public var unacknowledged: Int { isFull ? 0 : Int(messages.lastSequence - acknowledged) }
    /// The ring, for readers that copy many messages at once.
    @inlinable public var ring: Ring { messages }

    /// Appends a message; refuses it, and overflows the channel, when `size` are unacknowledged.
    public func push(_ payload: Payload) throws(ChannelRefusal) -> UInt64 {
        try checkTakesPushes()
        guard unacknowledged < size else {
            isFull = true
            messages.removeAll()
            throw ChannelRefusal(.channelFull, "private channel '\(name)' overflowed: \(size) messages are unacknowledged")
        }
        return messages.append(payload)
    }

    /// Refuses pushes to an unlimited channel (it takes answers), a closed one, and one that
    /// overflowed.
    public func checkTakesPushes() throws(ChannelRefusal) {
        guard !isUnlimited else {
            throw ChannelRefusal(.pullNotRequested, "unlimited channel '\(name)' takes messages only as answers to its pulls")
        }
        guard !isClosed else { throw ChannelRefusal(.channelClosed, "private channel '\(name)' is closed") }
        guard !isFull else { throw ChannelRefusal(.channelFull, "private channel '\(name)' is full: its reader fell \(size) messages behind") }
    }

    /// For an unlimited channel, the pull to send to its owner now, if any: the outstanding one
    /// when this owner was not asked for it yet (the channel changed hands: the answer may have
    /// been lost with the previous producer connection), else a new one when the reader is ready
    /// for one more message (it has acknowledged everything). Nil while the channel has no owner:
    /// nothing comes due until one takes it (ADOPT).
    public func pullToAsk() -> UInt64? {
        guard isUnlimited, owner != 0, !isClosed else { return nil }
        if let outstanding {
            guard outstanding.askedOf != owner else { return nil }
            self.outstanding = (outstanding.pull, owner)
            return outstanding.pull
        }
        guard reader != nil, unacknowledged == 0 else { return nil }
        defer { nextPull += 1 }
        outstanding = (nextPull, owner)
        return nextPull
    }

    /// The producer's answer to pull `pull`: becomes the next message.
    public func answer(_ pull: UInt64, with payload: Payload) throws(ChannelRefusal) -> UInt64 {
        guard isUnlimited, outstandingPull == pull else {
            throw ChannelRefusal(.pullNotRequested, "pull \(pull) of '\(name)' was not asked for, or was answered already")
        }
        guard !isClosed else { throw ChannelRefusal(.channelClosed, "private channel '\(name)' is closed") }
        outstanding = nil
        return messages.append(payload)
    }

    /// Acknowledges every message up to `sequence` (cumulative); acknowledging less than before is a no-op.
    public func acknowledge(through sequence: UInt64) throws(ChannelRefusal) {
        guard sequence <= messages.lastSequence else {
            throw ChannelRefusal(.invalidPosition, "cannot acknowledge \(sequence): the channel has reached \(messages.lastSequence)")
        }
        acknowledged = max(acknowledged, sequence)
    }

    /// Where a new subscription starts: the first unacknowledged message.
    public var firstUnacknowledged: UInt64 { acknowledged + 1 }

    public func close() { isClosed = true }

    /// What a reader at `sequence` finds.
    public func read(at sequence: UInt64) -> ReadResult<Payload> {
        if isFull { return .full(firstAvailable: messages.lastSequence + 1) }
        if let payload = messages[sequence] { return .message(payload) }
        return isClosed ? .closed(lastSequence: messages.lastSequence) : .caughtUp
    }
}

extension PrivateChannel {
    /// A channel whose messages are values in the heap (`MessageRing`).
    /// - Parameter unlimited: a pulled channel; `size` is then 1 (the message in flight).
    public convenience init<Value>(
        id: UInt64, name: String, epoch: UInt64, session: UInt64, owner: UInt64, size: Int, unlimited: Bool = false,
        creator: Identity = Identity(), weigh: ((Value) -> Int)? = nil
    ) where Ring == MessageRing<Value> {
        self.init(
            id: id, name: name, epoch: epoch, session: session, owner: owner, unlimited: unlimited, creator: creator,
            ring: MessageRing(capacity: unlimited ? 1 : size, weigh: weigh))
    }
}
