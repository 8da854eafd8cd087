import Comet

/// What a reader that expects messages 1, 2, 3… saw: how many, whether each came in its place,
/// and the error that ended it early, if any.
struct OrderedReading: Sendable {
    var received: UInt64
    var inOrder: Bool
    var error: String?
}

/// Reads `subscription` until it has had `total` messages (or ends), checking they are numbered
/// 1, 2, 3… with none missing or repeated.
func readInOrder(_ subscription: CometSubscription, total: Int) -> Task<OrderedReading, Never> {
    Task {
        var expected: UInt64 = 1
        var inOrder = true
        do {
            for try await message in subscription {
                if message.sequence != expected { inOrder = false }
                expected += 1
                if expected > UInt64(total) { break }
            }
            return OrderedReading(received: expected - 1, inOrder: inOrder, error: nil)
        } catch {
            return OrderedReading(received: expected - 1, inOrder: inOrder, error: "\(error)")
        }
    }
}
