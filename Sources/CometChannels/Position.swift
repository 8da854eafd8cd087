/// Where a reader starts in a channel (docs/SEMANTICS.md, "Positions").
public enum Position: Hashable, Sendable {
    /// The first message pushed after subscribing.
    case next
    /// The oldest message still buffered.
    case oldest
    /// Sequence number `n`, which must still be buffered (or be the next one).
    case from(UInt64)
    /// Exactly the `k` most recent messages, or all buffered ones if fewer.
    case last(UInt64)
}

/// Where a reader starts, once its position is resolved against a channel.
public enum Start: Hashable, Sendable {
    /// Deliver from this sequence number on.
    case at(UInt64)
    /// The position was evicted: the subscription ends at once with `full`.
    case full(firstAvailable: UInt64)
}

/// What a reader at some sequence number finds.
public enum ReadResult<Payload> {
    /// The message at the cursor.
    case message(Payload)
    /// Nothing yet: the cursor is past the newest message of an open channel.
    case caughtUp
    /// The cursor was evicted: the reader fell behind. `firstAvailable` is the oldest message kept.
    case full(firstAvailable: UInt64)
    /// The channel is closed and the reader has everything it gave, up to `lastSequence`.
    case closed(lastSequence: UInt64)

    /// The same result without the message (what a reader's state is, whatever the ring holds).
    @inlinable public var state: ReadResult<Void> {
        switch self {
        case .message: return .message(())
        case .caughtUp: return .caughtUp
        case .full(let first): return .full(firstAvailable: first)
        case .closed(let last): return .closed(lastSequence: last)
        }
    }
}
