import CometWire
import NIOConcurrencyHelpers
import NIOCore

/// The messages of one subscription, in sequence order, as an async sequence.
///
/// Iteration ends normally once a closed channel has delivered everything (`info.closedAfter`
/// then holds its last sequence number) or after `cancel()`; it throws `ChannelFull` when the
/// reader fell behind, `EpochChanged` when the channel was re-created, `CometError` when it
/// failed, and `ConnectionError` when the connection ends. Iterate it once. Dropping the iterator unsubscribes. The client reads from the socket
/// only as fast as subscribers consume, so a slow consumer holds its messages in the daemon's
/// ring, not in this process.
public struct CometSubscription: AsyncSequence, Sendable {
    public typealias Element = CometMessage

    /// The subscription id on the connection.
    public let id: UInt32
    /// The channel name.
    public let name: String
    private let client: CometClient
    private let state: NIOLockedValueBox<SubscriptionInfo>
    private let messages: MessageSequence
    /// Private channels: acknowledge what the consumer has taken.
    private let acknowledges: Bool

    init(
        client: CometClient, id: UInt32, name: String, info: NIOLockedValueBox<SubscriptionInfo>, messages: MessageSequence,
        acknowledges: Bool = false
    ) {
        self.client = client
        self.id = id
        self.name = name
        self.state = info
        self.messages = messages
        self.acknowledges = acknowledges
    }

    /// Epoch, first sequence and waiting state, as last reported by the daemon.
    public var info: SubscriptionInfo { state.withLockedValue { $0 } }

    /// Ends the subscription: a running iteration ends at once, after the messages already
    /// received.
    public func cancel() async throws {
        try await client.unsubscribe(id)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: MessageSequence.AsyncIterator
        let acknowledger: (client: CometClient, subscription: UInt32)?
        /// The last message handed out, acknowledged when the next one is asked for.
        var taken: UInt64?
        /// The chunk being handed out, and where in it.
        var chunk: [CometMessage] = []
        var index = 0

        /// Messages already received that `next()` returns without waiting (e.g. to flush output
        /// only when this is 0).
        public var buffered: Int { chunk.count - index }

        /// As `next()`, from the caller's isolation (SE-0421): `for try await` on the main actor
        /// or in any actor. A message already received is handed out at once, without leaving the
        /// caller's isolation; only an empty chunk waits (one hop per chunk, not per message). An
        /// iterator is used by one task at a time, so handing it to `next()` and back is safe.
        public mutating func next(isolation actor: isolated (any Actor)?) async throws -> CometMessage? {
            if index < chunk.count {
                acknowledgeTaken()
                return handOut()
            }
            nonisolated(unsafe) var iterator = self
            defer { self = iterator }
            return try await iterator.next()
        }

        /// Private channels: the message handed out before is taken once the next is asked for.
        private mutating func acknowledgeTaken() {
            if let taken, let acknowledger {
                acknowledger.client.acknowledge(acknowledger.subscription, through: taken)
                self.taken = nil
            }
        }

        public mutating func next() async throws -> CometMessage? {
            acknowledgeTaken()
            if index == chunk.count {
                repeat {
                    guard let next = try await base.next() else { return nil }
                    chunk = next
                    index = 0
                } while chunk.isEmpty
            }
            return handOut()
        }

        /// The next message of the chunk (there is one), remembered for acknowledgement.
        private mutating func handOut() -> CometMessage {
            let message = chunk[index]
            index += 1
            if acknowledger != nil { taken = message.sequence }
            return message
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: messages.makeAsyncIterator(), acknowledger: acknowledges ? (client, id) : nil)
    }

    /// For a private channel: acknowledges everything up to `sequence` now, e.g. before leaving a
    /// loop with `break` (iteration acknowledges a message only when the next one is asked for).
    /// Does nothing for other channels (only private ones take acknowledgements).
    public func acknowledge(through sequence: UInt64) {
        guard acknowledges else { return }
        client.acknowledge(id, through: sequence)
    }
}
