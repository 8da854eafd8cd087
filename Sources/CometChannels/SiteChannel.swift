/// A site-scope channel: a name, an epoch, and one ring shared by every reader.
///
/// Readers are cursors (a sequence number each) held by the connection layer; the channel only
/// counts them, per reader id, so that it can report them and tell whom to wake.
/// The hot paths are inlinable so that the daemon gets them specialized for its payload type.
public final class SiteChannel<Payload> {
    /// Daemon-wide handle, never reused while the daemon runs.
    public let id: UInt64
    public let name: String
    /// Random, non-zero, fixed at creation: tells a resuming reader whether this is still the
    /// channel it read before.
    public let epoch: UInt64
    /// The connection (or other owner) that may push to and close the channel.
    public let owner: UInt64
    @usableFromInline var messages: MessageRing<Payload>
    @usableFromInline var closed = false
    /// Subscriptions per reader id.
    public private(set) var readers: [UInt64: Int] = [:]
    /// Total subscriptions.
    public private(set) var subscriberCount = 0

    public init(id: UInt64, name: String, epoch: UInt64, size: Int, owner: UInt64) {
        self.id = id
        self.name = name
        self.epoch = epoch
        self.owner = owner
        self.messages = MessageRing(capacity: size)
    }

    /// The messages kept.
    @inlinable public var ring: MessageRing<Payload> { messages }
    @inlinable public var isClosed: Bool { closed }
    public var size: Int { messages.capacity }
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

    /// One exclusive access to the ring for a whole batch.
    @inlinable
    static func append<Payloads: Sequence>(_ payloads: Payloads, to ring: inout MessageRing<Payload>)
    where Payloads.Element == Payload {
        for payload in payloads { ring.append(payload) }
    }

    /// Closes the channel: no more pushes; readers drain what is buffered, then see `closed`.
    public func close() { closed = true }

    /// Resolves a reader's starting position.
    public func start(at position: Position) throws(ChannelRefusal) -> Start {
        let first = messages.firstSequence
        let last = messages.lastSequence
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

    /// What a reader whose next message is `sequence` finds.
    @inlinable
    public func read(at sequence: UInt64) -> ReadResult<Payload> {
        if let payload = messages[sequence] { return .message(payload) }
        if sequence < messages.firstSequence { return .full(firstAvailable: messages.firstSequence) }
        return closed ? .closed(lastSequence: messages.lastSequence) : .caughtUp
    }

    /// Counts a subscription of `reader`.
    public func addReader(_ reader: UInt64) {
        readers[reader, default: 0] += 1
        subscriberCount += 1
    }

    /// Uncounts a subscription of `reader`.
    public func removeReader(_ reader: UInt64) {
        guard let n = readers[reader] else { return }
        readers[reader] = n == 1 ? nil : n - 1
        subscriberCount -= 1
    }
}
