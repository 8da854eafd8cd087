import CometChannels
import CometState
import CometWire
import NIOCore

/// Subscriptions that wait for a channel's name (SUBSCRIBE with `wait`), and how each starts
/// when a channel of that name appears.
extension Broker {
    /// How a waiting subscription starts on a channel that appeared.
    private enum WaitingStart {
        case at(UInt64)
        /// The position it resumes from is gone: STARTED, then FULL.
        case full(firstAvailable: UInt64)
        /// FAILED with this error instead of STARTED.
        case refused(ErrorCode, String)
    }

    /// A subscription that waits for channel `name` to be created (STARTED then). With
    /// `resumeAt`, it resumes at that sequence if the channel appears with that epoch.
    func subscribeWaiting(
        _ requestID: UInt32, name: String, owner pinned: UInt32?, resumeAt: (sequence: UInt64, epoch: UInt64)? = nil, _ conn: ConnectionState
    ) throws(ChannelRefusal) {
        try charge(.subscriptions, conn)
        let id = conn.allocateSubscriptionID()
        try registry.wait(for: name, WaiterKey(connection: conn.id, subscription: id))
        conn.subscriptions[id] = Subscription(id: id, name: name, source: nil, cursor: 0, pinnedOwner: pinned, resumeAt: resumeAt)
        logger.debug("subscription waits for its channel", metadata: ["connection": "\(conn.id)", "channel": "\(name)"])
        ServerFrame.writeOK(requestID: requestID, into: &conn.outbox) {
            SubscribeReply(subscription: id, waiting: true, epoch: 0, nextSequence: 0).write(to: &$0)
        }
    }

    /// A waiting SUBSCRIBE `from N` with an epoch resumes there when a channel of that epoch appears.
    static func resumption(_ position: SubscribePosition, _ epoch: UInt64) -> (sequence: UInt64, epoch: UInt64)? {
        guard epoch != 0, case .from(let n) = position else { return nil }
        return (n, epoch)
    }

    /// Hands `channel` to the subscriptions that waited for its name, from `next` (or from where
    /// a resuming one was): each gets STARTED, STARTED then FULL, or FAILED.
    func start(_ waiters: [WaiterKey], on channel: SiteChannel<ByteRing>, next: UInt64 = 1) {
        let owner = channel.creator.owner
        for waiter in waiters {
            guard let reader = connections[waiter.connection], let sub = reader.subscriptions[waiter.subscription] else { continue }
            switch waitingStart(sub, on: channel, next: next) {
            case .at(let first):
                reader.subscriptions[waiter.subscription]!.source = .site(channel)
                reader.subscriptions[waiter.subscription]!.cursor = first
                channel.addReader(reader.id, at: first)
                ServerFrame.started(subscription: waiter.subscription, epoch: channel.epoch, nextSequence: first, owner: owner)
                    .encode(into: &reader.outbox)
            case .full(let available):
                reader.subscriptions[waiter.subscription] = nil
                accounts.release(.subscriptions, uid: reader.uid)
                channel.fullCount &+= 1
                ServerFrame.started(subscription: waiter.subscription, epoch: channel.epoch, nextSequence: available, owner: owner)
                    .encode(into: &reader.outbox)
                ServerFrame.full(subscription: waiter.subscription, firstAvailable: available).encode(into: &reader.outbox)
            case .refused(let code, let message):
                reader.subscriptions[waiter.subscription] = nil
                accounts.release(.subscriptions, uid: reader.uid)
                ServerFrame.failed(subscription: waiter.subscription, code: code, message: message).encode(into: &reader.outbox)
            }
            markDirty(reader)
        }
    }

    /// A reader that pinned another producer is refused; one resuming where it was starts at its
    /// position on the same epoch (FULL if the channel no longer holds it) and is refused on
    /// another epoch (not the channel it read); any other starts at `next`.
    private func waitingStart(_ sub: Subscription, on channel: SiteChannel<ByteRing>, next: UInt64) -> WaitingStart {
        let name = channel.name
        if let pinned = sub.pinnedOwner, pinned != channel.creator.uid {
            return .refused(.ownerMismatch, "channel '\(name)' was created by uid \(channel.creator.uid), not by uid \(pinned)")
        }
        guard let resume = sub.resumeAt else { return .at(next) }
        guard resume.epoch == channel.epoch else {
            return .refused(
                .epochMismatch,
                "channel '\(name)' appeared with epoch \(channel.epoch), not \(resume.epoch): it was re-created and its sequence numbers restarted")
        }
        switch try? channel.start(at: .from(resume.sequence)) {
        case .at(let seq)?: return .at(seq)
        case .full(let available)?: return .full(firstAvailable: available)
        case nil: return .refused(.positionAhead, "channel '\(name)' has no message \(resume.sequence) yet (its last is \(channel.lastSequence))")
        }
    }
}
