import CometChannels
import CometState
import CometWire
import NIOCore

/// Imports fed by a bridge (docs/FEDERATION.md, PROTOCOL.md §6.19–6.21): MIRROR names an import
/// and the epoch its origin is in, MIRROR_PUSH hands it messages with their origin's sequence
/// numbers, MIRROR_STATE says whether the origin is live, stalled or closed. Readers subscribe to
/// the import's name as to any site channel and keep every position, `wait`, epochs and RESET.
extension Broker {
    /// MIRROR: `conn` feeds the import `name`, whose origin is in `epoch` (0: not known yet) and
    /// whose first message is `next`. Answers the mirror's handle and the last sequence it holds
    /// of that epoch (the feeder goes on after it).
    func mirror(
        _ requestID: UInt32, name: String, epoch: UInt64, next: UInt64, size: UInt32, newest: Bool, _ conn: ConnectionState
    ) throws(ChannelRefusal) {
        try ChannelName.validate(name)
        guard policy.mayMirror(name, conn.identity, users: userID(named:)) else {
            logLimiter.log(logger, .notice, kind: "policy", "refused by policy: mirror", metadata: ["uid": "\(conn.uid)", "channel": "\(name)"])
            throw ChannelRefusal(.permissionDenied, "the policy does not let user \(conn.uid) feed the import '\(name)' (a 'mirror' rule, docs/POLICY.md)")
        }
        let size = newest ? 1 : Int(size)
        guard size >= 1, size <= configuration.registry.maxSize else {
            throw ChannelRefusal(.invalidSize, "an import's ring holds 1 to \(configuration.registry.maxSize) messages, not \(size)")
        }
        guard registry.channel(named: name) == nil else {
            throw ChannelRefusal(.channelExists, "'\(name)' is a local channel; it cannot also be an import")
        }
        let feed: MirrorFeed
        if let known = links.mirrors[name] {
            if let feeder = known.feeder, feeder != conn.id, let other = connections[feeder], !other.isClosing {
                throw ChannelRefusal(.channelExists, "the import '\(name)' is fed by another connection (uid \(other.uid))")
            }
            feed = known
        } else {
            guard links.mirrors.count < configuration.maxMirrors else {
                throw ChannelRefusal(.limitExceeded, "the daemon already holds \(configuration.maxMirrors) imports")
            }
            feed = MirrorFeed(name: name, handle: links.nextMirrorID())
            links.mirrors[name] = feed
            links.mirrorHandles[feed.handle] = feed
            logger.info("import declared", metadata: ["channel": "\(name)", "uid": "\(conn.uid)"])
        }
        let newFeeder = feed.feeder != conn.id
        feed.attach(conn.id)
        feed.size = size
        feed.newest = newest
        feed.declaredBy = conn.identity.owner
        if newFeeder, feed.phase != .catchingUp {
            // Another bridge (or the same one, reconnected) reads its origin again: new readers
            // wait until it has, those already reading keep what the mirror holds.
            enterMirrorPhase(feed, .catchingUp)
        }
        var last: UInt64 = 0
        if epoch != 0 {
            if let channel = feed.channel, channel.epoch == epoch, !channel.isClosed {
                last = channel.lastSequence
            } else {
                newMirrorEpoch(feed, epoch: epoch, next: next, size: size, newest: newest, creator: conn.identity)
            }
        }
        ServerFrame.writeOK(requestID: requestID, into: &conn.outbox) { MirrorReply(mirror: feed.handle, lastSequence: last).write(to: &$0) }
    }

    /// The origin is in a new epoch: readers of the old mirror get what it holds, then RESET.
    private func newMirrorEpoch(_ feed: MirrorFeed, epoch: UInt64, next: UInt64, size: Int, newest: Bool, creator: Identity) {
        if let old = feed.channel {
            logger.notice("imported channel was re-created at its origin", metadata: ["channel": "\(feed.name)", "epoch": "\(epoch)"])
            retireMirror(old, replacedBy: epoch)
        }
        let id = links.nextMirrorID()
        let channel = SiteChannel<ByteRing>(
            id: id, name: feed.name, epoch: epoch, owner: 0, newestOnly: newest, creator: creator,
            ring: makeRing(id: id, name: feed.name, epoch: epoch, capacity: size, newest: newest, creator: creator, stored: false))
        channel.expectRelayed(from: next)
        feed.channel = channel
        if case .stalled(let reason, _) = feed.phase { channel.stalled = reason }
        if feed.phase.isCaughtUp {
            // Readers that waited for the name start with the new epoch's first message (else
            // once the feeder has read what its origin holds: one resuming at N may need it).
            start(registry.takeWaiters(for: feed.name), on: channel, next: next)
        }
    }

    /// MIRROR_PUSH: messages numbered `first`, `first + 1`, … by the origin. Those the mirror
    /// has are skipped; a jump leaves a gap readers who needed it see as FULL.
    func mirrorPush(_ requestID: UInt32, handle: UInt64, first: UInt64, _ payloads: MessageBatch, _ conn: ConnectionState) throws(ChannelRefusal) {
        let feed = try fedMirror(handle, conn)
        guard let channel = feed.channel, !channel.isClosed else {
            throw ChannelRefusal(.channelClosed, "the import '\(feed.name)' has no open epoch: name it with MIRROR first")
        }
        trimmer.count(payloads.count)
        appendRelayed(payloads.buffers, from: first, into: channel)
        if case .stalled = feed.phase { enterMirrorPhase(feed, feed.afterStall) }
        ServerFrame.writeOK(requestID: requestID, into: &conn.outbox)
    }

    /// MIRROR_STATE: the origin is live again, stalled (readers are told why), or its epoch
    /// closed after `last` (readers drain, then CLOSED).
    func mirrorState(
        _ requestID: UInt32, handle: UInt64, state: MirrorState, last: UInt64, reason: String, _ conn: ConnectionState
    ) throws(ChannelRefusal) {
        let feed = try fedMirror(handle, conn)
        switch state {
        case .live:
            enterMirrorPhase(feed, .live)
        case .stalled:
            let text = reason.isEmpty ? "its origin cannot be reached" : reason
            logger.warning("import stalled", metadata: ["channel": "\(feed.name)", "reason": "\(text)"])
            enterMirrorPhase(feed, feed.stall(text))
        case .closed:
            if let channel = feed.channel, !channel.isClosed {
                channel.close()
                wakeReaders(of: channel)
                releaseIfDrained(channel)
            }
            if feed.phase == .catchingUp { enterMirrorPhase(feed, .live) }
        }
        ServerFrame.writeOK(requestID: requestID, into: &conn.outbox)
    }

    /// The import `handle`, checked to be fed by `conn`.
    private func fedMirror(_ handle: UInt64, _ conn: ConnectionState) throws(ChannelRefusal) -> MirrorFeed {
        guard let feed = links.mirrorHandles[handle] else {
            throw ChannelRefusal(.noSuchChannel, "no import has handle \(handle) in this daemon (name it again with MIRROR)")
        }
        guard feed.feeder == conn.id else {
            throw ChannelRefusal(.notOwner, "the import '\(feed.name)' is not fed by this connection (name it with MIRROR first)")
        }
        return feed
    }

    /// Moves a feed to `phase`: parked SUBSCRIBE requests are answered, waiting readers start,
    /// readers of a stalled mirror are woken to be told.
    private func enterMirrorPhase(_ feed: MirrorFeed, _ phase: MirrorFeed.Phase) {
        let parked = feed.enter(phase)
        if phase == .live, let channel = feed.channel, !channel.isClosed {
            // Readers that waited for the name get everything the mirror holds.
            start(registry.takeWaiters(for: feed.name), on: channel, next: channel.ring.firstSequence)
        }
        parked.forEach { $0() }
        if let channel = feed.channel { wakeReaders(of: channel) }
    }

    /// BRIDGE_REPORT: a bridge's counters, kept for STATS while its connection lasts.
    func bridgeReported(_ report: BridgeReport, _ conn: ConnectionState) throws(ChannelRefusal) {
        guard policy.mayBridge(conn.identity) else {
            throw ChannelRefusal(.permissionDenied, "only root and users a 'mirror' rule names may report a bridge's counters (user \(conn.uid) may not)")
        }
        links.reports[conn.id] = report
    }

    /// What STATS shows of the bridges: every export reported, every import (cometd's view and
    /// its bridge's), by name.
    func federationStats() -> (exports: [ExportCounters], imports: [ImportCounters]) {
        let exports = links.reports.values.flatMap(\.exports).sorted { $0.name < $1.name }
        var reported: [String: ImportCounters] = [:]
        for report in links.reports.values { for entry in report.imports { reported[entry.name] = entry } }
        let imports = links.mirrors.values.sorted { $0.name < $1.name }.map { feed -> ImportCounters in
            let state: ImportCounters.State
            var reason = reported[feed.name]?.reason ?? ""
            switch feed.phase {
            case .catchingUp: state = .catchingUp
            case .live: state = .live
            case .stalled(let why, _):
                state = .stalled
                reason = why
            }
            let channel = feed.channel
            return ImportCounters(
                name: feed.name, state: state, fed: feed.feeder != nil, epoch: channel?.epoch ?? 0, lastSequence: channel?.lastSequence ?? 0,
                readers: UInt32(channel?.subscriberCount ?? 0), server: reported[feed.name]?.server ?? "",
                subject: reported[feed.name]?.subject ?? "", foreign: reported[feed.name]?.foreign ?? 0, reason: reason)
        }
        return (exports, imports)
    }

    /// `conn` closed: the imports it fed keep their readers and wait for another feeder; past
    /// the grace they are stalled. Its report goes.
    func feederLeft(_ conn: ConnectionState) {
        links.reports[conn.id] = nil
        guard !links.mirrors.isEmpty else { return }
        let grace = configuration.mirrorOrphanGrace
        for feed in links.mirrors.values where feed.feeder == conn.id {
            feed.detach(after: grace, on: eventLoop) { [weak self, weak feed] in
                guard let self, let feed else { return }
                let seconds = Double(grace.nanoseconds) / 1e9
                self.logger.warning("import stalled: nothing feeds it", metadata: ["channel": "\(feed.name)"])
                self.enterMirrorPhase(feed, feed.stall("nothing has fed this import for \(seconds) s (is comet-bridge running?)"))
                self.deliverDirty()
            }
        }
    }

    /// What a SUBSCRIBE of an import's name needs before the plain path: true when it was
    /// answered (parked, waiting, or refused by a throw).
    func subscribeImport(
        _ feed: MirrorFeed, _ requestID: UInt32, name: String, position: SubscribePosition, epoch: UInt64, wait: Bool, owner pinned: UInt32?,
        _ conn: ConnectionState
    ) throws(ChannelRefusal) -> Bool {
        if feed.phase == .catchingUp {
            // The bridge is still reading what its origin holds: answered once it has.
            feed.park { [unowned self] in
                guard let conn = self.connections[conn.id], !conn.isClosing else { return }
                do throws(ChannelRefusal) {
                    try self.subscribe(requestID, name: name, position: position, epoch: epoch, wait: wait, owner: pinned, conn)
                } catch {
                    self.reply(error: error.wireCode, error.message, to: requestID, conn)
                }
                self.markDirty(conn)
            }
            return true
        }
        if let channel = feed.channel, !channel.isClosed { return false }
        if wait {
            try subscribeWaiting(requestID, name: name, owner: pinned, resumeAt: Self.resumption(position, epoch), conn)
            return true
        }
        if case .stalled(let reason, _) = feed.phase {
            throw ChannelRefusal(.upstreamUnreachable, "the import '\(name)' is stalled: \(reason)")
        }
        throw ChannelRefusal(.noSuchChannel, "the import '\(name)' holds no open channel now (its origin has none)")
    }

    /// The open mirror of the import `name`.
    func importedChannel(_ name: String) -> SiteChannel<ByteRing>? {
        guard let channel = links.mirrors[name]?.channel, !channel.isClosed else { return nil }
        return channel
    }

    /// Shutdown: feeds stop waiting for feeders.
    func stopMirrors() {
        for feed in links.mirrors.values { feed.cancel() }
    }
}
