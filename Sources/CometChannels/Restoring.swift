/// Putting channels and sessions back as another process of the daemon left them (a live
/// upgrade or a restart; docs/RESTARTS.md). Numbering, epochs and tokens are kept exactly.

extension SiteChannel {
    /// Puts back the ring and state of a channel as it was in the previous process: `count`
    /// messages made in order by `make`, the first numbered `first`.
    public func restore(first: UInt64, count: Int, _ make: (Int) -> Payload, closed: Bool, replacedByEpoch: UInt64?) {
        messages.restart(at: first)
        if count > 0 { messages.append(count: count, make) }
        self.closed = closed || replacedByEpoch != nil
        if let replacedByEpoch { replace(byEpoch: replacedByEpoch) }
    }

}

extension PrivateChannel {
    /// Puts back the ring, acknowledgements and pull state of a channel as it was.
    public func restore(
        first: UInt64, count: Int, _ make: (Int) -> Payload, acknowledged: UInt64, closed: Bool, full: Bool,
        outstandingPull: UInt64?, nextPull: UInt64
    ) {
        messages.restart(at: first)
        if count > 0 { messages.append(count: count, make) }
        self.acknowledged = acknowledged
        self.isClosed = closed
        self.isFull = full
        // Asked of the owner it had, when that connection was carried over.
        self.outstanding = outstandingPull.map { ($0, owner != 0 ? owner : nil) }
        self.nextPull = max(nextPull, 1)
    }

    /// The id the next pull will get.
    public var nextPullID: UInt64 { nextPull }
}

extension ChannelRegistry {
    /// Registers a channel made elsewhere with its own id (a restored one). Its name must be free.
    public func adopt(_ channel: SiteChannel<Ring>) throws(ChannelRefusal) {
        guard byName[channel.name] == nil else { throw ChannelRefusal(.channelExists, "channel '\(channel.name)' already exists") }
        byName[channel.name] = channel
        byID[channel.id] = channel
        nextID = max(nextID, channel.id + 1)
    }

    /// The id the next created channel gets; never below `id` afterwards.
    public var nextChannelID: UInt64 {
        get { nextID }
        set { nextID = max(nextID, newValue) }
    }
}

extension SessionRegistry {
    /// Puts back a session with its id and token, as the previous process had it.
    @discardableResult
    public func restore(
        id: UInt64, token: SessionToken, uid: UInt32, connections: Set<UInt64>, detachedAt: UInt64?, lastActivity: UInt64,
        channels: [String: UInt64]
    ) -> Session {
        let session = Session(id: id, token: token, uid: uid, now: lastActivity)
        session.connections = connections
        session.detachedAt = detachedAt
        session.channels = channels
        sessions[id] = session
        return session
    }
}

extension SiteChannel {
    /// Hands the channel to another owner (its producer took it back, or it lost its producer).
    public func transfer(to owner: UInt64) { self.owner = owner }
}

extension PrivateChannel {
    /// Hands the channel to another owner (its producer took it back, or it lost its producer).
    public func transfer(to owner: UInt64) { self.owner = owner }
}

extension ChannelRegistry {
    /// The live channel with handle `id`, whoever owns it.
    public func channel(id: UInt64) -> SiteChannel<Ring>? { byID[id] }
}
