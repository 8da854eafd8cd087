import CometWire
import NIOConcurrencyHelpers
import NIOCore

/// Pushes made without awaiting their answers (`ChannelProducer.publish`): collected under a lock
/// from any task, laid out as PUSH_BATCH frames want them, and handed to the connection's event
/// loop in batches: one hop and one frame per batch, not per message.
///
/// At most `limit` bytes are queued or unanswered; a publisher past it waits for answers.
final class PublishQueue: @unchecked Sendable {
    private struct State {
        /// Messages not yet handed to the loop: batches already full, and the one filling.
        var sealed: [(messages: ByteBuffer, count: UInt32)] = []
        var filling = ByteBuffer()
        var fillingCount: UInt32 = 0
        var handOffScheduled = false
        /// Bytes queued here or sent and not yet answered.
        var outstanding = 0
        var roomWaiters: [CheckedContinuation<Void, Never>] = []
        /// The first refusal since the last flush.
        var failure: Error?
        var lastSequence: UInt64 = 0
    }

    static let batchBytes = 64 * 1024
    let limit: Int
    private let state = NIOLockedValueBox(State())
    private let channel: UInt64
    private let client: CometClient

    init(client: CometClient, channel: UInt64, limit: Int = 4 << 20) {
        self.client = client
        self.channel = channel
        self.limit = limit
    }

    /// Queues one message; waits only while more than `limit` bytes are outstanding.
    func publish(_ payload: some Sequence<UInt8>) async {
        let (schedule, full) = state.withLockedValue { s -> (Bool, Bool) in
            let size = s.filling.writeBatchEntry(payload)
            s.fillingCount += 1
            s.outstanding += 4 + size
            if s.filling.readableBytes >= Self.batchBytes {
                s.sealed.append((s.filling, s.fillingCount))
                s.filling = ByteBuffer()
                s.fillingCount = 0
            }
            let schedule = !s.handOffScheduled
            s.handOffScheduled = true
            return (schedule, s.outstanding > limit)
        }
        await afterQueueing(schedule: schedule, full: full)
    }

    /// Queues messages already laid out as PUSH_BATCH has them (`count` of them in `messages`):
    /// one lock for a whole chunk (`push(contentsOf:)` collects its chunks without a lock).
    func publish(laidOut messages: ByteBuffer, count: UInt32) async {
        guard count > 0 else { return }
        let (schedule, full) = state.withLockedValue { s -> (Bool, Bool) in
            if s.fillingCount > 0 {
                s.sealed.append((s.filling, s.fillingCount))
                s.filling = ByteBuffer()
                s.fillingCount = 0
            }
            s.sealed.append((messages, count))
            s.outstanding += messages.readableBytes
            let schedule = !s.handOffScheduled
            s.handOffScheduled = true
            return (schedule, s.outstanding > limit)
        }
        await afterQueueing(schedule: schedule, full: full)
    }

    /// Hands the queue to the loop if nobody has yet, and waits while more than `limit` bytes
    /// are outstanding.
    private func afterQueueing(schedule: Bool, full: Bool) async {
        if schedule { client.eventLoop.execute { self.handOff() } }
        guard full else { return }
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLockedValue { s -> Bool in
                guard s.outstanding > limit else { return true }
                s.roomWaiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// On the event loop: frames everything queued and sends it.
    func handOff() {
        let batches = state.withLockedValue { s -> [(messages: ByteBuffer, count: UInt32)] in
            s.handOffScheduled = false
            var all = s.sealed
            s.sealed = []
            if s.fillingCount > 0 {
                all.append((s.filling, s.fillingCount))
                s.filling = ByteBuffer()
                s.fillingCount = 0
            }
            return all
        }
        let channel = self.channel
        let numbered = client.numbersPushes
        for batch in batches {
            let bytes = batch.messages.readableBytes
            if numbered {
                client.handlerSendNumbered(channel: channel, count: batch.count, messages: batch.messages) { result in
                    self.answered(result, bytes: bytes)
                }
                continue
            }
            client.handlerSend(completion: { result in self.answered(result, bytes: bytes) }) { id, out in
                Request.encodePushBatch(id: id, channel: channel, count: batch.count, messages: batch.messages, into: &out)
            }
        }
    }

    private func answered(_ result: Result<ByteBuffer, Error>, bytes: Int) {
        let waiters = state.withLockedValue { s -> [CheckedContinuation<Void, Never>] in
            s.outstanding -= bytes
            switch result {
            case .success(var body):
                if let reply = try? PushReply(from: &body) {
                    s.lastSequence = max(s.lastSequence, reply.firstSequence + UInt64(reply.count) - 1)
                }
            case .failure(let error):
                if s.failure == nil { s.failure = error }
            }
            guard s.outstanding <= limit else { return [] }
            defer { s.roomWaiters = [] }
            return s.roomWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Waits until everything published so far is answered; throws the first refusal since the
    /// last flush, else returns the sequence number of the last message in.
    func flush() async throws -> UInt64 {
        try await client.eventLoop.submit { self.handOff() }.get()
        // A barrier after the pushes; a lost connection loses no numbered push (they are sent
        // again once it is back), so the barrier is asked again behind them.
        while true {
            do {
                try await client.ping()
                break
            } catch let error as ConnectionError where error.kind == .lost && client.numbersPushes {
                guard await client.reconnects() else { throw error }
            }
        }
        return try state.withLockedValue { s in
            if let failure = s.failure {
                s.failure = nil
                throw failure
            }
            return s.lastSequence
        }
    }
}

extension ByteBuffer {
    /// Appends one message as PUSH_BATCH and PUSH_NUMBERED lay them out (`u32 length`, bytes);
    /// returns its length.
    @discardableResult
    mutating func writeBatchEntry(_ payload: some Sequence<UInt8>) -> Int {
        let at = writerIndex
        writeInteger(UInt32(0))
        let size = writeBytes(payload)
        setInteger(UInt32(size), at: at)
        return size
    }
}
