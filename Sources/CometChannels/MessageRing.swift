/// A bounded ring of messages numbered by consecutive sequence numbers from 1.
///
/// Appending to a full ring evicts the oldest message. Storage grows with use up to `capacity`
/// slots, so an idle channel with a large `size` costs little. One ring serves every reader of a
/// channel: readers hold sequence numbers, never copies.
public struct MessageRing<Payload>: ChannelRing {
    @usableFromInline var slots: ContiguousArray<Payload> = []
    /// What each slot's message weighs (parallel to `slots`; empty without `weigh`), so that
    /// evicting or pricing a message never touches the message itself.
    @usableFromInline var weights: ContiguousArray<Int32> = []
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
    public mutating func append(_ payload: __owned Payload) -> UInt64 {
        let weight = weigh.map { Int32(clamping: $0(payload)) }
        if slots.count < capacity {
            slots.append(payload)
            if let weight { weights.append(weight) }
        } else {
            slots[head] = payload
            if let weight {
                _bytes -= Int(weights[head])
                weights[head] = weight
            }
            head += 1
            if head == capacity { head = 0 }
        }
        if let weight { _bytes += Int(weight) }
        last += 1
        return last
    }

    /// Appends `count` messages made by `make` (called in order with 0..<count), each stored as
    /// made: no intermediate array of payloads. Returns the first one's sequence number.
    @inlinable @discardableResult
    public mutating func append(count: Int, _ make: (Int) -> Payload) -> UInt64 {
        let first = last + 1
        for i in 0..<count { append(make(i)) }
        return first
    }

    /// Calls `body` with each message from `start` through `lastSequence` in order, borrowed from
    /// the ring (no copy, no reference counting per message), until it returns false. Returns the
    /// sequence number of the first message not handed to `body` (or refused by it).
    @inlinable
    public func forEach(from start: UInt64, _ body: (borrowing Payload) -> Bool) -> UInt64 {
        guard start >= firstSequence, start <= last else { return start }
        var sequence = start
        slots.withUnsafeBufferPointer { all in
            var index = head + Int(start - firstSequence)
            if index >= all.count { index -= all.count }
            while sequence <= last {
                guard body(all[index]) else { return }
                sequence += 1
                index += 1
                if index == all.count { index = 0 }
            }
        }
        return sequence
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
        weights = []
        head = 0
        _bytes = 0
    }

    /// What `bytes` would be after appending `count` messages whose last `min(count, capacity)`
    /// weigh `keptWeight` (the oldest are evicted as `append` would): lets a caller check a quota
    /// before it pushes.
    public func bytesAfterAppending(count: Int, keptWeight: Int) -> Int {
        guard weigh != nil else { return 0 }
        let evictOld = min(slots.count, max(0, slots.count + count - capacity))
        var result = _bytes
        var index = head
        for _ in 0..<evictOld {
            result -= Int(self.weights[index])
            index += 1
            if index == self.weights.count { index = 0 }
        }
        return result + keptWeight
    }
}
