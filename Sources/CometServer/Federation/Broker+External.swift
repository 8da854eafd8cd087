import CometChannels
import CometState
import CometWire
import NIOCore
import NIOPosix

extension Broker {
    /// `unix:PATH` or an absolute PATH; nil for anything else.
    static func upstreamPath(_ address: String) -> String? {
        let path = address.hasPrefix("unix:") ? String(address.dropFirst(5)) : address
        guard path.hasPrefix("/"), path.utf8.count < 108 else { return nil }
        return path
    }

    /// SUBSCRIBE_EXTERNAL: a local subscription to a relay of `name` at `address`.
    func subscribeExternal(_ requestID: UInt32, address: String, name: String, history: UInt32, newest: Bool, _ conn: ConnectionState) throws(ChannelRefusal) {
        if address.hasPrefix("nats://") || address.hasPrefix("tls://") {
            throw ChannelRefusal(
                .unsupported,
                "cometd reaches no network: NATS subjects are imported by comet-bridge; declare an [import] in its configuration and subscribe to the local name (docs/FEDERATION.md)")
        }
        guard let path = Self.upstreamPath(address) else {
            reply(error: .invalidAddress, "'\(address)' is not an address this daemon can relay from (unix:/PATH or /PATH)", to: requestID, conn)
            return
        }
        try ChannelName.validate(name)
        guard conn.subscriptions.count < configuration.maxSubscriptionsPerConnection else {
            throw ChannelRefusal(.limitExceeded, "this connection already holds \(configuration.maxSubscriptionsPerConnection) subscriptions")
        }
        // The daemon connects only where the requester could connect by itself, or where the policy allows.
        if !policy.grantsRelay("unix:" + path, conn.identity) {
            switch PathAccess.check(path, for: conn.identity) {
            case .allowed:
                break
            case .missing:
                reply(error: .upstreamUnreachable, "nothing answers at unix:\(path)", to: requestID, conn)
                return
            case .denied:
                logLimiter.log(logger, .notice, kind: "policy", "refused relay: the requester cannot reach the address", metadata: [
                    "uid": "\(conn.uid)", "upstream": "\(path)",
                ])
                throw ChannelRefusal(.permissionDenied, "user \(conn.uid) may not connect to unix:\(path), so this daemon will not either")
            }
        }
        let key = RelayKey(path: path, name: name, newest: newest)
        let wanted = newest ? 1 : max(1, min(history, UInt32(configuration.registry.maxSize)))
        if let relay = links.relays[key] {
            if let channel = relay.channel {
                attachLocalReader(requestID, to: channel, history: wanted, owner: relay.upstreamOwner, conn)
            } else {
                relay.pending.append(PendingExternal(connection: conn.id, requestID: requestID, history: wanted))
            }
            return
        }
        let relay = Relay(key: key, history: wanted, uid: conn.uid)
        relay.pending.append(PendingExternal(connection: conn.id, requestID: requestID, history: wanted))
        links.relays[key] = relay
        logger.info("relaying external channel", metadata: ["upstream": "\(path)", "channel": "\(name)"])
        connectUpstream(relay)
    }

    /// A local subscription to a relay's mirror, starting at its `history` most recent messages.
    func attachLocalReader(_ requestID: UInt32, to channel: SiteChannel<ByteRing>, history: UInt32, owner: Owner, _ conn: ConnectionState) {
        do throws(ChannelRefusal) {
            try charge(.subscriptions, conn)
        } catch {
            reply(error: error.wireCode, error.message, to: requestID, conn)
            return
        }
        let start: UInt64
        switch (try? channel.start(at: .last(UInt64(history)))) ?? .at(channel.lastSequence + 1) {
        case .at(let seq): start = seq
        case .full(let first): start = first
        }
        let id = conn.allocateSubscriptionID()
        conn.subscriptions[id] = Subscription(id: id, name: channel.name, source: .site(channel), cursor: start)
        channel.addReader(conn.id, at: start)
        ServerFrame.writeOK(requestID: requestID, into: &conn.outbox) {
            SubscribeReply(subscription: id, waiting: false, epoch: channel.epoch, nextSequence: start, owner: owner).write(to: &$0)
        }
        markDirty(conn)
    }

    func connectUpstream(_ relay: Relay) {
        let broker = self
        ClientBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler(broker: broker, relay: relay))
                }
            }
            .connect(unixDomainSocketPath: relay.key.path)
            .whenComplete { result in
                guard !relay.removed else {
                    if case .success(let channel) = result { channel.close(promise: nil) }
                    return
                }
                switch result {
                case .success(let channel):
                    relay.upstream = channel
                    relay.helloID = relay.send(.hello(versions: [CometProtocol.version]))
                case .failure(let error):
                    broker.relayUnavailable(relay, .upstreamUnreachable, "nothing answers at unix:\(relay.key.path) (\(error))")
                }
            }
    }

    /// The upstream could not be reached or refused: fails waiting readers if the relay never
    /// worked, else tries again after a back-off.
    func relayUnavailable(_ relay: Relay, _ code: ErrorCode, _ message: String) {
        if relay.channel == nil || code == .loopDetected || code == .upstreamVersion {
            endRelay(relay, failing: code, message)
            return
        }
        scheduleReconnect(relay)
    }

    func scheduleReconnect(_ relay: Relay) {
        guard !relay.removed else { return }
        relay.upstream = nil
        relay.upstreamSubscription = nil
        let delay = relay.backoff
        relay.backoff = min(relay.backoff * 2, Relay.maxBackoff)
        logger.notice("upstream lost; reconnecting", metadata: [
            "upstream": "\(relay.key.path)", "channel": "\(relay.key.name)", "in_ms": "\(delay.nanoseconds / 1_000_000)",
        ])
        eventLoop.scheduleTask(in: delay) { [weak self] in
            guard let self, !relay.removed else { return }
            self.connectUpstream(relay)
        }
    }

    /// Removes a relay: waiting readers get `code`; local readers of its mirror drain, then CLOSED.
    func endRelay(_ relay: Relay, failing code: ErrorCode? = nil, _ message: String = "") {
        guard !relay.removed else { return }
        relay.removed = true
        links.relays[relay.key] = nil
        finishRelay(pending: relay.pending, mirror: relay.channel, failing: code, message)
        relay.pending = []
        relay.upstream?.close(promise: nil)
        relay.upstream = nil
    }

    /// Appends messages another daemon numbered `first`, `first + 1`, … (a relay's upstream, an
    /// import's origin) to their local mirror, charged to the mirror's creator (who made the relay,
    /// the bridge feeding the import). Those the mirror has are skipped; past the creator's
    /// buffered-bytes quota a message is dropped, and readers that needed it get FULL at the gap.
    func appendRelayed<Payloads: Sequence>(_ payloads: Payloads, from first: UInt64, into channel: SiteChannel<ByteRing>)
    where Payloads.Element == ByteBuffer {
        let uid = channel.creator.uid
        let overhead = configuration.messageOverhead
        var sequence = first
        var charged = 0
        for payload in payloads {
            defer { sequence += 1 }
            guard sequence > channel.lastSequence else { continue }
            let evicted = channel.ring.count == channel.size ? channel.ring[channel.ring.firstSequence].map { $0.count + overhead } ?? 0 : 0
            do throws(ChannelRefusal) {
                try accounts.check(.bufferedBytes, charged + payload.readableBytes + overhead - evicted, uid: uid)
            } catch {
                refused(error, uid: uid)
                continue
            }
            charged += payload.readableBytes + overhead - evicted
            pushRelayedHandingOver(payload, sequence: sequence, to: channel)
            channel.pushedCount &+= 1
        }
        syncCharge(channel)
        wakeReaders(of: channel)
    }

    /// A relay ends: readers still waiting get `code`; readers of its mirror
    /// drain what it holds, then CLOSED.
    func finishRelay(pending: [PendingExternal], mirror: SiteChannel<ByteRing>?, failing code: ErrorCode?, _ message: String) {
        for waiting in pending {
            guard let conn = connections[waiting.connection] else { continue }
            reply(error: code ?? .noSuchChannel, message, to: waiting.requestID, conn)
        }
        if let mirror {
            if !mirror.isClosed { mirror.close() }
            wakeReaders(of: mirror)
            releaseIfDrained(mirror)
        }
    }

    /// A relay's upstream channel got a new epoch: readers of the old mirror get what it holds,
    /// then RESET (a mirror already closed keeps its CLOSED).
    func retireMirror(_ old: SiteChannel<ByteRing>, replacedBy epoch: UInt64) {
        if !old.isClosed { old.replace(byEpoch: epoch) }
        wakeReaders(of: old)
        releaseIfDrained(old)
    }

    func relayLost(_ relay: Relay, channel: Channel) {
        guard !relay.removed, relay.upstream === channel || relay.upstream == nil else { return }
        relayUnavailable(relay, .upstreamUnreachable, "the upstream daemon at unix:\(relay.key.path) closed the connection")
    }

    /// Subscribes upstream: fresh (the `history` most recent), or resuming after the last
    /// message relayed under the same epoch.
    func subscribeUpstream(_ relay: Relay, resume: Bool) {
        let operation: Request.Operation
        if resume, let channel = relay.channel, !channel.isClosed {
            operation = .subscribe(
                name: relay.key.name, position: .from(channel.lastSequence + 1), epoch: channel.epoch, wait: false)
        } else {
            operation = .subscribe(name: relay.key.name, position: .last(UInt64(relay.history)), epoch: 0, wait: relay.channel != nil)
        }
        relay.subscribeID = relay.send(operation)
    }

    /// A frame from the upstream daemon.
    func relayReceived(_ frame: ServerFrame, _ relay: Relay) {
        switch frame {
        case .ok(let id, var body) where id == relay.helloID:
            relay.helloID = nil
            let version = body.getInteger(at: body.readerIndex, as: UInt16.self)
            guard let hello = try? HelloReply(from: &body), hello.version == CometProtocol.version else {
                let theirs = version.map { "protocol version \($0)" } ?? "an unreadable HELLO reply"
                relayUnavailable(relay, .upstreamVersion, "the daemon at unix:\(relay.key.path) answered HELLO with \(theirs); this daemon speaks version \(CometProtocol.version)")
                return
            }
            guard hello.instance != instance else {
                relayUnavailable(relay, .loopDetected, "unix:\(relay.key.path) is this daemon itself: a channel cannot be relayed from its own daemon")
                return
            }
            subscribeUpstream(relay, resume: true)
        case .ok(let id, var body) where id == relay.subscribeID:
            relay.subscribeID = nil
            guard let reply = try? SubscribeReply(from: &body) else { return }
            relay.upstreamSubscription = reply.subscription
            relay.backoff = .milliseconds(50)
            if !reply.waiting {
                relay.upstreamOwner = reply.owner
                adopt(epoch: reply.epoch, next: reply.nextSequence, relay)
            }
        case .ok:
            break
        case .error(let id, let code, let message):
            if id == 0 || id == relay.helloID {
                if code == .unsupportedVersion {
                    relayUnavailable(relay, .upstreamVersion, "the daemon at unix:\(relay.key.path) refused protocol version \(CometProtocol.version): \(message)")
                }
                // Other connection-level errors (e.g. SHUTTING_DOWN): the connection closes; reconnect then.
                return
            }
            guard id == relay.subscribeID else { return }
            relay.subscribeID = nil
            // Re-created or restarted upstream (a channel the relay had is gone or renumbered): wait
            // for the channel and take its new epoch. Anything else ends the relay.
            let restarted = code == .epochMismatch || code == .positionAhead || (code == .noSuchChannel && relay.channel != nil)
            if restarted {
                relay.subscribeID = relay.send(
                    .subscribe(name: relay.key.name, position: .last(UInt64(relay.history)), epoch: 0, wait: true))
            } else {
                endRelay(relay, failing: code, "upstream unix:\(relay.key.path): \(message)")
            }
        case .started(let sub, let epoch, let next, let owner) where sub == relay.upstreamSubscription:
            relay.upstreamOwner = owner
            adopt(epoch: epoch, next: next, relay)
        case .message(let sub, let seq, let payload) where sub == relay.upstreamSubscription:
            guard let channel = relay.channel else { return }
            appendRelayed(CollectionOfOne(payload), from: seq, into: channel)
        case .full(let sub, let first) where sub == relay.upstreamSubscription:
            // The relay itself fell behind upstream: go on from what is left; the jump in sequence
            // numbers gives local readers an explicit FULL.
            relay.upstreamSubscription = nil
            if let channel = relay.channel {
                relay.subscribeID = relay.send(.subscribe(name: relay.key.name, position: .from(first), epoch: channel.epoch, wait: false))
            }
        case .closed(let sub, _) where sub == relay.upstreamSubscription:
            endRelay(relay)
        default:
            break
        }
    }

    /// The upstream subscription is live under `epoch`: first time, make the mirror and attach
    /// the waiting readers; a new epoch, retire the old mirror (its readers get RESET).
    func adopt(epoch: UInt64, next: UInt64, _ relay: Relay) {
        if let channel = relay.channel, channel.epoch == epoch { return }
        if let old = relay.channel {
            logger.notice("upstream channel was re-created", metadata: ["upstream": "\(relay.key.path)", "channel": "\(relay.key.name)"])
            retireMirror(old, replacedBy: epoch)
        }
        let id = links.nextMirrorID()
        let creator = Identity(uid: relay.uid)
        let channel = SiteChannel<ByteRing>(
            id: id, name: relay.key.name, epoch: epoch, owner: 0, newestOnly: relay.key.newest, creator: creator,
            ring: makeRing(id: id, name: relay.key.name, epoch: epoch, capacity: relay.ringSize, newest: relay.key.newest, creator: creator, stored: false))
        channel.expectRelayed(from: next)
        relay.channel = channel
        for waiting in relay.pending {
            guard let conn = connections[waiting.connection] else { continue }
            attachLocalReader(waiting.requestID, to: channel, history: waiting.history, owner: relay.upstreamOwner, conn)
        }
        relay.pending = []
    }

    /// A relay's mirror lost its last local reader: drop the upstream subscription.
    func releaseRelayIfUnused(_ channel: SiteChannel<ByteRing>) {
        guard channel.subscriberCount == 0, channel.id >> 62 == 1,
            let relay = links.relays.values.first(where: { $0.channel === channel })
        else { return }
        endRelay(relay)
    }
}
