/// A bounded ring of messages numbered by consecutive sequence numbers from 1.
///
/// Appending to a full ring evicts the oldest message. Storage grows with use up to `capacity`
/// slots, so an idle channel with a large `size` costs little. One ring serves every reader of a
/// channel: readers hold sequence numbers, never copies.
public struct MessageRing<Payload> {
    @usableFromInline var slots: ContiguousArray<Payload> = []
    /// Index in `slots` of the oldest message once the ring has wrapped.
    @usableFromInline var head = 0
    /// The most messages kept.
    public let capacity: Int
    @usableFromInline var last: UInt64 = 0
    /// What a message weighs in memory (payload bytes plus overhead), for accounting; nil: 0.
    @usableFromInline let weigh: ((Payload) -> Int)?
    /// Sum of `weigh` over the messages kept.
    @usableFromInline var _bytes = 0
    public var bytes: Int { _bytes }

    /// - Parameter weigh: what a message costs in memory, summed in `bytes`.
    public init(capacity: Int, weigh: ((Payload) -> Int)? = nil) {
        precondition(capacity > 0, "ring capacity must be positive")
        self.capacity = capacity
        self.weigh = weigh
    }

    /// Sequence number of the newest message; 0 before the first.
    @inlinable public var lastSequence: UInt64 { last }

    /// Messages currently kept.
    @inlinable public var count: Int { slots.count }

    /// Sequence number of the oldest message kept; `lastSequence + 1` when empty.
    @inlinable public var firstSequence: UInt64 { lastSequence + 1 - UInt64(slots.count) }

    /// Appends `payload`, evicting the oldest message if the ring is full, and returns its sequence number.
    @inlinable @discardableResult
    public mutating func append(_ payload: Payload) -> UInt64 {
        if let weigh { _bytes += weigh(payload) }
        if slots.count < capacity {
            slots.append(payload)
        } else {
            if let weigh { _bytes -= weigh(slots[head]) }
            slots[head] = payload
            head += 1
            if head == capacity { head = 0 }
        }
        last += 1
        return last
    }

    /// Appends `payload` under `sequence`, given by another daemon (a relay). A number beyond
    /// `lastSequence + 1` drops everything kept (the gap cannot be filled) and continues from it.
    /// - Precondition: `sequence > lastSequence`.
    public mutating func append(_ payload: Payload, sequence: UInt64) {
        precondition(sequence > last, "relayed sequence numbers increase")
        if sequence != last + 1 {
            removeAll()
            last = sequence - 1
        }
        append(payload)
    }

    /// Empties the ring so that the next message is `next` (a relay starting mid-stream).
    public mutating func restart(at next: UInt64) {
        removeAll()
        last = next > 0 ? next - 1 : 0
    }

    /// The message numbered `sequence`, or `nil` if it was evicted or does not exist yet.
    @inlinable
    public subscript(sequence: UInt64) -> Payload? {
        guard sequence >= firstSequence, sequence <= lastSequence else { return nil }
        var index = head + Int(sequence - firstSequence)
        if index >= slots.count { index -= slots.count }
        return slots[index]
    }

    /// Drops every message, keeping the numbering (the next append gets `lastSequence + 1`).
    public mutating func removeAll() {
        slots = []
        head = 0
        _bytes = 0
    }

    /// What `bytes` would be after appending messages weighing `weights`, in order (the oldest
    /// are evicted as `append` would): lets a caller check a quota before it pushes.
    public func bytesAfterAppending(weights: [Int]) -> Int {
        guard let weigh else { return 0 }
        let evictOld = min(slots.count, max(0, slots.count + weights.count - capacity))
        var result = _bytes
        let first = firstSequence
        for i in 0..<evictOld { result -= weigh(self[first + UInt64(i)]!) }
        let dropNew = max(0, weights.count - capacity)
        for (i, w) in weights.enumerated() where i >= dropNew { result += w }
        return result
    }
}
