import CometChannels
import CometState
import CometWire
import NIOCore

/// Charging users for what they make, and releasing it when it goes.
extension Broker {
    /// Checks that `uid` may buffer `payloads` in a ring now holding `ring` (with what the ring
    /// would evict taken into account).
    func checkBuffered(_ payloads: MessageBatch, in ring: some ChannelRing, uid: UInt32) throws(ChannelRefusal) {
        let overhead = configuration.messageOverhead
        // Of a batch longer than the ring, only the last `capacity` messages stay.
        let kept = payloads.dropFirst(payloads.count - ring.capacity)
        let after = ring.bytesAfterAppending(count: payloads.count, keptWeight: kept.payloadBytes + kept.count * overhead)
        do {
            try accounts.check(.bufferedBytes, after - ring.bytes, uid: uid)
        } catch {
            refused(error, uid: uid)
            throw error
        }
    }

    /// Brings a channel's charge in line with what its ring holds.
    func syncCharge(_ channel: some ChargedChannel) {
        let delta = channel.bufferedBytes - channel.chargedBytes
        if delta > 0 { accounts.force(.bufferedBytes, delta, uid: channel.creator.uid) }
        if delta < 0 { accounts.release(.bufferedBytes, -delta, uid: channel.creator.uid) }
        channel.chargedBytes = channel.bufferedBytes
    }

    /// A site channel was closed (CLOSE, its producer left, shutdown): its name is free, its
    /// creator's channel count goes down, readers are woken to drain it. With a store, a channel
    /// that readers still read stays in it, marked closed, and resumable by name and epoch for the
    /// session grace period (`keepClosed`): a crash meanwhile costs its readers nothing.
    func channelClosed(_ channel: SiteChannel<ByteRing>) {
        accounts.release(.channels, uid: channel.creator.uid)
        if stateStore != nil, !isShuttingDown, channel.subscriberCount > 0, !Self.isMirror(channel.id) {
            channel.ring.setFlags(RingFile.closedFlag)
            keepClosed(channel)
        } else {
            storeGone(channel.id, ring: channel.ring)
        }
        wakeReaders(of: channel)
        releaseIfDrained(channel)
    }

    /// Keeps a closed channel resumable for the session grace period from now, and for as long
    /// as readers read it.
    func keepClosed(_ channel: SiteChannel<ByteRing>) {
        let grace = configuration.sessionGrace
        closedChannels.keep(channel, until: uptime() + UInt64(max(0, grace.nanoseconds)))
        eventLoop.scheduleTask(in: grace) { [weak self] in
            guard let self else { return }
            for kept in self.closedChannels.channels { self.releaseIfDrained(kept) }
        }
    }

    /// Frees a closed channel that no reader needs any more: its messages, and its place among
    /// the kept closed channels and in the store.
    func releaseIfDrained(_ channel: SiteChannel<ByteRing>) {
        guard channel.isClosed, closedChannels.mayRelease(channel, now: uptime()) else { return }
        if closedChannels.remove(channel) { storeGone(channel.id, ring: channel.ring) }
        guard channel.bufferedBytes > 0 || channel.chargedBytes > 0 else { return }
        channel.discardMessages()
        syncCharge(channel)
    }

    /// A private channel is forgotten: its count and its messages are released.
    func dropPrivate(_ channel: PrivateChannel<ByteRing>) {
        guard privateChannels.remove(channel) else { return }
        channel.close()
        storeGone(channel.id, ring: channel.ring)
        accounts.release(.channels, uid: channel.creator.uid)
        channel.discardMessages()
        syncCharge(channel)
    }

    /// Charges one object of `resource` to `conn`'s user, logging a refusal.
    func charge(_ resource: Resource, _ conn: ConnectionState) throws(ChannelRefusal) {
        do {
            try accounts.charge(resource, uid: conn.uid)
        } catch {
            refused(error, uid: conn.uid)
            throw error
        }
    }

    // MARK: Queued output

    /// Hands `buffer` to the socket; what the socket does not take at once is charged to the
    /// user as queued output until it is written.
    func write(_ buffer: ByteBuffer, to conn: ConnectionState) {
        conn.context.writeAndFlush(NIOAny(buffer), promise: nil)
        syncQueuedOutput(conn)
        // What the socket did not take is kept by reference (NIO holds the same storage), so that
        // a live upgrade can hand it to the next process (docs/RESTARTS.md).
        if conn.queuedOutput > 0 {
            conn.unsent.append(buffer)
            conn.unsentBytes += buffer.readableBytes
            conn.trimUnsent()
        }
    }

    /// Brings `conn`'s charge for queued output in line with what its channel still buffers
    /// (NIO's count: no promise and no callback per write). Called after each write, when the
    /// socket drains (writability), by the sweeper, and when the connection closes.
    func syncQueuedOutput(_ conn: ConnectionState, closing: Bool = false) {
        let now = closing ? 0 : conn.socketQueue?() ?? (try? conn.context.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? conn.queuedOutput
        let delta = now - conn.queuedOutput
        guard delta != 0 else { return }
        conn.queuedOutput = now
        if conn.unsentBytes > now { conn.trimUnsent() }
        if delta > 0 {
            accounts.force(.queuedOutputBytes, delta, uid: conn.uid)
        } else {
            accounts.release(.queuedOutputBytes, -delta, uid: conn.uid)
            wakeStarved(uid: conn.uid)
        }
    }

    /// Whether delivery of messages to `conn` must wait for its user's queued output to go down.
    func outputStarved(_ conn: ConnectionState) -> Bool {
        guard accounts.isExhausted(.queuedOutputBytes, uid: conn.uid) else { return false }
        if starved.starve(conn) {
            logLimiter.log(logger, .notice, kind: "output-quota", "delivery paused: the user's queued output reached its quota", metadata: ["uid": "\(conn.uid)"])
        }
        return true
    }

    /// Queues the user's paused connections again once its queued output is under quota.
    func wakeStarved(uid: UInt32) {
        guard starved.hasWaiting(uid: uid), !accounts.isExhausted(.queuedOutputBytes, uid: uid) else { return }
        for conn in starved.wake(uid: uid, in: connections) {
            markDirty(conn)
            readerDrained(conn)
        }
    }

    // MARK: Unfinished frames

    /// Charges the bytes of `conn`'s unfinished frame; false when that passes the user's quota.
    func chargeUnfinishedFrame(_ bytes: Int, _ conn: ConnectionState) -> Bool {
        let delta = bytes - conn.unfinishedFrameBytes
        if delta <= 0 {
            accounts.release(.unfinishedFrameBytes, -delta, uid: conn.uid)
            conn.unfinishedFrameBytes = bytes
            return true
        }
        do {
            try accounts.charge(.unfinishedFrameBytes, delta, uid: conn.uid)
            conn.unfinishedFrameBytes = bytes
            return true
        } catch {
            refused(error, uid: conn.uid)
            fail(conn, WireError(.quotaExceeded, error.message), log: false)
            return false
        }
    }
}
