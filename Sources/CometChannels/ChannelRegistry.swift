/// Limits the registry enforces.
public struct RegistryLimits: Sendable {
    /// Size of a channel created with size 0 (Eliom's default).
    public var defaultSize = 1000
    /// Largest `size` a channel may have.
    public var maxSize = 1_000_000
    /// Most live channels in the daemon.
    public var maxChannels = 65_536

    public init() {}
}

/// Every live site channel, by name and by id, plus readers waiting for names that do not exist yet.
///
/// Plain state with no I/O: the connection layer owns one and calls it from a single thread.
/// `Waiter` is whatever the caller uses to find a waiting subscription again.
public final class ChannelRegistry<Ring: ChannelRing, Waiter: Hashable> {
    public let limits: RegistryLimits
    public internal(set) var byName: [String: SiteChannel<Ring>] = [:]
    var byID: [UInt64: SiteChannel<Ring>] = [:]
    private var waiters: [String: [Waiter]] = [:]
    var nextID: UInt64 = 1
    private let makeEpoch: () -> UInt64

    /// - Parameter makeEpoch: source of channel epochs; must never return 0. Random by default.
    public init(limits: RegistryLimits = RegistryLimits(), makeEpoch: @escaping () -> UInt64 = { UInt64.random(in: 1...UInt64.max) }) {
        self.limits = limits
        self.makeEpoch = makeEpoch
    }

    public var count: Int { byName.count }

    /// Creates a channel owned by `owner` and hands over the readers that were waiting for its name.
    ///
    /// - Parameters:
    ///   - size: ring size; 0 means `limits.defaultSize`. Ignored (1) for a newest channel.
    ///   - newestOnly: create a newest channel (latest value only).
    ///   - creator: the producer's credentials, shown to readers.
    ///   - makeRing: an empty ring for the channel, given its id, epoch and capacity.
    public func create(
        name: String, size: Int, owner: UInt64, newestOnly: Bool = false, creator: Identity = Identity(),
        makeRing: (_ id: UInt64, _ epoch: UInt64, _ capacity: Int) -> Ring
    ) throws(ChannelRefusal) -> (channel: SiteChannel<Ring>, waiters: [Waiter]) {
        try ChannelName.validate(name)
        let size = size == 0 ? limits.defaultSize : size
        guard size >= 1, size <= limits.maxSize else {
            throw ChannelRefusal(.invalidSize, "size \(size) is outside 1...\(limits.maxSize)")
        }
        guard byName[name] == nil else { throw ChannelRefusal(.channelExists, "channel '\(name)' already exists") }
        guard byName.count < limits.maxChannels else {
            throw ChannelRefusal(.limitExceeded, "the daemon already holds \(limits.maxChannels) channels")
        }
        let epoch = makeEpoch()
        let channel = SiteChannel<Ring>(
            id: nextID, name: name, epoch: epoch, owner: owner, newestOnly: newestOnly, creator: creator,
            ring: makeRing(nextID, epoch, newestOnly ? 1 : size))
        nextID += 1
        byName[name] = channel
        byID[channel.id] = channel
        return (channel, waiters.removeValue(forKey: name) ?? [])
    }

    /// The live channel named `name`.
    public func channel(named name: String) -> SiteChannel<Ring>? { byName[name] }

    /// The live channel with handle `id`, checked to be owned by `owner`.
    public func owned(_ id: UInt64, by owner: UInt64) throws(ChannelRefusal) -> SiteChannel<Ring> {
        guard let channel = byID[id] else { throw ChannelRefusal(.noSuchChannel, "no live channel has id \(id)") }
        guard channel.owner == owner else {
            throw ChannelRefusal(.notOwner, "channel '\(channel.name)' belongs to another connection")
        }
        return channel
    }

    /// Closes channel `id` on behalf of `owner`; its name becomes free at once.
    @discardableResult
    public func close(_ id: UInt64, by owner: UInt64) throws(ChannelRefusal) -> SiteChannel<Ring> {
        let channel = try owned(id, by: owner)
        remove(channel)
        return channel
    }

    /// Closes every channel `owner` holds (its connection ended) and returns them.
    public func closeAll(ownedBy owner: UInt64) -> [SiteChannel<Ring>] {
        let owned = byID.values.filter { $0.owner == owner }
        owned.forEach(remove)
        return owned
    }

    /// Closes every channel (the daemon is stopping) and returns them.
    public func closeEverything() -> [SiteChannel<Ring>] {
        let all = Array(byID.values)
        all.forEach(remove)
        return all
    }

    private func remove(_ channel: SiteChannel<Ring>) {
        channel.close()
        byName[channel.name] = nil
        byID[channel.id] = nil
    }

    /// Parks `waiter` until a channel named `name` is created.
    public func wait(for name: String, _ waiter: Waiter) throws(ChannelRefusal) {
        try ChannelName.validate(name)
        waiters[name, default: []].append(waiter)
    }

    /// Removes and returns the waiters parked for `name` (a channel of that name appeared
    /// outside the registry, e.g. an import's mirror).
    public func takeWaiters(for name: String) -> [Waiter] {
        waiters.removeValue(forKey: name) ?? []
    }

    /// Stops `waiter` from waiting for `name`.
    public func stopWaiting(for name: String, _ waiter: Waiter) {
        guard var list = waiters[name] else { return }
        list.removeAll { $0 == waiter }
        waiters[name] = list.isEmpty ? nil : list
    }

    /// Number of parked waiters, over all names.
    public var waiterCount: Int { waiters.values.reduce(0) { $0 + $1.count } }
}

extension ChannelRegistry {
    /// Creates a channel whose messages are values in the heap (`MessageRing`); see `create`.
    public func create<Value>(
        name: String, size: Int, owner: UInt64, newestOnly: Bool = false, creator: Identity = Identity(),
        weigh: ((Value) -> Int)? = nil
    ) throws(ChannelRefusal) -> (channel: SiteChannel<Ring>, waiters: [Waiter]) where Ring == MessageRing<Value> {
        try create(name: name, size: size, owner: owner, newestOnly: newestOnly, creator: creator) { _, _, capacity in
            MessageRing(capacity: capacity, weigh: weigh)
        }
    }
}
