import NIOCore

/// The numbered pushes (PUSH_NUMBERED) of one channel this client produces that have no answer
/// yet, in number order: what a reconnect sends again. Confined to the connection's event loop.
///
/// Numbers follow on, one per message. An answer settles its push; a lost connection settles
/// nothing (the push is sent again, with its numbers, once the channel is taken back, and the
/// daemon skips what it has). A refusal settles its push and every later one already numbered:
/// the daemon refuses those with OUT_OF_ORDER, since a number is missing, so they are settled at
/// once with that error, their answers ignored, and numbering goes on from the refused push's
/// number (docs/RESTARTS.md, "What the clients do").
final class PushLedger {
    final class Entry {
        let number: UInt64
        let count: UInt32
        /// The messages as PUSH_NUMBERED lays them out (`u32 length`, bytes, each).
        let messages: ByteBuffer
        let completion: ClientHandler.Completion
        /// The request id of the frame that carries it now (nil: not sent on this connection).
        var sentAs: UInt32?

        init(number: UInt64, count: UInt32, messages: ByteBuffer, completion: @escaping ClientHandler.Completion) {
            self.number = number
            self.count = count
            self.messages = messages
            self.completion = completion
        }
    }

    /// The number the next push gets.
    private(set) var next: UInt64 = 1
    private var entries = CircularBuffer<Entry>()

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }

    /// Numbers `count` messages and keeps them until answered.
    func record(count: UInt32, messages: ByteBuffer, completion: @escaping ClientHandler.Completion) -> Entry {
        let entry = Entry(number: next, count: count, messages: messages, completion: completion)
        next += UInt64(count)
        entries.append(entry)
        return entry
    }

    /// Every push without an answer, in order (to send again); each is marked unsent.
    func unanswered() -> [Entry] {
        for entry in entries { entry.sentAs = nil }
        return Array(entries)
    }

    /// What an answer to `entry`, sent as request `requestID`, settles: the completions to run,
    /// in order. Nothing for a stale answer (the push was settled already, or was sent again),
    /// nor for a lost connection when `retrying` (the push stays, to be sent again).
    func answered(
        _ entry: Entry, requestID: UInt32?, _ result: Result<ByteBuffer, Error>, retrying: Bool
    ) -> [(ClientHandler.Completion, Result<ByteBuffer, Error>)] {
        guard entry.sentAs == requestID, let index = entries.firstIndex(where: { $0 === entry }) else { return [] }
        switch result {
        case .success:
            entries.remove(at: index)
            return [(entry.completion, result)]
        case .failure(let error as ConnectionError) where error.kind == .lost && retrying:
            entry.sentAs = nil
            return []
        case .failure(let error):
            // This push and every later one are settled; numbering goes on from here.
            var settled: [(ClientHandler.Completion, Result<ByteBuffer, Error>)] = [(entry.completion, .failure(error))]
            let refused = CometError(
                code: .outOfOrder, message: "not pushed: an earlier push to this channel was refused (\(error))")
            let lost = error as? ConnectionError
            for later in entries[entries.index(after: index)...] {
                settled.append((later.completion, .failure(lost ?? refused)))
            }
            next = entry.number
            entries.removeLast(entries.count - entries.distance(from: entries.startIndex, to: index))
            return settled
        }
    }

    /// Every push's completion, forgetting them all (to settle them: the connection is gone
    /// for good).
    func takeAll() -> [ClientHandler.Completion] {
        defer { entries.removeAll() }
        return entries.map(\.completion)
    }
}
