import CometChannels
import CometWire
import NIOCore

extension Broker {
    /// Queues `conn` for the next delivery pass.
    func markDirty(_ conn: ConnectionState) {
        guard !conn.isDirty, !conn.isClosing else { return }
        conn.isDirty = true
        dirty.append(conn)
        if !deliveryScheduled {
            deliveryScheduled = true
            eventLoop.execute { self.deliverDirty() }
        }
    }

    /// Queues every connection that reads `channel`.
    func wakeReaders(of channel: SiteChannel<ByteBuffer>) {
        for reader in channel.readers.keys {
            if let conn = connections[reader] { markDirty(conn) }
        }
    }

    /// One delivery pass: every queued connection gets what its subscriptions can take, in one flush.
    func deliverDirty() {
        deliveryScheduled = false
        let batch = dirty
        dirty = []
        for conn in batch {
            conn.isDirty = false
            deliver(to: conn)
        }
    }

    /// Copies messages from the rings into `conn`'s outbox while its socket keeps up, then flushes.
    ///
    /// Stops at the delivery budget (the connection is queued again so others get their turn) or
    /// when the socket's queue passes the high watermark (`writabilityChanged` queues it again).
    func deliver(to conn: ConnectionState) {
        guard !conn.isClosing else { return }
        let writable = conn.context.channel.isWritable
        if writable, !conn.subscriptions.isEmpty {
            // Work on a local copy of the outbox: one exclusive access per pass, not per message.
            var out = conn.outbox
            conn.outbox = ByteBuffer()
            let limit = out.writerIndex + configuration.deliveryBudget
            var ended: [UInt32] = []
            var advanced: [(UInt32, UInt64)] = []
            var more = false
            for (id, sub) in conn.subscriptions {
                guard let channel = sub.channel else { continue }
                var cursor = channel.catchUp(sub.cursor)
                // Copy the ring out once (a reference, not the messages): no per-message access checks.
                let ring = channel.ring
                let last = ring.lastSequence
                while cursor <= last, let payload = ring[cursor] {
                    if out.writerIndex >= limit {
                        more = true
                        break
                    }
                    ServerFrame.writeMessage(subscription: id, sequence: cursor, payload: payload, into: &out)
                    cursor += 1
                }
                if !more {
                    switch channel.read(at: cursor) {
                    case .message, .caughtUp:
                        break
                    case .full(let first):
                        ServerFrame.full(subscription: id, firstAvailable: first).encode(into: &out)
                        ended.append(id)
                    case .closed(let last):
                        ServerFrame.closed(subscription: id, lastSequence: last).encode(into: &out)
                        ended.append(id)
                    }
                }
                if cursor != sub.cursor { advanced.append((id, cursor)) }
                if more { break }
            }
            conn.outbox = out
            for (id, cursor) in advanced { conn.subscriptions[id]?.cursor = cursor }
            for id in ended {
                if let sub = conn.subscriptions.removeValue(forKey: id) { detach(sub, of: conn) }
            }
            if more { markDirty(conn) }
        }
        flush(conn)
    }

    /// Hands the outbox to the socket.
    func flush(_ conn: ConnectionState) {
        guard conn.outbox.readableBytes > 0 else {
            if conn.inputClosed { closeAfterFlush(conn) }
            return
        }
        let out = conn.outbox
        conn.outbox = conn.context.channel.allocator.buffer(capacity: min(out.capacity, configuration.deliveryBudget + 4096))
        conn.context.writeAndFlush(NIOAny(out), promise: nil)
        if conn.inputClosed { closeAfterFlush(conn) }
    }
}
