import CometChannels
import CometState
import CometWire
import NIOCore

/// FULL only for readers that cannot keep up: before a push evicts a message that a subscribed
/// reader has not been handed yet, the reader's connection is handed what it is missing, as long
/// as that connection's queue (outbox and bytes the socket has not taken) stays under
/// `readerQueueBound`. When the queue of a reader that may hold the producer (`ProducerHolds`:
/// same uid) is full, the producer's next such push waits until that reader's socket drains, for
/// at most `readerGrace`; then the push goes in and the reader, which could not keep up, gets
/// FULL. Any other reader whose queue is full is simply not protected: the push goes in and it
/// gets FULL (docs/SEMANTICS.md, "When a reader gets FULL").
extension Broker {
    /// Whether `conn`'s `request` must wait for a reader of its channel. Hands readers what they
    /// miss first; called before the request is handled.
    func mustHold(_ request: Request, from conn: ConnectionState) -> Bool {
        let channelID: UInt64
        var count: Int
        var number: UInt64?
        switch request.operation {
        case .push(let id, _): (channelID, count) = (id, 1)
        case .pushBatch(let id, let payloads): (channelID, count) = (id, payloads.count)
        case .pushNumbered(let id, let first, let payloads): (channelID, count, number) = (id, payloads.count, first)
        default: return false
        }
        guard conn.handshaken, !Self.isPrivateHandle(channelID), let channel = try? registry.owned(channelID, by: conn.id),
            !channel.isClosed
        else { return false }
        // A resend appends only what the channel does not have yet.
        if let number, case .apply(let skip, _) = channel.numbering.admit(number: number, count: count, lastSequence: channel.lastSequence) {
            count -= skip
        }
        guard count > 0, channel.room(above: channel.protectedFloor) < count else { return false }
        // Bytes this pass may copy: many slow readers cannot stall the loop all at once; those
        // left over are served at the next turn.
        var pass = handOver(channel, producer: conn.uid, budget: configuration.handOverBudget, detaching: false)
        let blocked = { (pass: HandOverPass) in pass.holdingFloor != .max && channel.room(above: pass.holdingFloor) < count }
        if blocked(pass), !pass.positions.isEmpty {
            // Mapped readers in the way are asked to say how far they read: they may have read on.
            pass.recountAsking(channel)
        }
        guard blocked(pass) else {
            holds.end(conn.id)
            return false
        }
        switch holds.wait(conn.id, for: pass.holding.map(\.id), now: eventLoop.now) {
        case .graceOver:
            logLimiter.log(logger, .info, kind: "grace", "readers did not drain within the grace; they lose messages (FULL)", metadata: [
                "channel": "\(channel.name)", "readers": "\(pass.holding.count)",
            ])
            return false
        case .wait(let firstWait):
            let producer = conn.id
            if firstWait {
                eventLoop.scheduleTask(in: holds.grace) { [weak self] in self?.connections[producer]?.holdReleased?() }
            }
            if pass.budgetUsed {
                // Readers left over by this pass's budget have no drain to wait for: the producer
                // tries again at the next turn (this pass copied a budget's worth: progress).
                atNextTurn { [weak self] in self?.connections[producer]?.holdReleased?() }
            }
        }
        return true
    }

    /// A reader's queue drained, a mapped reader said how far it read, or it left: producers that
    /// waited for it go on (and look again).
    func readerDrained(_ reader: ConnectionState) {
        for id in holds.drained(reader.id) { connections[id]?.holdReleased?() }
    }

    /// Appends `payloads` to `channel` in slices that evict nothing a protected reader still
    /// needs, handing readers what they miss between slices. Each message is copied once, from
    /// the read buffer into the channel's ring (a ring never pins a socket's buffers). Returns
    /// the first sequence number.
    func pushHandingOver(_ payloads: MessageBatch, to channel: SiteChannel<ByteRing>) throws(ChannelRefusal) -> UInt64 {
        let next = channel.lastSequence + 1
        if case .stored(let n) = configuration.crashPoint, n >= next, n + 1 < next + UInt64(payloads.count) {
            // Crash tests: message N is in the ring's file, the rest of its batch is not.
            _ = try pushHandingOver(payloads.prefix(Int(n - next) + 1), to: channel)
            configuration.crashPoint?.crash()
        }
        let count = payloads.count
        // The ring asks for the messages in order, each once.
        return try payloads.withPayloads { (messages) throws(ChannelRefusal) -> UInt64 in
            var room = channel.room(above: channel.protectedFloor)
            var first: UInt64 = 0
            var start = 0
            while start < count {
                if room <= 0 {
                    handOver(channel, producer: channel.creator.uid)
                    // Nothing protected any more (every reader's queue is full): the rest goes in at once.
                    room = max(1, channel.room(above: channel.protectedFloor))
                }
                let end = start + min(room, count - start)
                let seq = try channel.push(count: end - start) { _ in messages.next()! }
                if start == 0 { first = seq }
                room -= end - start
                start = end
            }
            return first
        }
    }

    /// Appends one relayed message, handing local readers what they miss first.
    /// After a jump (a gap the origin left), protected mapped readers that miss messages of the
    /// gap are detached: FULL reaches them over the socket, as it reaches socket readers.
    func pushRelayedHandingOver(_ payload: ByteBuffer, sequence: UInt64, to channel: SiteChannel<ByteRing>) {
        let jump = sequence > channel.lastSequence + 1
        if !jump, channel.room(above: channel.protectedFloor) <= 0 { handOver(channel, producer: nil) }
        payload.withUnsafeReadableBytes { channel.pushRelayed($0, sequence: sequence) }
        if jump, channel.protectedFloor < channel.ring.firstSequence { handOver(channel, producer: nil) }
    }

    /// A mapped reader detached from its ring: served over the socket from `next` on
    /// (RING_DETACHED, then MESSAGE frames), until it is given its ring back (`RingReturn`) if
    /// it asked for that.
    func moveToSocket(_ sub: Subscription, of conn: ConnectionState, from next: UInt64) -> Subscription {
        var detached = sub
        detached.mapped = nil
        detached.cursor = next
        if let mapped = sub.mapped, mapped.returns {
            detached.ringReturn = RingReturn(detachedAt: uptime(), attachedAt: mapped.attachedAt, before: mapped.detachesBefore)
        }
        conn.subscriptions[sub.id] = detached
        mappedRings.drop(connection: conn.id, subscription: sub.id)
        ServerFrame.ringDetached(subscription: sub.id, nextSequence: next).encode(into: &conn.outbox)
        // Worth an administrator's eye: readers that keep falling behind a small ring lose the
        // mapped path (a bigger ring keeps them on it).
        logLimiter.log(logger, .info, kind: "detached", "a mapped reader fell behind its ring; served over the socket from here", metadata: [
            "uid": "\(conn.uid)", "channel": "\(sub.name)", "next": "\(next)",
        ])
        return detached
    }

    /// How close to being overtaken a mapped reader that may not hold the producer comes before
    /// it is detached: a quarter of the ring (at least one message), so that a reader keeping up
    /// a little behind costs a hand-over pass only every quarter ring.
    static func mappedMargin(_ channel: SiteChannel<ByteRing>) -> Int { max(1, channel.size / 4) }

    /// What one hand-over pass found.
    struct HandOverPass {
        /// Readers that may hold the producer, whose queue is full while they still miss
        /// messages the ring holds (or, mapped, have not said they read them).
        var holding: [ConnectionState] = []
        /// Among them, mapped readers with a position page (connection, subscription, how far
        /// they read), and the lowest cursor of the others.
        var positions: [(conn: ConnectionState, subscription: UInt32, read: UInt64)] = []
        var otherFloor = UInt64.max
        /// The lowest cursor of the readers in `holding`.
        var holdingFloor: UInt64 { positions.reduce(otherFloor) { min($0, $1.read) } }
        /// The channel's protected floor without the mapped readers with a page.
        var baseFloor = UInt64.max
        /// Whether the pass stopped at its budget with readers left to serve.
        var budgetUsed = false

        /// Asks the mapped readers with a page to say how far they read (ACK once they read on,
        /// `PositionPage.want`) and reads their pages again: those that read everything up to
        /// `last` no longer hold (they stay in `holding`: a report from them only makes the
        /// producer look again). Raises `channel`'s protected floor to match.
        mutating func recountAsking(_ channel: SiteChannel<ByteRing>) {
            let last = channel.lastSequence
            // Those that read everything still bound the next pushes (from their cursor on).
            var caughtUp = UInt64.max
            defer { channel.protectedFloor = min(baseFloor, holdingFloor, caughtUp) }
            var still: [(conn: ConnectionState, subscription: UInt32, read: UInt64)] = []
            for (conn, id, before) in positions {
                guard let sub = conn.subscriptions[id], let position = sub.mapped?.position else { continue }
                let cursor = max(before, min(position.want(), sub.cursor))
                if cursor != sub.mapped?.read { conn.subscriptions[id]?.mapped?.read = cursor }
                guard cursor <= last else {
                    position.settle()
                    caughtUp = min(caughtUp, cursor)
                    continue
                }
                still.append((conn, id, cursor))
            }
            positions = still
        }
    }

    /// Copies every message of `channel` its readers have not been handed into their connections'
    /// outboxes, each up to `readerQueueBound` of queued output, and sets the channel's protected
    /// floor: the lowest cursor among the readers the next push must not overtake (those that
    /// may hold `producer`, and those whose queue still has room). A reader of another user
    /// whose queue is full is not protected: the ring moves past it and it gets FULL.
    ///
    /// A protected mapped reader that may hold `producer` and has not said it read what the push
    /// would evict holds the producer like a socket reader whose queue is full, and is asked to
    /// say how far it read; once the producer may wait no longer (`detaching`: the push goes in
    /// now), or at once on a ring smaller than `mappedHoldMinimumRing`, it is detached from the
    /// ring and handed what it misses over the socket instead. Any other protected mapped reader
    /// is detached once it is within `mappedMargin` of being overtaken: it never waits for it,
    /// but loses nothing a socket reader of its user would not.
    @discardableResult
    func handOver(_ channel: SiteChannel<ByteRing>, producer: UInt32?, budget: Int = .max, detaching: Bool = true) -> HandOverPass {
        // A ring too small to be a mapped reader's only buffer: its readers go to the socket at once.
        let detaching = detaching || channel.size < configuration.mappedHoldMinimumRing
        let bound = configuration.readerQueueBound
        let last = channel.lastSequence
        let first = channel.ring.firstSequence
        // Mapped readers with a position page that have not read everything are kept apart
        // (`HandOverPass.positions`), so that the floor can be raised when they say they read on.
        var floor = UInt64.max
        var pass = HandOverPass()
        var budget = budget
        for reader in channel.readers.keys {
            guard let conn = connections[reader], !conn.isClosing else { continue }
            let mayHold = ProducerHolds.mayHold(readerUID: conn.uid, producerUID: producer)
            for (id, found) in conn.subscriptions {
                guard case .site(let read) = found.source, read === channel else { continue }
                var sub = found
                if let mapped = sub.mapped {
                    // A mapped reader has what the ring holds. A protected one that has not said it
                    // read the oldest messages is detached from the ring before they go: from there
                    // it is handed messages as any socket reader. One that may hold the producer
                    // holds it first, until it says it read them (asked now if need be) or the
                    // producer may wait no longer.
                    guard mapped.held else { continue }
                    let cursor = mapped.readUpTo(announcedUpTo: sub.cursor)
                    if cursor != mapped.read { conn.subscriptions[id]?.mapped?.read = cursor }
                    guard cursor <= last else {
                        mapped.position?.settle()
                        floor = min(floor, cursor)
                        continue
                    }
                    if cursor >= first, !mayHold {
                        // Never waited for. Not about to be overtaken, it stays on the ring (looked
                        // at again once the ring has moved on by the margin); else it is detached.
                        if channel.room(above: cursor) >= Self.mappedMargin(channel) {
                            floor = min(floor, cursor)
                            continue
                        }
                    } else if cursor >= first, !detaching {
                        // May hold the producer, which may still wait: it holds it.
                        if mapped.position != nil {
                            // Asked to say how far it read only if the producer would wait for it.
                            pass.positions.append((conn, id, cursor))
                        } else {
                            if mapped.reportAsked < last, !mapped.reportNow {
                                conn.subscriptions[id]?.mapped?.reportNow = true
                                markDirty(conn)
                            }
                            pass.otherFloor = min(pass.otherFloor, cursor)
                            floor = min(floor, cursor)
                        }
                        pass.holding.append(conn)
                        continue
                    }
                    // Detached (overtaken already by a gap in an import: FULL comes over the socket).
                    let announced = sub.cursor
                    sub = moveToSocket(sub, of: conn, from: cursor)
                    if cursor < first { markDirty(conn) }
                    // Counted as delivered when announced; written again over the socket, they
                    // are counted there once more.
                    if announced > cursor { channel.deliveredCount -= min(channel.deliveredCount, announced - cursor) }
                }
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
                guard cursor >= first, cursor <= last else {
                    // Caught up (nothing to protect), or its next message is already gone (FULL).
                    if cursor >= first { floor = min(floor, cursor) }
                    continue
                }
                if budget <= 0 { pass.budgetUsed = true }
                if mayHold {
                    floor = min(floor, cursor)
                    pass.holding.append(conn)
                    pass.otherFloor = min(pass.otherFloor, cursor)
                } else if conn.pendingOutput < bound, !conn.starved {
                    // Room left (the budget stopped it): protected until its queue is full.
                    floor = min(floor, cursor)
                }
            }
        }
        channel.protectedFloor = min(floor, pass.holdingFloor)
        pass.baseFloor = floor
        return pass
    }
}
