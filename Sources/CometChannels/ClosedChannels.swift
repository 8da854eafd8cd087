/// Site channels that closed while readers still needed them, kept so that a reader cut off by a
/// crash of the daemon can resume one by its name and epoch and read the rest (docs/SEMANTICS.md,
/// "Closing"). A closed channel has left the registry: its name is free for a new channel.
///
/// Each entry is kept until a time of the caller's clock; the caller asks `mayRelease` when the
/// channel's last reader leaves and when that time comes, and removes it then. Plain state with
/// no I/O, used from one thread.
public final class ClosedChannels<Ring: ChannelRing> {
    private var byName: [String: [Entry]] = [:]

    private struct Entry {
        let channel: SiteChannel<Ring>
        var keptUntil: UInt64
    }

    public init() {}

    /// How many closed channels are kept.
    public var count: Int { byName.values.reduce(0) { $0 + $1.count } }

    /// Every kept channel, oldest handle first.
    public var channels: [SiteChannel<Ring>] {
        byName.values.flatMap { $0.map(\.channel) }.sorted { $0.id < $1.id }
    }

    /// Keeps `channel` (closed) resumable until at least `time`; a channel kept already keeps the
    /// later of its two times.
    public func keep(_ channel: SiteChannel<Ring>, until time: UInt64) {
        precondition(channel.isClosed, "only a closed channel is kept here")
        var entries = byName[channel.name] ?? []
        if let index = entries.firstIndex(where: { $0.channel === channel }) {
            entries[index].keptUntil = max(entries[index].keptUntil, time)
        } else {
            entries.append(Entry(channel: channel, keptUntil: time))
        }
        byName[channel.name] = entries
    }

    /// The kept channel named `name` whose epoch is `epoch`.
    public func channel(named name: String, epoch: UInt64) -> SiteChannel<Ring>? {
        byName[name]?.first { $0.channel.epoch == epoch }?.channel
    }

    /// Whether `channel` may go at `now`: no reader reads it and its time has come (a channel not
    /// kept here may always go).
    public func mayRelease(_ channel: SiteChannel<Ring>, now: UInt64) -> Bool {
        guard channel.subscriberCount == 0 else { return false }
        guard let entry = byName[channel.name]?.first(where: { $0.channel === channel }) else { return true }
        return now >= entry.keptUntil
    }

    /// Stops keeping `channel`; false if it was not kept.
    @discardableResult
    public func remove(_ channel: SiteChannel<Ring>) -> Bool {
        guard var entries = byName[channel.name], let index = entries.firstIndex(where: { $0.channel === channel }) else { return false }
        entries.remove(at: index)
        byName[channel.name] = entries.isEmpty ? nil : entries
        return true
    }
}
