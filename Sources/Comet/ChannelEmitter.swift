import CometWire
import NIOConcurrencyHelpers
import NIOCore

/// Eliom's `create_from_events`: a channel fed by an event source that is not async. Any thread
/// may call `emit` synchronously; each call is one message.
///
/// At most `size` emitted messages may be on their way to the daemon at once; `emit` beyond that
/// throws `EmitterFull` instead of queueing without bound. Thread-safe.
public final class ChannelEmitter: Sendable {
    public let producer: ChannelProducer
    /// The most messages in flight.
    public let size: Int
    private let state = NIOLockedValueBox(State())

    struct State {
        var inFlight = 0
        var failure: CometError?
    }

    init(producer: ChannelProducer, size: Int) {
        self.producer = producer
        self.size = size
    }

    /// Sends one message without waiting for the daemon.
    /// - Throws: `EmitterFull` when `size` messages are still in flight; the `CometError` of an
    ///   earlier emit that the daemon refused (e.g. `.channelFull` on a private channel).
    public func emit(_ payload: some Sequence<UInt8>) throws {
        try state.withLockedValue { state in
            if let failure = state.failure { throw failure }
            guard state.inFlight < size else { throw EmitterFull(channel: producer.name, size: size) }
            state.inFlight += 1
        }
        let client = producer.client
        let promise = client.eventLoop.makePromise(of: UInt64.self)
        if client.numbersPushes {
            // Numbered like every push of this client: sent again after a reconnect, applied once.
            var messages = ByteBuffer()
            messages.writeBatchEntry(payload)
            client.sendNumbered(channel: producer.id, count: 1, messages: messages, promise: promise) { try PushReply(from: &$0).firstSequence }
        } else {
            client.send(.push(channel: producer.id, payload: ByteBuffer(bytes: payload)), promise: promise) {
                try PushReply(from: &$0).firstSequence
            }
        }
        let state = self.state
        promise.futureResult.whenComplete { result in
            state.withLockedValue {
                $0.inFlight -= 1
                if case .failure(let error as CometError) = result, $0.failure == nil { $0.failure = error }
            }
        }
    }

    /// Sends a UTF-8 string.
    public func emit(_ text: String) throws { try emit(Array(text.utf8)) }

    /// Messages sent and not yet answered.
    public var inFlight: Int { state.withLockedValue { $0.inFlight } }

    /// Closes the channel after everything emitted (requests are answered in order).
    @discardableResult
    public func close() async throws -> UInt64 { try await producer.close() }
}

/// `emit` found `size` messages still in flight.
public struct EmitterFull: Error, Hashable, Sendable, CustomStringConvertible {
    public var channel: String
    public var size: Int
    public var description: String { "emitter of '\(channel)' has \(size) messages in flight already" }
}

extension CometClient {
    /// Creates a channel fed by synchronous events (Eliom's `create_from_events`): a site channel,
    /// or with `session` a private channel for that session. `size` (default 1000) is both the
    /// channel's size and the most messages in flight from the emitter.
    public func createEmitter(_ name: String, size: Int? = nil, for session: UInt64? = nil) async throws -> ChannelEmitter {
        let producer: ChannelProducer
        if let session {
            producer = try await createPrivate(name, for: session, size: size)
        } else {
            producer = try await create(name, size: size)
        }
        return ChannelEmitter(producer: producer, size: size ?? 1000)
    }
}
