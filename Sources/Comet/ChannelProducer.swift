import CometWire
import NIOCore

/// The producer's handle on a channel it created. Pushes are answered with sequence numbers.
///
/// Sendable: pushes from several tasks are each numbered; their order is the order they reach
/// the connection.
public struct ChannelProducer: Sendable {
    let client: CometClient
    public let name: String
    /// The daemon-wide channel handle.
    public let id: UInt64
    /// The channel's epoch: readers compare it when they resume.
    public let epoch: UInt64
    /// Pushes made with `publish`, shared by copies of this producer.
    let queue: PublishQueue

    /// Proves this producer to ADOPT (0, 0 from a daemon before 0.5).
    let token: (high: UInt64, low: UInt64)

    init(client: CometClient, name: String, id: UInt64, epoch: UInt64, token: (high: UInt64, low: UInt64) = (0, 0)) {
        self.token = token
        self.client = client
        self.name = name
        self.id = id
        self.epoch = epoch
        self.queue = PublishQueue(client: client, channel: id)
    }

    /// The sequence number of the last message in the channel, asked of the daemon (ADOPT). With
    /// a daemon that takes numbered pushes (comet 0.6 on) a reconnect needs none of this: the
    /// pushes without an answer are sent again and applied once. With an older daemon, a push
    /// that failed with `ConnectionError.lost` landed if its number is at most this.
    public func lastSequence() async throws -> UInt64 {
        try await client.request(.adopt(channel: id, tokenHigh: token.high, tokenLow: token.low)) { try AdoptReply(from: &$0).lastSequence }
    }

    /// Pushes one message without waiting for its answer, as NATS clients publish: messages are
    /// queued and sent in PUSH_BATCH frames, in order. Returns at once unless 4 MiB are already
    /// queued or unanswered (then it waits for answers). A refusal (e.g. `.quotaExceeded`) is
    /// thrown by the next `flush()`. Payloads above `maxPayloadSize` are refused by the daemon.
    public func publish(_ payload: some Sequence<UInt8>) async {
        await queue.publish(payload)
    }

    /// Waits until every message published so far is in its channel (or refused); throws the
    /// first refusal since the last flush, else returns the last sequence number pushed.
    @discardableResult
    public func flush() async throws -> UInt64 {
        try await queue.flush()
    }

    /// The largest payload one push can carry on this connection.
    public var maxPayloadSize: Int { Int(client.server.maxFrameSize) - (client.numbersPushes ? Self.numberedOverhead + 4 : 13) }
    static let numberedOverhead = 1 + 4 + 8 + 8 + 4

    /// Pushes one message and returns its sequence number. With automatic reconnection, a push
    /// in flight when the connection is lost is sent again once it is back, and applied once.
    /// - Throws: `CometError` with `.invalidArgument`, without sending, for a payload above `maxPayloadSize`.
    @discardableResult
    public func push(_ payload: some Sequence<UInt8>) async throws -> UInt64 {
        if client.numbersPushes {
            var messages = ByteBuffer()
            messages.writeBatchEntry(payload)
            try checkSize(Self.numberedOverhead + messages.readableBytes)
            return try await client.pushNumbered(channel: id, count: 1, messages: messages).firstSequence
        }
        let buffer = ByteBuffer(bytes: payload)
        try checkSize(13 + buffer.readableBytes)
        return try await client.request(.push(channel: id, payload: buffer)) {
            try PushReply(from: &$0).firstSequence
        }
    }

    /// Pushes a UTF-8 string.
    @discardableResult
    public func push(_ text: String) async throws -> UInt64 {
        try await push(Array(text.utf8))
    }

    /// Pushes several messages in one frame; returns the sequence numbers they got.
    @discardableResult
    public func push<Payloads: Sequence>(batch: Payloads) async throws -> ClosedRange<UInt64>
    where Payloads.Element: Sequence<UInt8> {
        if client.numbersPushes {
            var messages = ByteBuffer()
            var count: UInt32 = 0
            for payload in batch {
                messages.writeBatchEntry(payload)
                count += 1
            }
            guard count > 0 else { throw CometError(code: .invalidArgument, message: "a batch holds at least one message") }
            try checkSize(Self.numberedOverhead + messages.readableBytes)
            let reply = try await client.pushNumbered(channel: id, count: count, messages: messages)
            return reply.firstSequence...(reply.firstSequence + UInt64(reply.count) - 1)
        }
        let buffers = batch.map { ByteBuffer(bytes: $0) }
        guard !buffers.isEmpty else { throw CometError(code: .invalidArgument, message: "a batch holds at least one message") }
        try checkSize(1 + 4 + 8 + 4 + buffers.reduce(0) { $0 + 4 + $1.readableBytes })
        let reply = try await client.request(.pushBatch(channel: id, payloads: MessageBatch(buffers))) { try PushReply(from: &$0) }
        return reply.firstSequence...(reply.firstSequence + UInt64(reply.count) - 1)
    }

    private func checkSize(_ frameBody: Int) throws {
        guard frameBody <= Int(client.server.maxFrameSize) else {
            throw CometError(code: .invalidArgument, message: "a frame of \(frameBody) bytes exceeds the daemon's maximum of \(client.server.maxFrameSize)")
        }
    }

    /// Closes the channel: readers get what is buffered, then `ChannelClosed`. Returns the last sequence number.
    @discardableResult
    public func close() async throws -> UInt64 {
        client.stopsProducing(id)
        defer { client.forgetLedger(id) }
        return try await client.request(.close(channel: id)) { try CloseReply(from: &$0).lastSequence }
    }

    /// Pushes every element of `source` in order, pipelined (`publish`, many requests in flight,
    /// coalesced into PUSH_BATCH frames), and returns the sequence number of the last one once all
    /// are in (0 if `source` was empty). Throws the first refusal. Does not close the channel.
    @discardableResult
    public func push<Source: AsyncSequence>(contentsOf source: Source) async throws -> UInt64
    where Source.Element: Sequence<UInt8> {
        // Chunks are laid out here, without a lock, and queued one at a time.
        var chunk = ByteBuffer()
        var count: UInt32 = 0
        var any = false
        for try await element in source {
            chunk.writeBatchEntry(element)
            count += 1
            any = true
            if chunk.readableBytes >= PublishQueue.batchBytes {
                await queue.publish(laidOut: chunk, count: count)
                chunk = ByteBuffer()
                count = 0
            }
        }
        await queue.publish(laidOut: chunk, count: count)
        let last = try await flush()
        return any ? last : 0
    }
}

extension CometClient {
    /// Eliom's `create` from a stream: creates channel `name`, pushes every element of `source`,
    /// then closes the channel when `source` ends (or fails). Returns the last sequence number.
    @discardableResult
    public func produce<Source: AsyncSequence>(_ name: String, size: Int? = nil, from source: Source) async throws -> UInt64
    where Source.Element: Sequence<UInt8> {
        let producer = try await create(name, size: size)
        do {
            try await producer.push(contentsOf: source)
        } catch {
            _ = try? await producer.close()
            throw error
        }
        return try await producer.close()
    }
}
