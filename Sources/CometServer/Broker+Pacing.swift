import CometChannels
import CometWire
import NIOCore

/// FULL only for readers that cannot keep up: before a push evicts a message that a subscribed
/// reader has not been handed yet, the reader's connection is handed what it is missing, as long
/// as that connection's queue (outbox and bytes the socket has not taken) stays under
/// `readerQueueBound`. When a reader's queue is full, the producer's next such push waits (its
/// requests are not read) until the reader's socket drains, for at most `readerGrace`; then the
/// push goes in and the reader, which could not keep up, gets FULL (docs/SEMANTICS.md, "When a
/// reader gets FULL").
extension Broker {
    /// Whether `conn`'s `request` must wait for a reader of its channel whose queue is full. Hands
    /// readers what they miss first; called before the request is handled.
    func mustHold(_ request: Request, from conn: ConnectionState) -> Bool {
        let channelID: UInt64
        let count: Int
        switch request.operation {
        case .push(let id, _): (channelID, count) = (id, 1)
        case .pushBatch(let id, let payloads): (channelID, count) = (id, payloads.count)
        default: return false
        }
        guard conn.handshaken, !Self.isPrivateHandle(channelID), let channel = try? registry.owned(channelID, by: conn.id),
            !channel.isClosed, channel.room(above: channel.protectedFloor) < count
        else { return false }
        // Bytes this pass may copy: many slow readers cannot stall the loop all at once; those
        // left over wait like readers with a full queue, and are served again next turn.
        let laggards = handOver(channel, budget: configuration.handOverBudget)
        guard laggards.floor != .max, channel.room(above: laggards.floor) < count else {
            conn.pacingSince = nil
            return false
        }
        let now = NIODeadline.now()
        if let since = conn.pacingSince {
            if now - since >= configuration.readerGrace {
                // The readers had their time: the push goes in, and they get FULL.
                conn.pacingSince = nil
                logLimiter.log(logger, .info, kind: "grace", "readers did not drain within the grace; they lose messages (FULL)", metadata: [
                    "channel": "\(channel.name)", "readers": "\(laggards.connections.count)",
                ])
                return false
            }
        } else {
            conn.pacingSince = now
            let producer = conn.id
            eventLoop.scheduleTask(in: configuration.readerGrace) { [weak self] in
                self?.connections[producer]?.resumeInput?()
            }
        }
        for reader in laggards.connections { reader.pacedProducers.insert(conn.id) }
        // A reader left behind by the pass's budget or its user's output quota, not by a full
        // queue, has no writability change to wake the producer: try again shortly.
        if laggards.connections.contains(where: { $0.pendingOutput < configuration.readerQueueBound }) {
            let producer = conn.id
            eventLoop.scheduleTask(in: .milliseconds(1)) { [weak self] in self?.connections[producer]?.resumeInput?() }
        }
        return true
    }

    /// A reader's queue drained (or it left): producers that waited for it go on.
    func readerDrained(_ reader: ConnectionState) {
        guard !reader.pacedProducers.isEmpty else { return }
        let producers = reader.pacedProducers
        reader.pacedProducers = []
        for id in producers { connections[id]?.resumeInput?() }
    }

    /// Appends `payloads` to `channel` in slices that evict nothing a protected reader still
    /// needs, handing readers what they miss between slices. Each message is copied out of the
    /// read buffer into one block for the whole batch (a ring never pins a socket's buffers), as
    /// it is appended. Returns the first sequence number; `block` is the batch's bytes, in order.
    func pushHandingOver(
        _ payloads: [ByteBuffer], to channel: SiteChannel<ByteBuffer>, allocator: ByteBufferAllocator, block: inout ByteBuffer
    ) throws(ChannelRefusal) -> UInt64 {
        var bytes = allocator.buffer(capacity: payloads.reduce(0) { $0 + $1.readableBytes })
        for payload in payloads { bytes.writeImmutableBuffer(payload) }
        block = bytes
        var offset = 0
        let slice = { (i: Int) -> ByteBuffer in
            let length = payloads[i].readableBytes
            defer { offset += length }
            return bytes.getSlice(at: offset, length: length)!
        }
        var room = channel.room(above: channel.protectedFloor)
        if room >= payloads.count { return try channel.push(count: payloads.count, slice) }
        var first: UInt64 = 0
        var start = 0
        while start < payloads.count {
            if room <= 0 {
                handOver(channel)
                // Nothing protected any more (every reader's queue is full): the rest goes in at once.
                room = max(1, channel.room(above: channel.protectedFloor))
            }
            let end = start + min(room, payloads.count - start)
            let base = start
            let seq = try channel.push(count: end - start) { slice(base + $0) }
            if start == 0 { first = seq }
            room -= end - start
            start = end
        }
        return first
    }

    /// Appends one relayed message, handing local readers what they miss first.
    func pushRelayedHandingOver(_ payload: ByteBuffer, sequence: UInt64, to channel: SiteChannel<ByteBuffer>) {
        if sequence == channel.lastSequence + 1, channel.room(above: channel.protectedFloor) <= 0 { handOver(channel) }
        channel.pushRelayed(payload, sequence: sequence)
    }

    /// Copies every message of `channel` its readers have not been handed into their connections'
    /// outboxes, each up to `readerQueueBound` of queued output, and raises the channel's floor to
    /// the lowest cursor among the readers the ring still serves. Returns the readers whose queue
    /// is full while they still miss messages the ring holds, and the lowest of their cursors.
    @discardableResult
    func handOver(_ channel: SiteChannel<ByteBuffer>, budget: Int = .max) -> (connections: [ConnectionState], floor: UInt64) {
        let bound = configuration.readerQueueBound
        let last = channel.lastSequence
        let first = channel.ring.firstSequence
        var floor = UInt64.max
        var laggards: [ConnectionState] = []
        var laggardFloor = UInt64.max
        var budget = budget
        for reader in channel.readers.keys {
            guard let conn = connections[reader], !conn.isClosing else { continue }
            for (id, sub) in conn.subscriptions {
                guard case .site(let read) = sub.source, read === channel else { continue }
                var cursor = sub.cursor
                let room = min(bound - conn.pendingOutput, budget)
                if cursor <= last, room > 0, !outputStarved(conn) {
                    let before = conn.outbox.writerIndex
                    (cursor, _) = Self.copyMessages(
                        subscription: id, from: cursor, of: channel.ring, into: &conn.outbox, limit: conn.outbox.writerIndex + room)
                    budget -= conn.outbox.writerIndex - before
                    channel.deliveredCount &+= cursor &- sub.cursor
                    conn.subscriptions[id]?.cursor = cursor
                    // Written (and charged to the reader's user) now, so that the user's quota
                    // of queued output bounds what its readers are handed.
                    flush(conn)
                }
                // A reader whose queue is full stays protected (its producer waits for it, within
                // the grace); one whose next message is already gone is not: it gets FULL.
                if cursor >= first { floor = min(floor, cursor) }
                if cursor >= first, cursor <= last {
                    laggards.append(conn)
                    laggardFloor = min(laggardFloor, cursor)
                }
            }
        }
        channel.protectedFloor = floor
        return (laggards, laggardFloor)
    }
}
