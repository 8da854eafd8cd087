import CometChannels
import CometFederation
import CometWire
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

extension Broker {
    // MARK: Links

    /// Connects to every configured server that an export or import names, and starts the
    /// config-declared imports.
    func startFederation() {
        let federation = configuration.federation
        for rule in federation.imports {
            guard let server = federation.servers[rule.server] else { continue }
            let key = NATSRelayKey(server: server.url, subject: rule.subject, newest: rule.newest)
            let relay = NATSRelay(
                key: key, localName: rule.localName, name: rule.localName, link: link(for: server.url), size: rule.size, uid: getuid())
            links.imports[rule.localName] = relay
            logger.info("importing from NATS", metadata: ["channel": "\(rule.localName)", "nats": "\(server.url)", "subject": "\(rule.subject)"])
            startFeed(relay)
        }
        for rule in federation.exports {
            if let server = federation.servers[rule.server] { _ = link(for: server.url) }
        }
    }

    /// The link to `url`: configured servers keep trying in the background, others fail at once.
    func link(for url: String) -> NATSLink {
        if let link = links.natsLinks[url] { return link }
        let configured = configuration.federation.server(url: url)
        let link = NATSLink(
            server: configured ?? NATSServer(url: url), keepTrying: configured != nil, timers: eventLoop, logger: logger)
        links.natsLinks[url] = link
        return link
    }

    /// Closes a link nothing uses any more (only links a reader's address made).
    func releaseLinkIfUnused(_ link: NATSLink) {
        guard !link.keepTrying, links.natsLinks[link.server.url] === link,
            !links.natsRelays.values.contains(where: { $0.link === link })
        else { return }
        links.natsLinks[link.server.url] = nil
        link.stop(promise: nil)
    }

    /// Stops every link: what is queued is published (up to a second), consumers are deleted.
    func stopFederation() -> EventLoopFuture<Void> {
        let stops = links.natsLinks.values.map { link -> EventLoopFuture<Void> in
            let promise = eventLoop.makePromise(of: Void.self)
            link.stop(promise: promise)
            return promise.futureResult
        }
        links.natsLinks = [:]
        return EventLoopFuture.andAllComplete(stops, on: eventLoop)
    }

    // MARK: Export

    /// Starts mirroring a new site channel when an export rule names it.
    func exportIfConfigured(_ channel: SiteChannel<ByteBuffer>) {
        let federation = configuration.federation
        guard !federation.exports.isEmpty, let rule = federation.export(for: channel.name),
            let server = federation.servers[rule.server]
        else { return }
        guard let subject = NATSMapping.subject(prefix: rule.subjectPrefix, name: channel.name) else {
            logLimiter.log(logger, .warning, kind: "export-subject", "channel not exported: its name is not a valid NATS subject", metadata: [
                "channel": "\(channel.name)",
            ])
            return
        }
        let link = link(for: server.url)
        let target = ExportTarget(
            name: channel.name, subject: subject, stream: NATSMapping.stream(prefix: rule.streamPrefix, name: channel.name),
            storage: rule.storage, size: channel.size, maxInFlight: rule.maxInFlight, newest: channel.keepsNewestOnly)
        links.exported[channel.id] = link
        link.open(target, epoch: channel.epoch, next: channel.lastSequence + 1)
    }

    /// Hands messages just pushed to an exported channel to its link (the ring's own buffers).
    func exportPushed(_ channel: SiteChannel<ByteBuffer>, first: UInt64, count: Int) {
        guard let link = links.exported[channel.id] else { return }
        let from = max(first, channel.ring.firstSequence)
        let last = first + UInt64(count) - 1
        guard from <= last else { return }
        var payloads: [ByteBuffer] = []
        payloads.reserveCapacity(Int(last - from + 1))
        for seq in from...last {
            if let payload = channel.ring[seq] { payloads.append(payload) }
        }
        link.pushed(name: channel.name, epoch: channel.epoch, first: from, payloads)
    }

    /// An exported channel closed: its link publishes the close marker after what it still has.
    func exportClosed(_ channel: SiteChannel<ByteBuffer>) {
        guard let link = links.exported.removeValue(forKey: channel.id) else { return }
        link.closed(name: channel.name, epoch: channel.epoch, last: channel.lastSequence)
    }

    /// Counters of every export, for STATS.
    var exportStats: [ExportStats] {
        links.natsLinks.values.flatMap { $0.exportStats }.sorted { $0.name < $1.name }
    }

    // MARK: Import

    /// SUBSCRIBE_EXTERNAL of a `nats://` address: a local subscription to an import of the subject.
    func subscribeNATS(_ requestID: UInt32, address: NATSAddress, name: String, history: UInt32, newest: Bool, _ conn: ConnectionState) throws(ChannelRefusal) {
        try ChannelName.validate(name)
        guard conn.subscriptions.count < configuration.maxSubscriptionsPerConnection else {
            throw ChannelRefusal(.limitExceeded, "this connection already holds \(configuration.maxSubscriptionsPerConnection) subscriptions")
        }
        guard let subject = address.subject ?? NATSMapping.subject(prefix: "comet", name: name) else {
            reply(error: .invalidAddress, "'comet.\(name)' is not a NATS subject; name the subject in the address", to: requestID, conn)
            return
        }
        // A configured server is reached with the daemon's credentials: only for root and for
        // whom the policy's relay rules name. Any other server is reached anonymously, as the
        // requester could itself.
        let full = address.server + "/" + subject
        if configuration.federation.server(url: address.server) != nil, conn.uid != 0, !policy.grantsRelay(full, conn.identity) {
            logLimiter.log(logger, .notice, kind: "policy", "refused relay: no relay rule for this NATS address", metadata: [
                "uid": "\(conn.uid)", "upstream": "\(full)",
            ])
            throw ChannelRefusal(.permissionDenied, "the policy does not let user \(conn.uid) read \(full) through this daemon")
        }
        if links.natsLinks[address.server] == nil, configuration.federation.server(url: address.server) == nil,
            links.natsLinks.values.filter({ !$0.keepTrying }).count >= configuration.maxUndeclaredNATSServers
        {
            throw ChannelRefusal(.limitExceeded, "the daemon already reads from \(configuration.maxUndeclaredNATSServers) NATS servers its configuration does not declare")
        }
        let key = NATSRelayKey(server: address.server, subject: subject, newest: newest)
        let wanted = newest ? 1 : max(1, min(history, UInt32(configuration.registry.maxSize)))
        if let relay = links.natsRelays[key] {
            if relay.caughtUp, let channel = relay.channel, !channel.isClosed {
                attachLocalReader(requestID, to: channel, history: wanted, owner: .unknown, conn)
            } else {
                relay.pending.append(PendingExternal(connection: conn.id, requestID: requestID, history: wanted))
            }
            return
        }
        let relay = NATSRelay(
            key: key, localName: nil, name: name, link: link(for: address.server), size: max(1000, Int(wanted)), uid: conn.uid)
        relay.pending.append(PendingExternal(connection: conn.id, requestID: requestID, history: wanted))
        links.natsRelays[key] = relay
        logger.info("relaying from NATS", metadata: ["nats": "\(address.server)", "subject": "\(subject)"])
        startFeed(relay)
    }

    func startFeed(_ relay: NATSRelay) {
        let feed = ImportFeed(subject: relay.key.subject, permanent: relay.permanent, loop: eventLoop) { [weak self, weak relay] events in
            guard let self, let relay else { return }
            self.natsReceived(events, relay)
        }
        relay.feed = feed
        relay.link.add(feed)
    }

    /// The mirror of a config-declared import named `name`, once it has caught up.
    func importedChannel(_ name: String) -> SiteChannel<ByteBuffer>? {
        guard let relay = links.imports[name], relay.caughtUp, let channel = relay.channel, !channel.isClosed else { return nil }
        return channel
    }

    /// What an import's subject delivered, in order.
    func natsReceived(_ events: [FeedEvent], _ relay: NATSRelay) {
        for event in events {
            guard !relay.removed else { return }
            switch event {
            case .open(let epoch, let next):
                if relay.channel?.epoch != epoch { natsAdopt(relay, epoch: epoch, next: next) }
            case .message(let epoch, let seq, let payload):
                if relay.channel?.epoch != epoch { natsAdopt(relay, epoch: epoch, next: seq) }
                guard let channel = relay.channel, !channel.isClosed, seq > channel.lastSequence else { continue }
                guard payload.readableBytes <= Int(configuration.maxFrameSize) - 13 else {
                    // Readers could not take it in one frame: a gap they see as FULL.
                    logLimiter.log(logger, .warning, kind: "nats-oversize", "skipping an imported message larger than the frame limit", metadata: [
                        "subject": "\(relay.key.subject)", "bytes": "\(payload.readableBytes)",
                    ])
                    continue
                }
                mirror(payload, sequence: seq, into: channel, chargedTo: relay.uid)
            case .close(let epoch, _):
                guard let channel = relay.channel, channel.epoch == epoch, !channel.isClosed else { continue }
                channel.close()
                wakeReaders(of: channel)
                releaseIfDrained(channel)
                if !relay.permanent, relay.caughtUp { endNATSRelay(relay) }
            case .caughtUp:
                guard !relay.caughtUp else { continue }
                relay.caughtUp = true
                natsCaughtUp(relay)
            case .foreign:
                relay.foreign += 1
                if relay.foreign == 1 {
                    logger.notice("skipping messages without Comet-Epoch/Comet-Seq headers on an imported subject", metadata: [
                        "subject": "\(relay.key.subject)",
                    ])
                }
            case .failed(let failure, let message):
                endNATSRelay(relay, failing: failure == .unreachable ? .upstreamUnreachable : .noSuchChannel, message)
            }
        }
    }

    /// The import has read what the stream held: waiting readers start now.
    private func natsCaughtUp(_ relay: NATSRelay) {
        if relay.permanent {
            if let channel = relay.channel, !channel.isClosed, let name = relay.localName {
                // Readers that waited for the name get everything the mirror holds, as readers
                // waiting for a local channel get everything from its first message.
                start(registry.takeWaiters(for: name), on: channel, next: channel.ring.firstSequence)
            }
            let parked = relay.parked
            relay.parked = []
            parked.forEach { $0() }
            return
        }
        guard let channel = relay.channel, !channel.isClosed else {
            endNATSRelay(relay, failing: .noSuchChannel, "subject \(relay.key.subject) holds no open channel (it was closed at its origin)")
            return
        }
        for waiting in relay.pending {
            guard let conn = connections[waiting.connection] else { continue }
            attachLocalReader(waiting.requestID, to: channel, history: waiting.history, owner: .unknown, conn)
        }
        relay.pending = []
    }

    /// A new epoch on the subject: the old mirror's readers get what it holds, then RESET.
    private func natsAdopt(_ relay: NATSRelay, epoch: UInt64, next: UInt64) {
        if let old = relay.channel {
            logger.notice("imported channel was re-created at its origin", metadata: ["subject": "\(relay.key.subject)"])
            retireMirror(old, replacedBy: epoch)
        }
        let channel = SiteChannel<ByteBuffer>(
            id: links.nextMirrorID(), name: relay.name, epoch: epoch, size: relay.size, owner: 0,
            newestOnly: relay.key.newest, creator: Identity(uid: relay.uid), weigh: weigh)
        channel.expectRelayed(from: next)
        relay.channel = channel
        if relay.permanent, relay.caughtUp, let name = relay.localName {
            start(registry.takeWaiters(for: name), on: channel, next: next)
        }
    }

    /// Ends an import readers asked for: waiting readers get `code`; local readers drain, then CLOSED.
    func endNATSRelay(_ relay: NATSRelay, failing code: ErrorCode? = nil, _ message: String = "") {
        guard !relay.removed, !relay.permanent else { return }
        relay.removed = true
        if links.natsRelays[relay.key] === relay { links.natsRelays[relay.key] = nil }
        finishRelay(pending: relay.pending, mirror: relay.channel, failing: code, message)
        relay.pending = []
        if let feed = relay.feed { relay.link.remove(feed) }
        relay.feed = nil
        releaseLinkIfUnused(relay.link)
    }

    /// A NATS import's mirror lost its last local reader: the import ends (unless configured).
    func releaseNATSRelayIfUnused(_ channel: SiteChannel<ByteBuffer>) -> Bool {
        guard let relay = links.natsRelays.values.first(where: { $0.channel === channel }) else { return false }
        if channel.subscriberCount == 0 { endNATSRelay(relay) }
        return true
    }
}
