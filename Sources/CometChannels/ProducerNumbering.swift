/// A channel's record of its producer's own numbers (PUSH_NUMBERED): what makes a resend
/// idempotent. Producer numbers start at 1 and follow on, one per message, so number `n` got
/// sequence number `origin + n - 1`: the channel keeps only `origin`, and its last number follows
/// from its last sequence number. A process killed after a message is in (its `last` stored)
/// therefore never holds a number that disagrees with the messages (docs/SEMANTICS.md,
/// "Exactly once from a producer").
public struct ProducerNumbering: Hashable, Sendable {
    /// The sequence number producer number 1 got; 0 while the channel has taken no numbered push.
    public private(set) var origin: UInt64

    public init(origin: UInt64 = 0) {
        self.origin = origin
    }

    /// Whether the channel takes numbered pushes only (its producer numbered one).
    public var isNumbered: Bool { origin != 0 }

    /// The number of the last numbered message in the channel (0: none).
    public func lastNumber(lastSequence: UInt64) -> UInt64 {
        origin == 0 || lastSequence < origin ? 0 : lastSequence - origin + 1
    }

    /// What to do with a numbered push.
    public enum Admission: Hashable, Sendable {
        /// Append the messages after the first `skip` (those are in already); message `number`
        /// got, or gets, `firstSequence`.
        case apply(skip: Int, firstSequence: UInt64)
        /// A number is missing before this push: nothing is applied; `expected` is the next number.
        case outOfOrder(expected: UInt64)
    }

    /// Decides a push of `count` messages numbered from `number` to a channel whose last
    /// message is `lastSequence`.
    public func admit(number: UInt64, count: Int, lastSequence: UInt64) -> Admission {
        let last = lastNumber(lastSequence: lastSequence)
        guard number <= last + 1 else { return .outOfOrder(expected: last + 1) }
        let skip = Int(min(UInt64(count), last + 1 - number))
        let firstSequence = last == 0 ? lastSequence + 1 : origin + number - 1
        return .apply(skip: skip, firstSequence: firstSequence)
    }

    /// Numbered messages go in from `sequence` on (call before they are stored as the channel's
    /// last): the first of them, when the channel holds none yet, is number 1.
    public mutating func begin(at sequence: UInt64) {
        if lastNumber(lastSequence: sequence - 1) == 0 { origin = sequence }
    }
}
