import CometChannels
import CometState
import CometWire
import NIOCore

extension Broker {
    /// Handles one decoded request. Answers go to the connection's outbox.
    func handle(_ request: Request, from conn: ConnectionState) {
        guard !conn.isClosing else { return }
        conn.lastRequest = uptime()
        trimmer.count(1)
        guard conn.handshaken else {
            if case .ring(let ticket) = request.operation { return handOverRing(request.id, ticket: ticket, conn) }
            if case .ringOnly(let refusal) = conn.admission {
                // Over the user's connection quota, let in for RING only: the refusal it was spared.
                fail(conn, WireError(.quotaExceeded, refusal), log: false)
                return
            }
            guard case .hello(let versions) = request.operation else {
                fail(conn, WireError(.handshakeRequired, "the first frame must be HELLO"))
                return
            }
            hello(request.id, versions: versions, conn)
            return
        }
        do throws(ChannelRefusal) {
            switch request.operation {
            case .hello:
                fail(conn, WireError(.handshakeRequired, "HELLO was already received"))
                return
            case .create(let name, let kind, let size):
                try create(request.id, name: name, kind: kind, size: size, conn)
            case .push(let channelID, let payload):
                try push(request.id, to: channelID, MessageBatch(one: payload), conn)
            case .pushBatch(let channelID, let payloads):
                try push(request.id, to: channelID, payloads, conn)
            case .pushNumbered(let channelID, let number, let payloads):
                try push(request.id, to: channelID, payloads, number: number, conn)
            case .close(let channelID) where Self.isPrivateHandle(channelID):
                let channel = try ownedPrivate(channelID, conn)
                conn.ownedChannels -= 1
                closePrivate(channel)
                ServerFrame.writeOK(requestID: request.id, into: &conn.outbox) {
                    CloseReply(lastSequence: channel.lastSequence).write(to: &$0)
                }
            case .close(let channelID):
                let channel = try registry.close(channelID, by: conn.id)
                conn.ownedChannels -= 1
                ServerFrame.writeOK(requestID: request.id, into: &conn.outbox) {
                    CloseReply(lastSequence: channel.lastSequence).write(to: &$0)
                }
                channelClosed(channel)
            case .subscribe(let name, _, _, _, .clientProcess, let owner, _, _):
                try subscribePrivate(request.id, name: name, owner: owner, conn)
            case .subscribe(let name, let position, let epoch, let wait, .site, let owner, let mapped, let returning):
                try subscribe(
                    request.id, name: name, position: position, epoch: epoch, wait: wait, owner: owner, mapped: mapped, returning: returning,
                    conn)
            case .ring:
                fail(conn, WireError(.invalidArgument, "RING is the first and only request of a connection"))
                return
            case .resume(let session, let high, let low):
                resume(request.id, session: session, token: SessionToken(high: high, low: low), conn)
            case .createPrivate(let name, let kind, let size, let session):
                try createPrivate(request.id, name: name, kind: kind, size: size, session: session, conn)
            case .ack(let subscription, let sequence):
                try acknowledge(request.id, subscription: subscription, sequence: sequence, conn)
            case .answer(let channel, let pull, let payload):
                try answer(request.id, channel: channel, pull: pull, payload: payload, conn)
            case .subscribeExternal(let address, let name, let history, let newest):
                try subscribeExternal(request.id, address: address, name: name, history: history, newest: newest, conn)
            case .waitTimeout(let session, let milliseconds):
                try waitTimeout(request.id, session: session, milliseconds: milliseconds, conn)
            case .sessions:
                let page = sessionsPage(after: 0, conn)
                ServerFrame.writeOK(requestID: request.id, into: &conn.outbox) { page.write(to: &$0) }
            case .sessionsFrom(let after):
                let page = sessionsPage(after: after, conn)
                ServerFrame.writeOK(requestID: request.id, into: &conn.outbox) { page.write(to: &$0) }
            case .unsubscribe(let id):
                guard let sub = conn.subscriptions.removeValue(forKey: id) else {
                    reply(error: .noSuchSubscription, "no subscription \(id) on this connection", to: request.id, conn)
                    return
                }
                detach(sub, of: conn)
                ServerFrame.writeOK(requestID: request.id, into: &conn.outbox)
            case .list:
                let page = listPage(after: nil, conn)
                ServerFrame.writeOK(requestID: request.id, into: &conn.outbox) { page.write(to: &$0) }
            case .listFrom(let name, let scope):
                let page = listPage(after: (name, scope), conn)
                ServerFrame.writeOK(requestID: request.id, into: &conn.outbox) { page.write(to: &$0) }
            case .ping:
                ServerFrame.writeOK(requestID: request.id, into: &conn.outbox)
            case .stats:
                let reply = stats(for: conn)
                ServerFrame.writeOK(requestID: request.id, into: &conn.outbox) { reply.write(to: &$0) }
            case .adopt(let channel, let high, let low):
                try adopt(request.id, channel: channel, token: SessionToken(high: high, low: low), conn)
            case .mirror(let name, let epoch, let next, let size, let newest):
                try mirror(request.id, name: name, epoch: epoch, next: next, size: size, newest: newest, conn)
            case .mirrorPush(let handle, let first, let payloads):
                try mirrorPush(request.id, handle: handle, first: first, payloads, conn)
            case .mirrorState(let handle, let state, let last, let reason):
                try mirrorState(request.id, handle: handle, state: state, last: last, reason: reason, conn)
            case .bridgeReport(let report):
                try bridgeReported(report, conn)
                ServerFrame.writeOK(requestID: request.id, into: &conn.outbox)
            }
        } catch {
            reply(error: error.wireCode, error.message, to: request.id, conn)
        }
        markDirty(conn)
    }

    /// The private channel `id`, checked to be owned by `conn`.
    private func ownedPrivate(_ id: UInt64, _ conn: ConnectionState) throws(ChannelRefusal) -> PrivateChannel<ByteRing> {
        guard let channel = privateChannels[id], !channel.isClosed else {
            throw ChannelRefusal(.noSuchChannel, "no live channel has id \(id)")
        }
        guard channel.owner == conn.id else {
            throw ChannelRefusal(.notOwner, "private channel '\(channel.name)' belongs to another connection")
        }
        return channel
    }

    /// Handles of private channels have the top bit set; site channels' never do.
    static func isPrivateHandle(_ id: UInt64) -> Bool { id >> 63 == 1 }

    /// PUSH, PUSH_BATCH and PUSH_NUMBERED: appends `payloads` (each copied once, into the ring) to a channel
    /// `conn` owns, answers with their sequence numbers and wakes the readers. With a producer
    /// `number` the messages the channel took already are skipped (an idempotent resend) and the
    /// answer gives the sequence numbers they got then.
    private func push(
        _ requestID: UInt32, to channelID: UInt64, _ payloads: MessageBatch, number: UInt64? = nil, _ conn: ConnectionState
    ) throws(ChannelRefusal) {
        trimmer.count(payloads.count)
        guard !payloads.isEmpty else { return reply(error: .invalidArgument, "a batch holds at least one message", to: requestID, conn) }
        var first: UInt64 = 0
        if Self.isPrivateHandle(channelID) {
            let channel = try ownedPrivate(channelID, conn)
            // Before the numbers: an overflowed channel refuses even a resend.
            try channel.checkTakesPushes()
            let (skip, answer) = try Self.admit(number, payloads.count, channel.numbering, channel.lastSequence, channel.name)
            let fresh = payloads.dropFirst(skip)
            if !fresh.isEmpty {
                try checkBuffered(fresh, in: channel.ring, uid: channel.creator.uid)
                defer {
                    syncCharge(channel)
                    if channel.isFull { storePrivateState(channel) }
                }
                if number != nil {
                    channel.numbering.begin(at: channel.lastSequence + 1)
                    channel.ring.setNumberedFrom(channel.numbering.origin)
                }
                first = try pushPrivate(channel, fresh)
            }
            first = answer ?? first
        } else {
            let channel = try registry.owned(channelID, by: conn.id)
            let (skip, answer) = try Self.admit(number, payloads.count, channel.numbering, channel.lastSequence, channel.name)
            let fresh = payloads.dropFirst(skip)
            if !fresh.isEmpty {
                try checkBuffered(fresh, in: channel.ring, uid: channel.creator.uid)
                if number != nil {
                    channel.numbering.begin(at: channel.lastSequence + 1)
                    // In the ring's file before the numbered messages are published in it.
                    channel.ring.setNumberedFrom(channel.numbering.origin)
                }
                first = try pushHandingOver(fresh, to: channel)
                channel.pushedCount &+= UInt64(fresh.count)
                channel.pushedBytes &+= UInt64(fresh.payloadBytes)
                syncCharge(channel)
                wakeReaders(of: channel)
                if case .applied(let n) = configuration.crashPoint, (first..<(first + UInt64(fresh.count))).contains(n) {
                    configuration.crashPoint?.crash()
                }
            }
            first = answer ?? first
        }
        ServerFrame.writeOK(requestID: requestID, into: &conn.outbox) {
            PushReply(firstSequence: first, count: UInt32(payloads.count)).write(to: &$0)
        }
    }

    /// How many of a push's messages a channel took already, and the sequence number its first
    /// message got (nil: it gets the next ones). A channel whose producer numbers takes numbered
    /// pushes only: an unnumbered one could not be told from a resend.
    private static func admit(
        _ number: UInt64?, _ count: Int, _ numbering: ProducerNumbering, _ last: UInt64, _ name: String
    ) throws(ChannelRefusal) -> (skip: Int, first: UInt64?) {
        guard let number else {
            guard !numbering.isNumbered else {
                throw ChannelRefusal(.wrongPushKind, "channel '\(name)' takes numbered pushes only (PUSH_NUMBERED): its producer numbers them")
            }
            return (0, nil)
        }
        switch numbering.admit(number: number, count: count, lastSequence: last) {
        case .apply(let skip, let first): return (skip, first)
        case .outOfOrder(let expected):
            throw ChannelRefusal(.outOfOrder, "channel '\(name)' expects producer number \(expected), not \(number)")
        }
    }

    /// Pushes to a private channel in order and wakes its reader, also when a push overflowed it
    /// (the reader then gets FULL). Returns the first sequence number.
    private func pushPrivate(_ channel: PrivateChannel<ByteRing>, _ payloads: MessageBatch) throws(ChannelRefusal) -> UInt64 {
        defer { wakeReader(of: channel) }
        return try payloads.withPayloads { (payloads) throws(ChannelRefusal) -> UInt64 in
            var first: UInt64 = 0
            while let payload = payloads.next() {
                let seq = try channel.push(payload)
                if first == 0 { first = seq }
            }
            return first
        }
    }

    /// Wakes the reader of a private channel, or, when a push overflowed it, ends its subscription.
    func wakeReader(of channel: PrivateChannel<ByteRing>) {
        touch(channel.session)
        if let reader = channel.reader, let conn = connections[reader] { markDirty(conn) }
    }

    func reply(error code: ErrorCode, _ message: String, to requestID: UInt32, _ conn: ConnectionState) {
        ServerFrame.writeError(requestID: requestID, code: code, message: message, into: &conn.outbox)
        markDirty(conn)
        // Refusals are worth an administrator's eye, a few per kind and interval (the rest counted).
        logLimiter.log(logger, .info, kind: "refused-\(code.name)", "request refused", metadata: [
            "uid": "\(conn.uid)", "code": "\(code.name)", "reason": "\(message)",
        ])
    }
    private func hello(_ requestID: UInt32, versions: [UInt16], _ conn: ConnectionState) {
        guard versions.contains(CometProtocol.version) else {
            fail(conn, WireError(
                .unsupportedVersion,
                "this daemon speaks protocol version \(CometProtocol.version); the client offered \(versions)"))
            return
        }
        let session: Session
        do throws(ChannelRefusal) {
            session = try openSession(for: conn)
        } catch {
            fail(conn, WireError(.quotaExceeded, error.message), log: false)
            return
        }
        conn.handshaken = true
        let reply = HelloReply(
            version: CometProtocol.version, maxFrameSize: configuration.maxFrameSize,
            maxChannelSize: UInt32(configuration.registry.maxSize), maxNameLength: UInt16(ChannelName.maxLength),
            sessionID: session.id, tokenHigh: session.token.high, tokenLow: session.token.low, instance: instance,
            features: HelloReply.Features.numberedPushes | HelloReply.Features.mirrors | HelloReply.Features.mappedRings
                | HelloReply.Features.ringReturn)
        ServerFrame.writeOK(requestID: requestID, into: &conn.outbox) { reply.write(to: &$0) }
        markDirty(conn)
    }

    private func create(_ requestID: UInt32, name: String, kind: ChannelKind, size: UInt32, _ conn: ConnectionState) throws(ChannelRefusal) {
        guard kind == .buffered || kind == .newest else {
            reply(error: .unsupported, "channel kind \(kind.rawValue) is not served by this daemon", to: requestID, conn)
            return
        }
        guard conn.ownedChannels < configuration.maxChannelsPerConnection else {
            throw ChannelRefusal(.limitExceeded, "this connection already owns \(configuration.maxChannelsPerConnection) channels")
        }
        try ChannelName.validate(name)
        let decision = policy.creation(name, conn.identity, users: userID(named:))
        guard decision.allows else {
            let rule = decision.pattern.map { "create \($0)" } ?? "create"
            logLimiter.log(logger, .notice, kind: "policy", "refused by policy: create", metadata: ["uid": "\(conn.uid)", "channel": "\(name)", "rule": "\(rule)"])
            throw ChannelRefusal(.permissionDenied, "the policy does not let user \(conn.uid) create channel '\(name)' (rule '\(rule)')")
        }
        guard registry.channel(named: name) == nil else { throw ChannelRefusal(.channelExists, "channel '\(name)' already exists") }
        if links.mirrors[name] != nil {
            throw ChannelRefusal(.channelExists, "channel '\(name)' is an import (fed by comet-bridge)")
        }
        try charge(.channels, conn)
        let created: (channel: SiteChannel<ByteRing>, waiters: [WaiterKey])
        do {
            created = try registry.create(name: name, size: Int(size), owner: conn.id, newestOnly: kind == .newest, creator: conn.identity) {
                makeRing(id: $0, name: name, epoch: $1, capacity: $2, newest: kind == .newest, creator: conn.identity, stored: true)
            }
        } catch {
            accounts.release(.channels, uid: conn.uid)
            throw error
        }
        let (channel, waiters) = created
        channel.producerToken = .random()
        conn.ownedChannels += 1
        ServerFrame.writeOK(requestID: requestID, into: &conn.outbox) {
            CreateReply(channel: channel.id, epoch: channel.epoch, tokenHigh: channel.producerToken.high, tokenLow: channel.producerToken.low)
                .write(to: &$0)
        }
        stored(channel)
        start(waiters, on: channel)
    }
}

extension Identity {
    /// The owner fields the protocol carries.
    var owner: Owner { Owner(uid: uid, gid: gid) }
}

extension ChannelRefusal {
    /// The wire error this refusal is reported as.
    var wireCode: ErrorCode {
        switch code {
        case .invalidName: return .invalidName
        case .invalidSize, .invalidPosition: return .invalidArgument
        case .channelExists: return .channelExists
        case .noSuchChannel: return .noSuchChannel
        case .notOwner: return .notOwner
        case .channelClosed: return .channelClosed
        case .positionAhead: return .positionAhead
        case .limitExceeded: return .limitExceeded
        case .epochMismatch: return .epochMismatch
        case .channelFull: return .channelFull
        case .alreadySubscribed: return .alreadySubscribed
        case .pullNotRequested: return .pullNotRequested
        case .noSuchSession: return .noSuchSession
        case .badToken: return .badToken
        case .wrongUser: return .wrongUser
        case .quotaExceeded: return .quotaExceeded
        case .permissionDenied: return .permissionDenied
        case .ownerMismatch: return .ownerMismatch
        case .outOfOrder: return .outOfOrder
        case .wrongPushKind: return .invalidArgument
        case .unsupported: return .unsupported
        case .upstreamUnreachable: return .upstreamUnreachable
        }
    }
}
