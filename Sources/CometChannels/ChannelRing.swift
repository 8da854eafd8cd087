/// Where a site channel keeps its messages: a bounded ring numbered by consecutive sequence
/// numbers from 1, evicting the oldest message when it holds `capacity`.
///
/// `MessageRing` keeps values in the heap (tests, the simulator's own checks); the daemon keeps
/// bytes in a ring laid out as docs/RESTARTS.md says, the one copy it delivers from, stores and
/// (for mapped readers) shares.
public protocol ChannelRing {
    /// What is appended and what readers are handed (borrowed, valid until the next change).
    associatedtype Payload

    /// The most messages kept.
    var capacity: Int { get }
    /// Messages currently kept.
    var count: Int { get }
    /// Sequence number of the oldest message kept; `lastSequence + 1` when empty.
    var firstSequence: UInt64 { get }
    /// Sequence number of the newest message; 0 before the first.
    var lastSequence: UInt64 { get }
    /// What the messages kept cost in memory, for accounting.
    var bytes: Int { get }

    /// Appends a message (evicting the oldest if full) and returns its sequence number.
    @discardableResult mutating func append(_ payload: Payload) -> UInt64
    /// Appends `count` messages made in order by `make`, called once for each of 0 ..< `count` in
    /// that order (a caller may read its messages with a cursor); returns the first one's sequence number.
    @discardableResult mutating func append(count: Int, _ make: (Int) -> Payload) -> UInt64
    /// Appends `payload` under `sequence` (> `lastSequence`), given by another daemon; a gap
    /// drops everything kept.
    mutating func append(_ payload: Payload, sequence: UInt64)
    /// Empties the ring so that the next message is `next`.
    mutating func restart(at next: UInt64)
    /// Drops every message, keeping the numbering, and the memory they took.
    mutating func removeAll()
    /// Calls `body` with each message from `start` on, in order, until it returns false; returns
    /// the sequence number of the first message not handed to `body`.
    func forEach(from start: UInt64, _ body: (borrowing Payload) -> Bool) -> UInt64
    /// The message numbered `sequence`, if kept.
    subscript(sequence: UInt64) -> Payload? { get }
    /// What `bytes` would be after appending `count` messages whose last `min(count, capacity)`
    /// weigh `keptWeight` in all (as `bytes` counts them), the oldest evicted as `append` would:
    /// a quota check before a push.
    func bytesAfterAppending(count: Int, keptWeight: Int) -> Int
}

extension ChannelRing {
    /// What `bytes` would be after appending messages weighing `weights`, in order.
    public func bytesAfterAppending(weights: [Int]) -> Int {
        bytesAfterAppending(count: weights.count, keptWeight: weights.suffix(capacity).reduce(0, +))
    }
}
