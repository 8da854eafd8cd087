import CometChannels
import CometState
import CometWire
import NIOCore

extension Broker {
    /// Queues `conn` for the next delivery pass.
    func markDirty(_ conn: ConnectionState) {
        guard delivery.enqueue(conn) else { return }
        if delivery.inPass {
            // Queued by a delivery pass (a reader with more to take): the next pass comes after
            // the loop polled its sockets, so that delivery cannot hold everyone else's requests.
            atNextTurn { self.deliverDirty() }
        } else {
            eventLoop.execute { self.deliverDirty() }
        }
    }

    /// Queues every connection that reads `channel`.
    func wakeReaders(of channel: SiteChannel<ByteRing>) {
        for reader in channel.readers.keys {
            if let conn = connections[reader] { markDirty(conn) }
        }
    }

    /// One delivery pass: every queued connection gets what its subscriptions can take, in one
    /// flush, until the pass has written `deliveryPassBudget` bytes: the rest wait for the next
    /// turn of the loop, so that hundreds of readers woken at once cannot stall everyone else.
    func deliverDirty() {
        let batch = delivery.beginPass()
        defer { delivery.endPass() }
        let start = delivery.bytesWritten
        for (index, conn) in batch.enumerated() {
            if delivery.bytesWritten - start >= configuration.deliveryPassBudget {
                // The rest wait for the next turn of the loop, after it polled its sockets: a
                // fan-out to hundreds of readers cannot keep other connections' requests waiting.
                if delivery.requeue(batch[index...]) { atNextTurn { self.deliverDirty() } }
                return
            }
            delivery.serving(conn)
            deliver(to: conn)
        }
    }

    /// Copies messages from the rings into `conn`'s outbox while its socket keeps up, then flushes.
    ///
    /// Stops at the delivery budget (the connection is queued again so others get their turn) or
    /// when the socket's queue passes the high watermark (`writabilityChanged` queues it again).
    func deliver(to conn: ConnectionState) {
        guard !conn.isClosing else { return }
        if conn.queuedOutput > 0 { syncQueuedOutput(conn) }
        let writable = conn.context.channel.isWritable
        if writable, !conn.subscriptions.isEmpty, !outputStarved(conn) {
            // Work on a local copy of the outbox: one exclusive access per pass, not per message.
            var out = conn.outbox
            conn.outbox = ByteBuffer()
            let limit = out.writerIndex + configuration.deliveryBudget
            var ended: [UInt32] = []
            var advanced: [(UInt32, UInt64)] = []
            var remapped: [(UInt32, MappedReading)] = []
            var more = false
            for (id, sub) in conn.subscriptions {
                let cursor: UInt64
                let state: ReadResult<Void>
                switch sub.source {
                case .site(let channel):
                    let start: UInt64
                    if let mapped = sub.mapped {
                        start = sub.cursor
                        let reading: MappedReading
                        (cursor, reading) = announceRing(of: channel, to: id, mapped, from: start, conn, into: &out)
                        remapped.append((id, reading))
                    } else if let back = sub.ringReturn, back.isDue(now: uptime(), cursor: sub.cursor, unwritten: conn.queuedOutput, of: channel) {
                        // Caught up after a detach: back to its ring (a ticket for it comes first).
                        start = sub.cursor
                        let reading: MappedReading
                        (cursor, reading) = announceRing(of: channel, to: id, giveRingBack(channel, to: sub, back), from: start, conn, into: &out)
                        remapped.append((id, reading))
                    } else {
                        start = channel.catchUp(sub.cursor)
                        (cursor, more) = Self.copyMessages(subscription: id, from: start, of: channel.ring, into: &out, limit: limit)
                    }
                    channel.deliveredCount &+= cursor &- start
                    state = channel.read(at: cursor).state
                case .clientProcess(let channel):
                    (cursor, more) = Self.copyMessages(subscription: id, from: sub.cursor, of: channel.ring, into: &out, limit: limit)
                    state = channel.read(at: cursor).state
                    // Closed and everything delivered: nothing more can come.
                    if !more, case .closed = state { forgetPrivate(channel) }
                case nil:
                    continue
                }
                if cursor != sub.cursor { advanced.append((id, cursor)) }
                if more { break }
                switch state {
                case .message:
                    break
                case .caughtUp:
                    // A stalled import: a reader that has everything is told, not left waiting.
                    if case .site(let channel) = sub.source, let reason = channel.stalled {
                        ServerFrame.failed(
                            subscription: id, code: .upstreamUnreachable,
                            message: "the import '\(sub.name)' is stalled after message \(channel.lastSequence): \(reason)"
                        ).encode(into: &out)
                        ended.append(id)
                    }
                case .full(let first):
                    if case .site(let channel) = sub.source { channel.fullCount &+= 1 }
                    ServerFrame.full(subscription: id, firstAvailable: first).encode(into: &out)
                    ended.append(id)
                    logLimiter.log(logger, .info, kind: "full", "a reader fell behind its channel (FULL)", metadata: [
                        "uid": "\(conn.uid)", "channel": "\(sub.name)", "first_available": "\(first)",
                    ])
                case .closed(let last):
                    if case .site(let channel) = sub.source, let epoch = channel.replacedByEpoch {
                        ServerFrame.reset(subscription: id, epoch: epoch).encode(into: &out)
                    } else {
                        ServerFrame.closed(subscription: id, lastSequence: last).encode(into: &out)
                    }
                    ended.append(id)
                }
            }
            conn.outbox = out
            for (id, cursor) in advanced { conn.subscriptions[id]?.cursor = cursor }
            for (id, reading) in remapped {
                conn.subscriptions[id]?.mapped = reading
                conn.subscriptions[id]?.ringReturn = nil
            }
            for id in ended {
                if let sub = conn.subscriptions.removeValue(forKey: id) { detach(sub, of: conn) }
            }
            if more { markDirty(conn) }
        }
        flush(conn)
    }

    /// Copies the messages from `cursor` on into `out`, until the ring has no more or `out` reaches
    /// `limit`. Returns the new cursor and whether the limit stopped it.
    @inline(__always)
    static func copyMessages(
        subscription id: UInt32, from start: UInt64, of ring: ByteRing, into out: inout ByteBuffer, limit: Int
    ) -> (UInt64, Bool) {
        var sequence = start
        var stopped = false
        let next = ring.forEach(from: start) { payload in
            if out.writerIndex >= limit {
                stopped = true
                return false
            }
            ServerFrame.writeMessage(subscription: id, sequence: sequence, bytes: payload, into: &out)
            sequence += 1
            return true
        }
        return (next, stopped)
    }

    /// Hands the outbox to the socket.
    func flush(_ conn: ConnectionState) {
        guard conn.outbox.readableBytes > 0 else {
            if conn.inputClosed, !conn.inputPending { closeAfterFlush(conn) }
            return
        }
        let out = conn.outbox
        delivery.wrote(out.readableBytes)
        // A busy connection keeps a buffer sized for the next pass; one whose socket is backed up
        // (a slow reader) holds no buffer while it waits.
        conn.outbox = conn.context.channel.allocator.buffer(capacity: 0)
        write(out, to: conn)
        // Only a connection that just wrote a lot (a busy reader) keeps a buffer for the next
        // pass; an idle one holds none (memory per idle subscriber).
        if out.readableBytes >= 16 * 1024, conn.context.channel.isWritable {
            conn.outbox.reserveCapacity(min(out.capacity, configuration.deliveryBudget + 4096))
        }
        if conn.inputClosed, !conn.inputPending { closeAfterFlush(conn) }
    }
}

