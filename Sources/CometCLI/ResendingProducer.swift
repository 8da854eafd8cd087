import Comet

/// Pushes each message exactly once across a reconnect: messages published since the last
/// answer are kept; when the connection was lost, the channel's last sequence number (ADOPT)
/// says how many of them landed, and the rest are published again, in order. The channel is
/// this command's own (it created it), so message k of the command is sequence k.
struct ResendingProducer {
    let producer: ChannelProducer
    let reconnects: Bool
    /// Messages published and not yet known to be in the channel, and the sequence number of
    /// the last one that is.
    private var unconfirmed: [[UInt8]] = []
    private var confirmed: UInt64 = 0
    /// Published messages are confirmed in groups of this many (so a long stream holds at most
    /// this many for resending).
    static let window = 4096

    init(producer: ChannelProducer, reconnects: Bool) {
        self.producer = producer
        self.reconnects = reconnects
    }

    mutating func publish(_ message: [UInt8]) async throws {
        await producer.publish(message)
        guard reconnects else { return }
        unconfirmed.append(message)
        if unconfirmed.count >= Self.window { try await flush() }
    }

    /// Waits until everything published is in; returns the last sequence number.
    @discardableResult
    mutating func flush() async throws -> UInt64 {
        while true {
            do {
                let last = try await producer.flush()
                unconfirmed = []
                confirmed = max(confirmed, last)
                return last
            } catch let error as ConnectionError where reconnects && error.kind == .lost {
                try await resynchronize()
                for message in unconfirmed { await producer.publish(message) }
            }
        }
    }

    /// Pushes one message and returns its sequence number.
    mutating func push(_ message: [UInt8]) async throws -> UInt64 {
        while true {
            do {
                let sequence = try await producer.push(message)
                confirmed = sequence
                return sequence
            } catch let error as ConnectionError where reconnects && error.kind == .lost {
                unconfirmed = [message]
                try await resynchronize()
                if unconfirmed.isEmpty { return confirmed }
            }
        }
    }

    /// After a lost connection: drops from `unconfirmed` what landed.
    private mutating func resynchronize() async throws {
        let last = try await producer.lastSequence()
        let landed = Int(min(UInt64(unconfirmed.count), last > confirmed ? last - confirmed : 0))
        unconfirmed.removeFirst(landed)
        confirmed = last
    }
}
