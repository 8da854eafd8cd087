import CometChannels
import CometState
import CometWire
import NIOCore

extension Broker {
    /// Notes activity on a session's stateful channels (wait_timeout counts only these).
    func touch(_ sessionID: UInt64) {
        if let session = sessions.session(sessionID) { sessions.touch(session, now: uptime()) }
    }

    /// Opens the session of a new HELLO, charged to the user. A user at its session quota first
    /// loses its oldest session that has no connection and nothing addressed to it.
    func openSession(for conn: ConnectionState) throws(ChannelRefusal) -> Session {
        if accounts.isExhausted(.sessions, uid: conn.uid) {
            let idle = sessions.sessions.values
                .filter { $0.uid == conn.uid && $0.connections.isEmpty && $0.channels.isEmpty }
                .min { ($0.detachedAt ?? 0) < ($1.detachedAt ?? 0) }
            if let idle { endSession(idle) }
        }
        try charge(.sessions, conn)
        let session = sessions.open(uid: conn.uid, connection: conn.id, now: uptime())
        chargedSessions.insert(session.id)
        conn.session = session
        stored(session)
        return session
    }

    /// The live session `id`, if `conn` may address it: root, the session's own user, or whom the
    /// policy lets address sessions. Anyone else is told it does not exist.
    func addressableSession(_ id: UInt64, _ conn: ConnectionState) throws(ChannelRefusal) -> Session {
        guard let session = sessions.session(id), policy.mayAddressSession(ofUser: session.uid, conn.identity) else {
            throw ChannelRefusal(.noSuchSession, "no live session \(String(id, radix: 16))")
        }
        return session
    }

    /// RESUME: moves `conn` into session `id` if it proves ownership, then re-offers that session's
    /// private channels so the client can subscribe to them again.
    func resume(_ requestID: UInt32, session id: UInt64, token: SessionToken, _ conn: ConnectionState) {
        if conn.session?.id == id {
            ServerFrame.writeOK(requestID: requestID, into: &conn.outbox) { ResumeReply(session: id).write(to: &$0) }
            return
        }
        let target: Session
        do throws(ChannelRefusal) {
            target = try sessions.resume(id, token: token, uid: conn.uid, connection: conn.id)
        } catch {
            let code = error.wireCode
            logLimiter.log(logger, .notice, kind: "resume", "refused session resume", metadata: [
                "connection": "\(conn.id)", "uid": "\(conn.uid)", "reason": "\(code.name)",
            ])
            reply(error: code, error.message, to: requestID, conn)
            return
        }
        if let previous = conn.session { leave(previous, conn, discardIfEmpty: true) }
        conn.session = target
        touch(target.id)
        ServerFrame.writeOK(requestID: requestID, into: &conn.outbox) { ResumeReply(session: target.id).write(to: &$0) }
        for handle in target.channels.values {
            guard let channel = privateChannels[handle] else { continue }
            ServerFrame.offer(
                channel: channel.id, kind: channel.kind, epoch: channel.epoch, name: channel.name, owner: channel.creator.owner
            ).encode(into: &conn.outbox)
        }
    }

    /// `conn` no longer belongs to `session`. A session left with no connection waits out its
    /// grace period, so that its client can resume it; with `discardIfEmpty` (the connection moved
    /// to another session by RESUME) an unused one ends at once.
    func leave(_ session: Session, _ conn: ConnectionState, discardIfEmpty: Bool = false) {
        guard sessions.detach(conn.id, from: session, now: uptime()) else { return }
        if discardIfEmpty, session.channels.isEmpty {
            endSession(session)
            return
        }
        let grace = configuration.sessionGrace
        let id = session.id
        eventLoop.scheduleTask(in: grace) { [weak self] in
            guard let self, let ended = self.sessions.expire(id, now: uptime(), grace: UInt64(grace.nanoseconds)) else { return }
            self.logger.debug("session ended after its grace period", metadata: ["session": "\(String(ended.id, radix: 16))"])
            self.endSession(ended)
        }
    }

    /// Ends a session: its private channels close and their producers get CHANNEL_ENDED.
    func endSession(_ session: Session) {
        let handles = Array(session.channels.values)
        sessions.end(session)
        storeSessionGone(session.id)
        if chargedSessions.remove(session.id) != nil { accounts.release(.sessions, uid: session.uid) }
        releaseTimeoutWaiters(of: session.id)
        for handle in handles {
            guard let channel = privateChannels[handle] else { continue }
            dropPrivate(channel)
            if let owner = connections[channel.owner] {
                owner.ownedChannels -= 1
                ServerFrame.ended(
                    channel: channel.id, code: .sessionEnded,
                    message: "session \(String(session.id, radix: 16)) ended: private channel '\(channel.name)' is closed"
                ).encode(into: &owner.outbox)
                markDirty(owner)
            }
        }
    }

    /// Closes a private channel whose producer closed it or went away: the reader gets what is
    /// unacknowledged, then CLOSED; the channel is forgotten once that is delivered or the session ends.
    func closePrivate(_ channel: PrivateChannel<ByteRing>) {
        channel.close()
        storePrivateState(channel)
        if let reader = channel.reader, let conn = connections[reader] {
            markDirty(conn)
        } else if channel.unacknowledged == 0 || channel.isFull {
            forgetPrivate(channel)
        }
    }

    func forgetPrivate(_ channel: PrivateChannel<ByteRing>) {
        dropPrivate(channel)
        if let session = sessions.session(channel.session), session.channels[channel.name] == channel.id {
            sessions.removeChannel(channel.name, from: session)
        }
    }

    /// CREATE_PRIVATE: a channel addressed to session `sessionID`, which is told with OFFER.
    func createPrivate(_ requestID: UInt32, name: String, kind: ChannelKind, size: UInt32, session sessionID: UInt64, _ conn: ConnectionState) throws(ChannelRefusal) {
        guard kind == .private || kind == .unlimited else {
            reply(error: .unsupported, "private channels of kind \(kind.rawValue) are not served by this daemon", to: requestID, conn)
            return
        }
        try ChannelName.validate(name)
        let session = try addressableSession(sessionID, conn)
        let size = size == 0 ? configuration.registry.defaultSize : Int(size)
        guard size >= 1, size <= configuration.registry.maxSize else {
            throw ChannelRefusal(.invalidSize, "size \(size) is outside 1...\(configuration.registry.maxSize)")
        }
        guard session.channels[name] == nil else {
            throw ChannelRefusal(.channelExists, "session \(String(sessionID, radix: 16)) already has a private channel '\(name)'")
        }
        guard conn.ownedChannels < configuration.maxChannelsPerConnection else {
            throw ChannelRefusal(.limitExceeded, "this connection already owns \(configuration.maxChannelsPerConnection) channels")
        }
        try charge(.channels, conn)
        let id = privateChannels.nextHandle()
        let epoch = UInt64.random(in: 1...UInt64.max)
        let ring = makeRing(
            kind == .unlimited ? .unlimited : .private, id: id, name: name, epoch: epoch, session: sessionID,
            capacity: kind == .unlimited ? 1 : size, creator: conn.identity, stored: true)
        let channel = PrivateChannel<ByteRing>(
            id: id, name: name, epoch: epoch, session: sessionID, owner: conn.id, unlimited: kind == .unlimited,
            creator: conn.identity, ring: ring)
        channel.producerToken = .random()
        privateChannels.insert(channel)
        stored(channel)
        sessions.addChannel(name, channel.id, to: session)
        conn.ownedChannels += 1
        touch(sessionID)
        ServerFrame.writeOK(requestID: requestID, into: &conn.outbox) {
            CreateReply(channel: channel.id, epoch: channel.epoch, tokenHigh: channel.producerToken.high, tokenLow: channel.producerToken.low)
                .write(to: &$0)
        }
        for member in session.connections {
            guard let reader = connections[member] else { continue }
            ServerFrame.offer(channel: channel.id, kind: channel.kind, epoch: channel.epoch, name: name, owner: channel.creator.owner)
                .encode(into: &reader.outbox)
            markDirty(reader)
        }
    }

    /// SUBSCRIBE with the private flag: only this connection's session, and one live reader.
    func subscribePrivate(_ requestID: UInt32, name: String, owner pinned: UInt32?, _ conn: ConnectionState) throws(ChannelRefusal) {
        guard let session = conn.session, let handle = session.channels[name], let channel = privateChannels[handle] else {
            throw ChannelRefusal(.noSuchChannel, "this session has no private channel '\(name)'")
        }
        if let pinned, pinned != channel.creator.uid {
            throw ChannelRefusal(.ownerMismatch, "private channel '\(name)' was created by uid \(channel.creator.uid), not by uid \(pinned)")
        }
        if let reader = channel.reader, connections[reader] != nil {
            reply(error: .alreadySubscribed, "private channel '\(name)' is already read by a subscription of this session; it can be read only once", to: requestID, conn)
            return
        }
        guard conn.subscriptions.count < configuration.maxSubscriptionsPerConnection else {
            throw ChannelRefusal(.limitExceeded, "this connection already holds \(configuration.maxSubscriptionsPerConnection) subscriptions")
        }
        try charge(.subscriptions, conn)
        let id = conn.allocateSubscriptionID()
        let start = channel.firstUnacknowledged
        channel.reader = conn.id
        conn.subscriptions[id] = Subscription(id: id, name: name, source: .clientProcess(channel), cursor: start)
        touch(session.id)
        ServerFrame.writeOK(requestID: requestID, into: &conn.outbox) {
            SubscribeReply(subscription: id, waiting: false, epoch: channel.epoch, nextSequence: start, owner: channel.creator.owner)
                .write(to: &$0)
        }
        askPullIfDue(channel)
    }

    /// Asks the producer of an unlimited channel for one more message when its reader is ready,
    /// or again for the outstanding one when the channel changed hands (`PrivateChannel.pullToAsk`).
    func askPullIfDue(_ channel: PrivateChannel<ByteRing>) {
        guard let owner = connections[channel.owner], let pull = channel.pullToAsk() else { return }
        ServerFrame.pull(channel: channel.id, pull: pull).encode(into: &owner.outbox)
        markDirty(owner)
    }

    /// ANSWER: the producer's message for an outstanding pull.
    func answer(_ requestID: UInt32, channel channelID: UInt64, pull: UInt64, payload: ByteBuffer, _ conn: ConnectionState) throws(ChannelRefusal) {
        guard let channel = privateChannels[channelID], !channel.isClosed else {
            throw ChannelRefusal(.noSuchChannel, "no live channel has id \(channelID)")
        }
        guard channel.owner == conn.id else {
            throw ChannelRefusal(.notOwner, "private channel '\(channel.name)' belongs to another connection")
        }
        try checkBuffered(MessageBatch(one: payload), in: channel.ring, uid: channel.creator.uid)
        // The payload stays alive (and unchanged) while the ring copies it.
        let seq = try channel.answer(pull, with: payload.withUnsafeReadableBytes { $0 })
        syncCharge(channel)
        ServerFrame.writeOK(requestID: requestID, into: &conn.outbox) { PushReply(firstSequence: seq, count: 1).write(to: &$0) }
        wakeReader(of: channel)
    }

    // MARK: wait_timeout

    /// WAIT_TIMEOUT: answers once session `id` has had no activity on its stateful channels for
    /// `milliseconds`, or has ended (at once if it already has been idle that long).
    func waitTimeout(_ requestID: UInt32, session id: UInt64, milliseconds: UInt64, _ conn: ConnectionState) throws(ChannelRefusal) {
        guard milliseconds <= configuration.maxWaitTimeoutMilliseconds else {
            throw ChannelRefusal(.invalidPosition, "timeout \(milliseconds) ms is above the maximum of \(configuration.maxWaitTimeoutMilliseconds) ms")
        }
        _ = try addressableSession(id, conn)
        try charge(.timeoutWaits, conn)
        let waiter = timeoutWaiters.add(session: id, connection: conn.id, uid: conn.uid, requestID: requestID, timeout: milliseconds * 1_000_000)
        conn.timeoutWaits.insert(waiter.id)
        checkTimeout(waiter.id)
    }

    func checkTimeout(_ waiterID: UInt64) {
        guard let waiter = timeoutWaiters[waiterID] else { return }
        guard let conn = connections[waiter.connection] else {
            dropTimeoutWaiter(waiterID)
            return
        }
        let now = uptime()
        let last = sessions.session(waiter.session)?.lastActivity ?? now
        let idle = now - min(now, last)
        if idle >= waiter.timeout {
            dropTimeoutWaiter(waiterID)
            ServerFrame.writeOK(requestID: waiter.requestID, into: &conn.outbox) { WaitTimeoutReply(ended: false).write(to: &$0) }
            markDirty(conn)
            return
        }
        let timer = eventLoop.scheduleTask(in: .nanoseconds(Int64(clamping: waiter.timeout - idle))) { [weak self] () -> Void in
            self?.checkTimeout(waiterID)
        }
        timeoutWaiters.setTimer(timer, of: waiterID)
    }

    /// Forgets a pending WAIT_TIMEOUT (answered, or its connection went away) and its timer.
    func dropTimeoutWaiter(_ waiterID: UInt64) {
        guard let waiter = timeoutWaiters.remove(waiterID) else { return }
        connections[waiter.connection]?.timeoutWaits.remove(waiterID)
        accounts.release(.timeoutWaits, uid: waiter.uid)
    }

    /// Answers every WAIT_TIMEOUT on an ended session.
    func releaseTimeoutWaiters(of id: UInt64) {
        for waiterID in timeoutWaiters.waiting(on: id) {
            guard let waiter = timeoutWaiters[waiterID] else { continue }
            dropTimeoutWaiter(waiterID)
            guard let conn = connections[waiter.connection] else { continue }
            ServerFrame.writeOK(requestID: waiter.requestID, into: &conn.outbox) { WaitTimeoutReply(ended: true).write(to: &$0) }
            markDirty(conn)
        }
    }

    /// ACK: the reader of a private channel has everything up to `sequence`.
    func acknowledge(_ requestID: UInt32, subscription: UInt32, sequence: UInt64, _ conn: ConnectionState) throws(ChannelRefusal) {
        guard let sub = conn.subscriptions[subscription] else {
            reply(error: .noSuchSubscription, "no subscription \(subscription) on this connection", to: requestID, conn)
            return
        }
        if case .site = sub.source {
            // A mapped reader says how far it read (one detached meanwhile: nothing to do).
            guard sequence < sub.cursor else {
                throw ChannelRefusal(.invalidPosition, "cannot acknowledge \(sequence): the ring was announced up to \(sub.cursor - 1)")
            }
            ServerFrame.writeOK(requestID: requestID, into: &conn.outbox)
            if let mapped = sub.mapped {
                mapped.position?.settle()
                if sequence + 1 > mapped.read { conn.subscriptions[subscription]?.mapped?.read = sequence + 1 }
                // A producer may be waiting for this report.
                if mapped.held { readerDrained(conn) }
            }
            return
        }
        guard case .clientProcess(let channel) = sub.source else {
            throw ChannelRefusal(.invalidPosition, "only private channels and mapped readers take acknowledgements")
        }
        guard sequence < sub.cursor else {
            throw ChannelRefusal(.invalidPosition, "cannot acknowledge \(sequence): only messages up to \(sub.cursor - 1) were delivered")
        }
        try channel.acknowledge(through: sequence)
        storePrivateState(channel)
        touch(channel.session)
        ServerFrame.writeOK(requestID: requestID, into: &conn.outbox)
        askPullIfDue(channel)
    }

}

extension PrivateChannel {
    var kind: ChannelKind { isUnlimited ? .unlimited : .private }
}
