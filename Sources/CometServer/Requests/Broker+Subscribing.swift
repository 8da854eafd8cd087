import CometChannels
import CometState
import CometWire
import NIOCore

/// SUBSCRIBE to a site channel: who may, where the reader starts, and whether it reads the ring
/// mapped (private channels: `subscribePrivate`; names that do not exist yet: `subscribeWaiting`).
extension Broker {
    func subscribe(
        _ requestID: UInt32, name: String, position: SubscribePosition, epoch: UInt64, wait: Bool, owner pinned: UInt32?,
        mapped: Bool = false, returning: Bool = false, _ conn: ConnectionState
    ) throws(ChannelRefusal) {
        try ChannelName.validate(name)
        guard conn.subscriptions.count < configuration.maxSubscriptionsPerConnection else {
            throw ChannelRefusal(.limitExceeded, "this connection already holds \(configuration.maxSubscriptionsPerConnection) subscriptions")
        }
        guard policy.maySubscribe(name, conn.identity, users: userID(named:)) else {
            logLimiter.log(logger, .notice, kind: "policy", "refused by policy: subscribe", metadata: ["uid": "\(conn.uid)", "channel": "\(name)"])
            throw ChannelRefusal(.permissionDenied, "the policy does not let user \(conn.uid) subscribe to channel '\(name)'")
        }
        if let feed = links.mirrors[name],
            try subscribeImport(feed, requestID, name: name, position: position, epoch: epoch, wait: wait, owner: pinned, conn)
        {
            return
        }
        // A reader resuming an epoch the live channel does not have may be resuming a closed one.
        let live = registry.channel(named: name) ?? importedChannel(name)
        let resumed = epoch != 0 && live?.epoch != epoch ? closedChannels.channel(named: name, epoch: epoch) : nil
        guard let channel = resumed ?? live else {
            guard wait else { throw ChannelRefusal(.noSuchChannel, "no channel named '\(name)'") }
            return try subscribeWaiting(requestID, name: name, owner: pinned, resumeAt: Self.resumption(position, epoch), conn)
        }
        if let pinned, pinned != channel.creator.uid {
            throw ChannelRefusal(.ownerMismatch, "channel '\(name)' was created by uid \(channel.creator.uid), not by uid \(pinned)")
        }
        if pinned == nil, registry.channel(named: name) === channel || resumed != nil {
            // Without a pin of its own the reader trusts the policy's owner for the name.
            let judged = standing(of: name, creator: channel.creator)
            if judged.standing == .notAllowed {
                throw ChannelRefusal(
                    .ownerMismatch,
                    "channel '\(name)' was created by uid \(channel.creator.uid), whom the policy's rule 'create \(judged.rule)' does not allow; pin its owner to read it anyway")
            }
        }
        guard epoch == 0 || epoch == channel.epoch else {
            throw ChannelRefusal(
                .epochMismatch,
                "channel '\(name)' has epoch \(channel.epoch), not \(epoch): it was re-created and its sequence numbers restarted")
        }
        let start = try channel.start(at: Position(position))
        let owner = channel.creator.owner
        switch start {
        case .at(let seq):
            try charge(.subscriptions, conn)
            let id = conn.allocateSubscriptionID()
            // A mapped reader reads the ring itself (a ring in the heap moves into a memfd for it).
            let mapped = mapped && channel.ring.share()
            // Protected as a socket reader would be (handed what it misses before an eviction),
            // except on a newest channel, whose readers skip to the latest value.
            let held = mapped && !channel.keepsNewestOnly
            // A protected reader that asked for it is given its ring back after a detach (RETURN).
            let reading = MappedReading(held: held, read: seq, returns: held && returning, attachedAt: uptime())
            conn.subscriptions[id] = Subscription(id: id, name: name, source: .site(channel), cursor: seq, mapped: mapped ? reading : nil)
            channel.addReader(conn.id, at: !mapped || held ? seq : .max)
            ServerFrame.writeOK(requestID: requestID, into: &conn.outbox) {
                SubscribeReply(subscription: id, waiting: false, epoch: channel.epoch, nextSequence: seq, owner: owner).write(to: &$0)
            }
        case .full(let first):
            // The subscription exists only to carry its FULL event (counted like any other).
            channel.fullCount &+= 1
            let id = conn.allocateSubscriptionID()
            ServerFrame.writeOK(requestID: requestID, into: &conn.outbox) {
                SubscribeReply(subscription: id, waiting: false, epoch: channel.epoch, nextSequence: first, owner: owner).write(to: &$0)
            }
            ServerFrame.full(subscription: id, firstAvailable: first).encode(into: &conn.outbox)
        }
    }
}

extension Position {
    init(_ wire: SubscribePosition) {
        switch wire {
        case .next: self = .next
        case .oldest: self = .oldest
        case .from(let n): self = .from(n)
        case .last(let k): self = .last(k)
        }
    }
}
