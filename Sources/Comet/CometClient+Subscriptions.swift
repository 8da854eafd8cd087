import CometWire
import NIOConcurrencyHelpers
import NIOCore

/// Subscribing, acknowledging and unsubscribing.
extension CometClient {
    /// Subscribes to the private channel `name` of this client's session. Delivery starts at the
    /// first message not yet acknowledged; the subscription acknowledges each message when the
    /// next one is asked for (and at the end), so messages are never lost across a resume and at
    /// most one is delivered twice.
    ///
    /// - Parameter owner: refuse (`.ownerMismatch`) a channel created by any other uid.
    public func subscribePrivate(_ name: String, owner: UInt32? = nil) async throws -> CometSubscription {
        try await subscribe(name, from: .next, epoch: nil, wait: false, scope: .clientProcess, owner: owner)
    }

    /// Subscribes to channel `name` of another cometd (Eliom's `external_channel`): this client's
    /// daemon relays it — one upstream subscription however many local readers — with the same
    /// sequence numbers and epoch. The reader starts with exactly the `history` most recent
    /// messages (default 1); `newest` makes it a latest-value channel.
    /// - Parameter address: the other daemon's socket, `unix:/path` or `/path`. (A `nats://`
    ///   address is `.unsupported` since 0.7: another host's channels are imports comet-bridge
    ///   declares, subscribed to by their local name; docs/FEDERATION.md.)
    /// - Throws: `CometError` with `.upstreamUnreachable`, `.noSuchChannel`, `.upstreamVersion`,
    ///   `.loopDetected`, `.invalidAddress`, `.unsupported`. Iteration may end with `EpochChanged` when the
    ///   upstream channel is re-created.
    public func subscribeExternal(
        address: String, channel name: String, history: Int = 1, newest: Bool = false
    ) async throws -> CometSubscription {
        try await subscribe(
            name, operation: .subscribeExternal(address: address, name: name, history: UInt32(clamping: history), newest: newest),
            acknowledges: false)
    }

    /// Subscribes to the channel `name`.
    ///
    /// - Parameters:
    ///   - position: where to start; `.next` by default.
    ///   - epoch: when resuming, the epoch last seen; a different one fails with `.epochMismatch`.
    ///   - wait: if no channel has the name yet, wait for one instead of failing with `.noSuchChannel`.
    ///   - owner: whose channel to accept (`.implied` by default: `user.NAME.…` only from user
    ///     NAME). Another creator is refused with `.ownerMismatch` (when the channel exists), or
    ///     ends a waiting subscription with that error when it appears.
    ///   - mapped: read the channel's ring from shared memory when the daemon offers it
    ///     (docs/PROTOCOL.md §6.23; `info.mapped` says whether it does): the same messages and
    ///     endings, without a copy through the socket. `false`: MESSAGE frames only.
    public func subscribe(
        _ name: String, from position: SubscribePosition = .next, epoch: UInt64? = nil, wait: Bool = false, owner: OwnerPin = .implied,
        mapped: Bool = true
    ) async throws -> CometSubscription {
        try await subscribe(name, from: position, epoch: epoch, wait: wait, scope: .site, owner: owner.uid(for: name), mapped: mapped)
    }

    /// Subscribes to the channel `name` created by uid `owner` (nil: the owner the name implies,
    /// as `OwnerPin.implied`).
    public func subscribe(
        _ name: String, from position: SubscribePosition = .next, epoch: UInt64? = nil, wait: Bool = false, owner: UInt32?,
        mapped: Bool = true
    ) async throws -> CometSubscription {
        try await subscribe(name, from: position, epoch: epoch, wait: wait, owner: owner.map(OwnerPin.uid) ?? .implied, mapped: mapped)
    }

    private func subscribe(
        _ name: String, from position: SubscribePosition, epoch: UInt64?, wait: Bool, scope: Scope, owner: UInt32?, mapped: Bool = false
    ) async throws -> CometSubscription {
        let mapping = mapped && scope == .site && server.servesMappedRings
        return try await subscribe(
            name,
            operation: .subscribe(
                name: name, position: position, epoch: epoch ?? 0, wait: wait, scope: scope, owner: owner, mapped: mapping,
                returning: mapping && server.returnsToRings),
            acknowledges: scope == .clientProcess, again: Resubscription(scope: scope, wait: wait, owner: owner, mapped: mapped && scope == .site))
    }

    private func subscribe(
        _ name: String, operation: Request.Operation, acknowledges: Bool, again: Resubscription? = nil
    ) async throws -> CometSubscription {
        let (mapping, returning): (Bool, Bool)
        if case .subscribe(_, _, _, _, _, _, let mapped, let returns) = operation { (mapping, returning) = (mapped, returns) } else {
            (mapping, returning) = (false, false)
        }
        let handler = self.handler
        let loop = eventLoop
        let client = self
        return try await request(operation) { body in
            let reply = try SubscribeReply(from: &body)
            let info = NIOLockedValueBox(
                SubscriptionInfo(epoch: reply.epoch, nextSequence: reply.nextSequence, waiting: reply.waiting, owner: reply.owner))
            let made = MessageSequence.makeSequence(
                backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8),
                finishOnDeinit: true,
                delegate: SinkDelegate(eventLoop: loop, handler: handler, subscription: reply.subscription))
            let sink = SubscriptionSink(
                id: reply.subscription, name: name, source: made.source, info: info, again: again,
                path: mapping ? .mapped(MappedReading()) : .socket)
            sink.returnsToRing = returning
            // A mapped reader reads from the ring itself, from the first message the daemon named.
            if mapping, reply.nextSequence > 0 { sink.last = reply.nextSequence - 1 }
            handler.addSink(sink)
            return CometSubscription(
                client: client, id: reply.subscription, name: name, info: info, messages: made.sequence,
                acknowledges: acknowledges)
        }
    }

    func unsubscribe(_ id: UInt32) async throws {
        let handler = self.handler
        let serverID = try await eventLoop.submit { handler.cancel(id) }.get() ?? id
        try await request(.unsubscribe(subscription: serverID)) { _ in () }
    }

    func acknowledge(_ subscription: UInt32, through sequence: UInt64) {
        let handler = self.handler
        eventLoop.execute {
            guard let id = handler.serverID(of: subscription) else { return }
            handler.send(.ack(subscription: id, sequence: sequence)) { _ in }
        }
    }
}
