import CometChannels
import CometState
import CometWire
import NIOCore

/// Keeping channels and sessions in storage that outlives a crash (`StateStore`; docs/RESTARTS.md),
/// and producers taking their channels back afterwards (ADOPT). Every hook is a no-op without a store.
extension Broker {
    // MARK: Hooks

    /// An empty ring for a channel: a memfd when it is to be stored (`stored(_:)`) and the
    /// daemon keeps a store, the heap otherwise (and for relays and imports).
    func makeRing(
        _ kind: RingMeta.Kind, id: UInt64, name: String, epoch: UInt64, session: UInt64 = 0, capacity: Int, creator: Identity,
        stored: Bool
    ) -> ByteRing {
        let meta = RingMeta(
            kind: kind, id: id, name: name, epoch: epoch, session: session, capacity: capacity, creator: PeerImage(creator),
            tokenHigh: 0, tokenLow: 0)
        let overhead = configuration.messageOverhead
        if stored, stateStore != nil {
            do {
                return try ByteRing(meta, overhead: overhead, backing: .memfd)
            } catch {
                logLimiter.log(logger, .warning, kind: "ring", "a channel's ring is kept in the heap: no memfd for it", metadata: [
                    "channel": "\(name)", "error": "\(error)",
                ])
            }
        }
        do {
            return try ByteRing(meta, overhead: overhead, backing: .heap)
        } catch {
            fatalError("a ring in the heap cannot fail to be made: \(error)")
        }
    }

    /// A site channel's ring; see `makeRing(_:id:name:epoch:session:capacity:creator:stored:)`.
    func makeRing(id: UInt64, name: String, epoch: UInt64, capacity: Int, newest: Bool, creator: Identity, stored: Bool) -> ByteRing {
        makeRing(newest ? .newest : .buffered, id: id, name: name, epoch: epoch, capacity: newest ? 1 : capacity, creator: creator, stored: stored)
    }

    /// The channel's ring goes into the store (its file is the ring itself: nothing is copied),
    /// and so does every file it moves to.
    func stored(_ channel: SiteChannel<ByteRing>) {
        if stateStore != nil { channel.ring.setFlags(channel.isClosed ? RingFile.closedFlag : 0) }
        keepInStore(channel.ring, id: channel.id, token: channel.producerToken, numbering: channel.numbering)
    }

    func stored(_ channel: PrivateChannel<ByteRing>) {
        storePrivateState(channel)
        keepInStore(channel.ring, id: channel.id, token: channel.producerToken, numbering: channel.numbering)
    }

    private func keepInStore(_ ring: ByteRing, id: UInt64, token: SessionToken, numbering: ProducerNumbering) {
        guard let store = stateStore else { return }
        ring.setToken(high: token.high, low: token.low)
        ring.setNumberedFrom(numbering.origin)
        store.keepRing(id, ring.file)
        ring.moved = { [weak store] file in store?.keepRing(id, file) }
    }

    static func flags(_ channel: PrivateChannel<ByteRing>) -> UInt32 {
        (channel.isClosed ? RingFile.closedFlag : 0) | (channel.isFull ? RingFile.fullFlag : 0)
    }

    /// A private channel's acknowledgement point and flags, in its ring's header (an overflow
    /// emptied the ring itself).
    func storePrivateState(_ channel: PrivateChannel<ByteRing>) {
        guard stateStore != nil else { return }
        channel.ring.setAcknowledged(channel.acknowledged)
        channel.ring.setFlags(Self.flags(channel))
    }

    /// A channel leaves the store (closed, forgotten): its ring's later files stay out of it too.
    func storeGone(_ id: UInt64, ring: ByteRing) {
        ring.moved = nil
        stateStore?.removeRing(id)
    }

    func stored(_ session: Session) {
        stateStore?.addSession(SessionRecord(id: session.id, tokenHigh: session.token.high, tokenLow: session.token.low, uid: session.uid))
    }

    func storeSessionGone(_ id: UInt64) { stateStore?.removeSession(id) }

    /// After a restore: everything held now goes into fresh files, then the store forgets
    /// `oldNames` (the previous process's files).
    func storeEverything(forgetting oldNames: [String]) {
        guard let store = stateStore else { return }
        for channel in registry.byName.values where !Self.isMirror(channel.id) { stored(channel) }
        for channel in closedChannels.channels { stored(channel) }
        for channel in privateChannels.values { stored(channel) }
        for session in sessions.sessions.values { stored(session) }
        let fresh = Set(store.names)
        for name in oldNames where !fresh.contains(name) { store.forgetName(name) }
    }

    // MARK: Crash recovery

    /// What the storage files passed back after a crash hold, as an image without connections:
    /// channels wait for their producers (ADOPT), sessions for their clients (RESUME), both for
    /// the session grace period.
    static func image(recovered: StateStore.Recovered, now: UInt64) -> DaemonImage {
        var sites: [SiteChannelImage] = []
        var privates: [PrivateChannelImage] = []
        var bySession: [UInt64: [PrivateChannelEntry]] = [:]
        var nextChannel: UInt64 = 1
        var nextPrivate: UInt64 = 1
        for ring in recovered.rings {
            let meta = ring.meta
            let (first, messages) = ring.messages()
            let closed = ring.flags & RingFile.closedFlag != 0
            switch meta.kind {
            case .buffered, .newest:
                // A closed one was kept for its readers: it is kept again, not registered.
                guard !isPrivateHandle(meta.id), !isMirror(meta.id) else { continue }
                var site = SiteChannelImage(
                    id: meta.id, name: meta.name, epoch: meta.epoch, owner: 0, newestOnly: meta.kind == .newest,
                    size: meta.capacity, creator: meta.creator, closed: closed, registered: !closed, replacedByEpoch: nil,
                    firstSequence: first, messages: messages)
                site.tokenHigh = meta.tokenHigh
                site.tokenLow = meta.tokenLow
                site.numberedFrom = meta.numberedFrom
                sites.append(site)
                nextChannel = max(nextChannel, meta.id + 1)
            case .private, .unlimited:
                guard isPrivateHandle(meta.id) else { continue }
                var channel = PrivateChannelImage(
                    id: meta.id, name: meta.name, epoch: meta.epoch, session: meta.session, owner: 0, size: meta.capacity,
                    unlimited: meta.kind == .unlimited, creator: meta.creator, acknowledged: ring.acknowledged, closed: closed,
                    full: ring.flags & RingFile.fullFlag != 0, reader: nil, outstandingPull: nil, nextPull: 1,
                    firstSequence: first, messages: messages)
                channel.tokenHigh = meta.tokenHigh
                channel.tokenLow = meta.tokenLow
                channel.numberedFrom = meta.numberedFrom
                privates.append(channel)
                bySession[meta.session, default: []].append(PrivateChannelEntry(name: meta.name, handle: meta.id))
                nextPrivate = max(nextPrivate, (meta.id & ~(1 << 63)) + 1)
            }
        }
        let known = Set(recovered.sessions.map(\.id))
        // A private channel whose session is not recorded has no reader to wait for.
        privates.removeAll { !known.contains($0.session) }
        let sessionImages = recovered.sessions.map { record in
            SessionImage(
                id: record.id, tokenHigh: record.tokenHigh, tokenLow: record.tokenLow, uid: record.uid, connections: [],
                detachedAt: now, lastActivity: now, channels: bySession[record.id] ?? [], charged: true)
        }
        return DaemonImage(
            softwareVersion: CometProtocol.softwareVersion, instance: UInt64.random(in: 1...UInt64.max), nextConnectionID: 1,
            nextChannelID: nextChannel, nextPrivateID: nextPrivate, channels: sites, privateChannels: privates,
            sessions: sessionImages, storedNames: recovered.names)
    }

    // MARK: Producers without a connection

    /// Channels whose producer's connection did not come back wait for it (ADOPT) for the
    /// session grace period, then close as if it had left (readers drain, then CLOSED).
    func orphanChannelsWithoutProducer() {
        let grace = configuration.sessionGrace
        var orphaned: [UInt64] = []
        for channel in registry.byName.values where !Self.isMirror(channel.id) && connections[channel.owner] == nil {
            channel.transfer(to: 0)
            orphaned.append(channel.id)
        }
        for channel in privateChannels.values where !channel.isClosed && connections[channel.owner] == nil {
            channel.transfer(to: 0)
            orphaned.append(channel.id)
        }
        guard !orphaned.isEmpty else { return }
        logger.notice("channels wait for their producers to take them back", metadata: [
            "channels": "\(orphaned.count)", "grace_ms": "\(grace.nanoseconds / 1_000_000)",
        ])
        let ids = orphaned
        eventLoop.scheduleTask(in: grace) { [weak self] in
            guard let self else { return }
            for id in ids { self.closeOrphan(id) }
        }
    }

    private func closeOrphan(_ id: UInt64) {
        if Self.isPrivateHandle(id) {
            guard let channel = privateChannels[id], channel.owner == 0, !channel.isClosed else { return }
            closePrivate(channel)
            storePrivateState(channel)
        } else if let channel = registry.channel(id: id), channel.owner == 0,
            let closed = try? registry.close(id, by: 0)
        {
            channelClosed(closed)
        }
    }

    /// ADOPT: the producer of a channel that lost its connection in a restart takes it back. On
    /// the connection that owns it already, it only says where the channel is (idempotent).
    func adopt(_ requestID: UInt32, channel id: UInt64, token: SessionToken, _ conn: ConnectionState) throws(ChannelRefusal) {
        let epoch: UInt64
        let last: UInt64
        let lastNumber: UInt64
        var already = false
        if Self.isPrivateHandle(id) {
            guard let channel = privateChannels[id], !channel.isClosed else {
                throw ChannelRefusal(.noSuchChannel, "no live channel has id \(id)")
            }
            try checkAdoption(owner: channel.owner, creator: channel.creator, token: channel.producerToken, given: token, name: channel.name, conn)
            already = channel.owner == conn.id
            channel.transfer(to: conn.id)
            (epoch, last) = (channel.epoch, channel.lastSequence)
            lastNumber = channel.numbering.lastNumber(lastSequence: last)
            askPullIfDue(channel)
        } else {
            guard let channel = registry.channel(id: id), !Self.isMirror(id) else {
                throw ChannelRefusal(.noSuchChannel, "no live channel has id \(id)")
            }
            try checkAdoption(owner: channel.owner, creator: channel.creator, token: channel.producerToken, given: token, name: channel.name, conn)
            already = channel.owner == conn.id
            channel.transfer(to: conn.id)
            (epoch, last) = (channel.epoch, channel.lastSequence)
            lastNumber = channel.numbering.lastNumber(lastSequence: last)
        }
        if !already { conn.ownedChannels += 1 }
        ServerFrame.writeOK(requestID: requestID, into: &conn.outbox) {
            AdoptReply(channel: id, epoch: epoch, lastSequence: last, lastNumber: lastNumber).write(to: &$0)
        }
    }

    private func checkAdoption(
        owner: UInt64, creator: Identity, token: SessionToken, given: SessionToken, name: String, _ conn: ConnectionState
    ) throws(ChannelRefusal) {
        guard owner == 0 || owner == conn.id || connections[owner] == nil else {
            throw ChannelRefusal(.notOwner, "channel '\(name)' has a live producer")
        }
        guard creator.uid == conn.uid else { throw ChannelRefusal(.wrongUser, "channel '\(name)' was created by another user") }
        guard token != SessionToken(high: 0, low: 0), token.matches(given) else {
            throw ChannelRefusal(.badToken, "wrong producer token for channel '\(name)'")
        }
    }
}
