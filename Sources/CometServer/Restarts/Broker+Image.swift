import CometChannels
import CometState
import CometWire
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The broker's state as a `DaemonImage`, and back (docs/RESTARTS.md).
///
/// Taking an image reads the state and changes nothing, so a live upgrade whose `execve` fails
/// goes on serving as if nothing happened. Restoring puts every channel, session and
/// subscription back with its numbers; connections come back one by one as their sockets are
/// adopted (`adopt(_:context:)`), and handle nothing until all are back (`finishAdoption`), so
/// that no reader misses a push made before it was adopted.
extension Broker {
    /// Mirrors of other daemons' channels (relays, NATS imports) have this bit in their handle;
    /// they are not carried over (their links are made again).
    static func isMirror(_ id: UInt64) -> Bool { id & (1 << 62) != 0 && !isPrivateHandle(id) }

    /// The state now. `descriptor` names each connection's socket; a connection without one (or
    /// closing) is left out and closes with the old process.
    func image(listeners: [Int32], descriptor: (ConnectionState) -> (fd: Int32, cookie: UInt64)?) -> DaemonImage {
        var sites: [UInt64: SiteChannel<ByteRing>] = [:]
        for channel in registry.byName.values { sites[channel.id] = channel }
        for channel in closedChannels.channels { sites[channel.id] = channel }
        var kept: [ConnectionImage] = []
        for conn in connections.values.sorted(by: { $0.id < $1.id }) where !conn.isClosing {
            guard let (fd, cookie) = descriptor(conn) else { continue }
            syncQueuedOutput(conn)
            var output = ByteBufferAllocator().buffer(capacity: conn.unsentBytes + conn.outbox.readableBytes)
            for part in conn.unsent { output.writeImmutableBuffer(part) }
            output.writeImmutableBuffer(conn.outbox)
            var subscriptions: [SubscriptionImage] = []
            for (id, sub) in conn.subscriptions.sorted(by: { $0.key < $1.key }) {
                let source: SubscriptionImage.Source
                let channel: UInt64
                var cursor = sub.cursor
                // Mapped with RETURN (on its ring or detached from it): the next process gives it its ring back.
                let returns = sub.mapped?.returns ?? (sub.ringReturn != nil)
                switch sub.source {
                case .site(let read):
                    if !Self.isMirror(read.id) { sites[read.id] = read }
                    (source, channel) = (.site, read.id)
                    if let mapped = sub.mapped {
                        // The next process serves it over the socket. It may not have read what
                        // RING_ADVANCED announced (its RING still on the way, which the next
                        // process cannot answer): it goes on from the first message it is not
                        // known to have read, and drops by sequence what it has already.
                        cursor = max(read.ring.firstSequence, min(cursor, mapped.readUpTo(announcedUpTo: cursor)))
                    }
                case .clientProcess(let read): (source, channel) = (.clientProcess, read.id)
                case nil: (source, channel) = (.waiting, 0)
                }
                subscriptions.append(SubscriptionImage(
                    id: id, name: sub.name, source: source, channel: channel, cursor: cursor, pinnedOwner: sub.pinnedOwner,
                    returnsToRing: returns && source == .site))
            }
            let waits = conn.timeoutWaits.sorted().compactMap { timeoutWaiters[$0] }.map {
                TimeoutWaitImage(session: $0.session, requestID: $0.requestID, timeout: $0.timeout)
            }
            kept.append(ConnectionImage(
                id: conn.id, descriptor: fd, cookie: cookie, peer: PeerImage(conn.identity), openedAt: conn.openedAt, lastRequest: conn.lastRequest,
                handshaken: conn.handshaken, counted: conn.counted, inputClosed: conn.inputClosed, session: conn.session?.id,
                ownedChannels: conn.ownedChannels, nextSubscriptionID: conn.nextSubscriptionID, subscriptions: subscriptions,
                timeoutWaits: waits, input: conn.pendingInput?() ?? ByteBuffer(), output: output))
        }
        let channels = sites.values.filter { !Self.isMirror($0.id) }.sorted { $0.id < $1.id }.map { channel in
            SiteChannelImage(
                id: channel.id, name: channel.name, epoch: channel.epoch, owner: channel.owner, newestOnly: channel.keepsNewestOnly,
                size: channel.size, creator: PeerImage(channel.creator), closed: channel.isClosed,
                registered: registry.channel(named: channel.name) === channel, replacedByEpoch: channel.replacedByEpoch,
                firstSequence: channel.ring.firstSequence, messages: Self.messages(of: channel.ring),
                pushedCount: channel.pushedCount, pushedBytes: channel.pushedBytes, deliveredCount: channel.deliveredCount,
                fullCount: channel.fullCount, tokenHigh: channel.producerToken.high, tokenLow: channel.producerToken.low,
                numberedFrom: channel.numbering.origin)
        }
        let privates = privateChannels.values.sorted { $0.id < $1.id }.map { channel in
            PrivateChannelImage(
                id: channel.id, name: channel.name, epoch: channel.epoch, session: channel.session, owner: channel.owner,
                size: channel.size, unlimited: channel.isUnlimited, creator: PeerImage(channel.creator),
                acknowledged: channel.acknowledged, closed: channel.isClosed, full: channel.isFull, reader: channel.reader,
                outstandingPull: channel.outstandingPull, nextPull: channel.nextPullID, firstSequence: channel.ring.firstSequence,
                messages: Self.messages(of: channel.ring), tokenHigh: channel.producerToken.high, tokenLow: channel.producerToken.low,
                numberedFrom: channel.numbering.origin)
        }
        let sessionImages = sessions.sessions.values.sorted { $0.id < $1.id }.map { session in
            SessionImage(
                id: session.id, tokenHigh: session.token.high, tokenLow: session.token.low, uid: session.uid,
                connections: session.connections.sorted(), detachedAt: session.detachedAt, lastActivity: session.lastActivity,
                channels: session.channels.sorted { $0.key < $1.key }.map { PrivateChannelEntry(name: $0.key, handle: $0.value) },
                charged: chargedSessions.contains(session.id))
        }
        return DaemonImage(
            softwareVersion: CometProtocol.softwareVersion, instance: instance, nextConnectionID: connections.nextID,
            nextChannelID: registry.nextChannelID, nextPrivateID: privateChannels.nextNumber, listeners: listeners, channels: channels,
            privateChannels: privates, sessions: sessionImages, connections: kept, storedNames: stateStore?.names ?? [])
    }

    /// A channel's messages, copied out of its ring into one block.
    static func messages(of ring: ByteRing) -> [ByteBuffer] {
        var lengths: [Int] = []
        lengths.reserveCapacity(ring.count)
        var block = ByteBufferAllocator().buffer(capacity: ring.bytes - ring.overhead * ring.count)
        _ = ring.forEach(from: ring.firstSequence) { payload in
            lengths.append(payload.count)
            block.writeBytes(payload)
            return true
        }
        return lengths.map { block.readSlice(length: $0)! }
    }

    /// Puts back channels, private channels and sessions; connections wait in `restore` for
    /// their sockets. Everything restored is charged to its users again, without refusal.
    func restore(_ image: DaemonImage) {
        instance = image.instance
        connections.continueNumbering(after: image.nextConnectionID)
        privateChannels.continueNumbering(after: image.nextPrivateID)
        registry.nextChannelID = image.nextChannelID
        for saved in image.channels {
            let creator = Identity(saved.creator)
            let ring = makeRing(
                id: saved.id, name: saved.name, epoch: saved.epoch, capacity: saved.size, newest: saved.newestOnly, creator: creator,
                stored: (saved.registered || saved.closed) && !Self.isMirror(saved.id))
            let channel = SiteChannel<ByteRing>(
                id: saved.id, name: saved.name, epoch: saved.epoch, owner: saved.owner, newestOnly: saved.newestOnly, creator: creator,
                ring: ring)
            let messages = saved.messages
            channel.restore(
                first: saved.firstSequence, count: messages.count, { messages[$0].withUnsafeReadableBytes { $0 } }, closed: saved.closed,
                replacedByEpoch: saved.replacedByEpoch)
            channel.pushedCount = saved.pushedCount
            channel.pushedBytes = saved.pushedBytes
            channel.deliveredCount = saved.deliveredCount
            channel.fullCount = saved.fullCount
            channel.producerToken = SessionToken(high: saved.tokenHigh, low: saved.tokenLow)
            channel.numbering = ProducerNumbering(origin: saved.numberedFrom)
            if saved.registered, !saved.closed {
                do throws(ChannelRefusal) {
                    try registry.adopt(channel)
                    accounts.force(.channels, 1, uid: channel.creator.uid)
                } catch {
                    logger.warning("restored channel not registered", metadata: ["channel": "\(saved.name)", "error": "\(error.message)"])
                }
            }
            // A closed one is kept for readers that come back (the time it had left is not
            // carried: it gets the whole grace period again).
            if saved.closed, stateStore != nil, !Self.isMirror(saved.id) { keepClosed(channel) }
            syncCharge(channel)
            restore.restored(channel)
        }
        for saved in image.privateChannels {
            let creator = Identity(saved.creator)
            let ring = makeRing(
                saved.unlimited ? .unlimited : .private, id: saved.id, name: saved.name, epoch: saved.epoch, session: saved.session,
                capacity: saved.unlimited ? 1 : saved.size, creator: creator, stored: true)
            let channel = PrivateChannel<ByteRing>(
                id: saved.id, name: saved.name, epoch: saved.epoch, session: saved.session, owner: saved.owner,
                unlimited: saved.unlimited, creator: creator, ring: ring)
            let messages = saved.messages
            channel.restore(
                first: saved.firstSequence, count: messages.count, { messages[$0].withUnsafeReadableBytes { $0 } },
                acknowledged: saved.acknowledged, closed: saved.closed, full: saved.full, outstandingPull: saved.outstandingPull,
                nextPull: saved.nextPull)
            channel.reader = saved.reader
            channel.producerToken = SessionToken(high: saved.tokenHigh, low: saved.tokenLow)
            channel.numbering = ProducerNumbering(origin: saved.numberedFrom)
            privateChannels.insert(channel)
            accounts.force(.channels, 1, uid: channel.creator.uid)
            syncCharge(channel)
        }
        let grace = UInt64(configuration.sessionGrace.nanoseconds)
        let now = uptime()
        for saved in image.sessions {
            let session = sessions.restore(
                id: saved.id, token: SessionToken(high: saved.tokenHigh, low: saved.tokenLow), uid: saved.uid,
                connections: Set(saved.connections), detachedAt: saved.detachedAt, lastActivity: saved.lastActivity,
                channels: Dictionary(saved.channels.map { ($0.name, $0.handle) }, uniquingKeysWith: { a, _ in a }))
            if saved.charged {
                chargedSessions.insert(session.id)
                accounts.force(.sessions, 1, uid: session.uid)
            }
            if let since = saved.detachedAt {
                let left = since + grace > now ? since + grace - now : 0
                let id = session.id
                eventLoop.scheduleTask(in: .nanoseconds(Int64(clamping: left))) { [weak self] in
                    guard let self, let ended = self.sessions.expire(id, now: uptime(), grace: grace) else { return }
                    self.endSession(ended)
                }
            }
        }
        restore.begin(connections: image.connections, storedNames: image.storedNames)
    }

    /// The connection `saved` is back on `context`: its state, subscriptions and waits are put
    /// back, and what was owed to it is queued first.
    func adopt(_ saved: ConnectionImage, context: ChannelHandlerContext) -> ConnectionState {
        restore.adopted(saved.id)
        let conn = ConnectionState(id: saved.id, context: context, now: saved.openedAt)
        conn.lastRequest = saved.lastRequest
        var identity = Identity(saved.peer)
        identity.groups = groups(of: identity)
        conn.identity = identity
        conn.handshaken = saved.handshaken
        conn.inputClosed = saved.inputClosed
        conn.ownedChannels = saved.ownedChannels
        conn.nextSubscriptionID = saved.nextSubscriptionID
        conn.session = saved.session.flatMap { sessions.session($0) }
        connections.insert(conn)
        if saved.counted {
            conn.admission = .counted
            accounts.force(.connections, 1, uid: conn.uid)
        }
        var owed = context.channel.allocator.buffer(capacity: saved.output.readableBytes)
        owed.writeImmutableBuffer(saved.output)
        conn.outbox = owed
        for sub in saved.subscriptions {
            var restored = Subscription(id: sub.id, name: sub.name, source: nil, cursor: sub.cursor, pinnedOwner: sub.pinnedOwner)
            switch sub.source {
            case .site:
                guard let channel = restore.sites[sub.channel] else {
                    // A relay's or import's mirror: the link is made again by subscribing again.
                    ServerFrame.failed(
                        subscription: sub.id, code: .upstreamUnreachable,
                        message: "cometd was upgraded and external channel '\(sub.name)' was not carried over; subscribe again from \(sub.cursor)"
                    ).encode(into: &conn.outbox)
                    continue
                }
                restored.source = .site(channel)
                channel.addReader(conn.id, at: sub.cursor)
                // It reads the socket now (MESSAGE frames from its cursor) and, having asked for it,
                // is given its ring back once it caught up, as after a detach.
                if sub.returnsToRing, channel.ring.share() {
                    restored.ringReturn = RingReturn(detachedAt: uptime(), attachedAt: uptime(), before: 0)
                }
            case .clientProcess:
                guard let channel = privateChannels[sub.channel] else { continue }
                restored.source = .clientProcess(channel)
            case .waiting:
                do throws(ChannelRefusal) {
                    try registry.wait(for: sub.name, WaiterKey(connection: conn.id, subscription: sub.id))
                } catch { continue }
            }
            conn.subscriptions[sub.id] = restored
            accounts.force(.subscriptions, 1, uid: conn.uid)
        }
        for wait in saved.timeoutWaits {
            let waiter = timeoutWaiters.add(
                session: wait.session, connection: conn.id, uid: conn.uid, requestID: wait.requestID, timeout: wait.timeout)
            conn.timeoutWaits.insert(waiter.id)
            accounts.force(.timeoutWaits, 1, uid: conn.uid)
        }
        return conn
    }

    /// Every socket is back (or gave up): connections whose socket did not come back are
    /// forgotten like closed ones, waits are timed again, and everyone goes on.
    func finishAdoption() {
        let (missing, sites, old) = restore.finish()
        for (id, saved) in missing {
            logger.warning("connection not carried over", metadata: ["connection": "\(id)", "fd": "\(saved.descriptor)"])
        }
        for channel in sites where channel.isClosed { releaseIfDrained(channel) }
        for waiter in timeoutWaiters.ids { checkTimeout(waiter) }
        for conn in connections.values {
            markDirty(conn)
            conn.afterAdoption?()
            conn.afterAdoption = nil
        }
        for channel in privateChannels.values where channel.reader.map({ connections[$0] == nil }) ?? false { channel.reader = nil }
        orphanChannelsWithoutProducer()
        deliverDirty()
        // Fresh storage files after everyone went on (a push meanwhile is in the ring, which is
        // what the files are written from); until then the previous process's files stand.
        eventLoop.execute { self.storeEverything(forgetting: old) }
    }
}

extension PeerImage {
    init(_ identity: Identity) { self.init(pid: identity.pid, uid: identity.uid, gid: identity.gid) }
}

extension Identity {
    init(_ peer: PeerImage) { self.init(pid: peer.pid, uid: peer.uid, gid: peer.gid) }
}
