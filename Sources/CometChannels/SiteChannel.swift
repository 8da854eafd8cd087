/// A site-scope channel: a name, an epoch, and one ring shared by every reader.
///
/// A *newest* channel (Eliom's `create_newest`) keeps only its last message, and a reader that
/// falls behind skips to it instead of getting `full`.
///
/// Readers are cursors (a sequence number each) held by the connection layer; the channel only
/// counts them, per reader id, so that it can report them and tell whom to wake.
/// The hot paths are inlinable so that the daemon gets them specialized for its ring.
public final class SiteChannel<Ring: ChannelRing> {
    public typealias Payload = Ring.Payload
    /// Daemon-wide handle, never reused while the daemon runs.
    public let id: UInt64
    public let name: String
    /// Random, non-zero, fixed at creation: tells a resuming reader whether this is still the
    /// channel it read before.
    public let epoch: UInt64
    /// The connection (or other owner) that may push to and close the channel; 0 while it
    /// waits for its producer to take it back after a restart (ADOPT).
    public internal(set) var owner: UInt64
    /// The secret that lets its producer take it back (ADOPT), given at CREATE.
    public var producerToken = SessionToken(high: 0, low: 0)
    /// The producer's own numbers (PUSH_NUMBERED), kept for idempotent resends.
    public var numbering = ProducerNumbering()
    /// Whether only the latest message counts (a newest channel).
    public let keepsNewestOnly: Bool
    @usableFromInline var messages: Ring
    @usableFromInline var closed = false
    /// Subscriptions per reader id.
    public private(set) var readers: [UInt64: Int] = [:]
    /// Total subscriptions.
    public private(set) var subscriberCount = 0

    /// Who created it (SO_PEERCRED of the producer), shown to readers.
    public let creator: Identity

    /// - Parameters:
    ///   - newestOnly: a newest channel (`ring` must then keep one message).
    ///   - ring: where its messages are kept, empty.
    public init(
        id: UInt64, name: String, epoch: UInt64, owner: UInt64, newestOnly: Bool = false, creator: Identity = Identity(),
        ring: Ring
    ) {
        precondition(!newestOnly || ring.capacity == 1, "a newest channel keeps one message")
        self.creator = creator
        self.keepsNewestOnly = newestOnly
        self.id = id
        self.name = name
        self.epoch = epoch
        self.owner = owner
        self.messages = ring
    }

    /// The messages kept.
    @inlinable public var ring: Ring { messages }
    @inlinable public var isClosed: Bool { closed }
    public var size: Int { messages.capacity }
    /// Memory the buffered messages take, as `weigh` counts it.
    public var bufferedBytes: Int { messages.bytes }
    /// The part of `bufferedBytes` charged to a user's quota (bookkeeping of the caller).
    public var chargedBytes = 0

    /// Counters for STATS (bookkeeping of the caller): messages and payload bytes pushed,
    /// messages written to readers, subscriptions ended with FULL.
    public var pushedCount: UInt64 = 0
    public var pushedBytes: UInt64 = 0
    public var deliveredCount: UInt64 = 0
    public var fullCount: UInt64 = 0

    /// Drops every buffered message (a closed channel nobody reads any more), freeing its memory.
    public func discardMessages() { messages.removeAll() }
    @inlinable public var lastSequence: UInt64 { messages.lastSequence }

    /// Appends a message and returns its sequence number.
    @inlinable @discardableResult
    public func push(_ payload: Payload) throws(ChannelRefusal) -> UInt64 {
        guard !closed else { throw ChannelRefusal(.channelClosed, "channel '\(name)' is closed") }
        return messages.append(payload)
    }

    /// Appends several messages in order and returns the first one's sequence number.
    @inlinable @discardableResult
    public func push<Payloads: Sequence>(contentsOf payloads: Payloads) throws(ChannelRefusal) -> UInt64
    where Payloads.Element == Payload {
        guard !closed else { throw ChannelRefusal(.channelClosed, "channel '\(name)' is closed") }
        let first = messages.lastSequence + 1
        Self.append(payloads, to: &messages)
        return first
    }

    /// Appends `count` messages made in order by `make` and returns the first one's sequence number.
    @inlinable @discardableResult
    public func push(count: Int, _ make: (Int) -> Payload) throws(ChannelRefusal) -> UInt64 {
        guard !closed else { throw ChannelRefusal(.channelClosed, "channel '\(name)' is closed") }
        return messages.append(count: count, make)
    }

    /// One exclusive access to the ring for a whole batch.
    @inlinable
    static func append<Payloads: Sequence>(_ payloads: Payloads, to ring: inout Ring)
    where Payloads.Element == Payload {
        for payload in payloads { ring.append(payload) }
    }

    /// Appends a message relayed from another daemon under its own sequence number (relays only).
    /// Readers left behind by a gap get `full`.
    public func pushRelayed(_ payload: Payload, sequence: UInt64) {
        guard !closed, sequence > messages.lastSequence else { return }
        messages.append(payload, sequence: sequence)
    }

    /// Makes a relay's empty mirror expect `next` as its first message.
    public func expectRelayed(from next: UInt64) {
        guard messages.count == 0, next > messages.lastSequence + 1 else { return }
        messages.restart(at: next)
    }

    /// A mirror whose origin cannot be reached: why. Readers that have every message it holds
    /// are told so (FAILED) instead of waiting silently; nil when it is fed.
    public var stalled: String?

    /// The epoch of the channel that replaced this one (a relay whose upstream channel was
    /// re-created); readers then get `reset` instead of `closed`.
    public private(set) var replacedByEpoch: UInt64?

    /// Ends the channel because it was re-created elsewhere with `epoch`.
    public func replace(byEpoch epoch: UInt64) {
        replacedByEpoch = epoch
        closed = true
    }

    /// Closes the channel: no more pushes; readers drain what is buffered, then see `closed`.
    public func close() { closed = true }

    /// Resolves a reader's starting position.
    public func start(at position: Position) throws(ChannelRefusal) -> Start {
        let first = messages.firstSequence
        let last = messages.lastSequence
        if keepsNewestOnly {
            // The current value at once, whatever was asked, except `last 0` (only what comes next).
            switch position {
            case .last(0): return .at(last + 1)
            case .from(let n) where n == 0:
                throw ChannelRefusal(.invalidPosition, "sequence numbers start at 1")
            case .from(let n) where n > last + 1:
                throw ChannelRefusal(.positionAhead, "channel '\(name)' has reached sequence \(last); \(n) does not exist yet")
            case .from(let n) where n == last + 1: return .at(n)
            default: return .at(first)
            }
        }
        switch position {
        case .next:
            return .at(last + 1)
        case .oldest:
            return .at(first)
        case .last(let k):
            return .at(k >= last + 1 - first ? first : last + 1 - k)
        case .from(let n):
            guard n >= 1 else { throw ChannelRefusal(.invalidPosition, "sequence numbers start at 1") }
            guard n <= last + 1 else {
                throw ChannelRefusal(.positionAhead, "channel '\(name)' has reached sequence \(last); \(n) does not exist yet")
            }
            return n < first ? .full(firstAvailable: first) : .at(n)
        }
    }

    /// Where a reader whose next message is `sequence` actually resumes: the same number, or for a
    /// newest channel that moved on, its latest message.
    @inlinable
    public func catchUp(_ sequence: UInt64) -> UInt64 {
        keepsNewestOnly ? max(sequence, messages.firstSequence) : sequence
    }

    /// What a reader whose next message is `sequence` finds (after `catchUp`).
    @inlinable
    public func read(at sequence: UInt64) -> ReadResult<Payload> {
        if let payload = messages[sequence] { return .message(payload) }
        if sequence < messages.firstSequence { return .full(firstAvailable: messages.firstSequence) }
        return closed ? .closed(lastSequence: messages.lastSequence) : .caughtUp
    }

    /// Counts a subscription of `reader` whose next message is `cursor`.
    public func addReader(_ reader: UInt64, at cursor: UInt64 = .max) {
        readers[reader, default: 0] += 1
        subscriberCount += 1
        protectedFloor = min(protectedFloor, cursor)
    }

    /// A lower bound on the next sequence number of every reader the caller protects from
    /// eviction (bookkeeping of the caller: readers start at or above it and only move up).
    /// `UInt64.max`: no reader to protect.
    public var protectedFloor: UInt64 = .max

    /// How many messages can be appended before one numbered `floor` or later is evicted
    /// (`Int.max` for a newest channel, which evicts by design, or when nothing is protected).
    @inlinable
    public func room(above floor: UInt64) -> Int {
        guard !keepsNewestOnly, floor != .max else { return Int.max }
        let last = messages.lastSequence
        let unhanded = floor > last ? 0 : Int(last + 1 - max(floor, messages.firstSequence))
        return messages.capacity - unhanded
    }

    /// Uncounts a subscription of `reader`.
    public func removeReader(_ reader: UInt64) {
        guard let n = readers[reader] else { return }
        readers[reader] = n == 1 ? nil : n - 1
        subscriberCount -= 1
    }
}

extension SiteChannel {
    /// A channel whose messages are values in the heap (`MessageRing`).
    /// - Parameters:
    ///   - newestOnly: a newest channel; `size` is then 1 whatever is passed.
    ///   - weigh: what a message costs in memory (`bufferedBytes`).
    public convenience init<Value>(
        id: UInt64, name: String, epoch: UInt64, size: Int, owner: UInt64, newestOnly: Bool = false,
        creator: Identity = Identity(), weigh: ((Value) -> Int)? = nil
    ) where Ring == MessageRing<Value> {
        self.init(
            id: id, name: name, epoch: epoch, owner: owner, newestOnly: newestOnly, creator: creator,
            ring: MessageRing(capacity: newestOnly ? 1 : size, weigh: weigh))
    }
}
