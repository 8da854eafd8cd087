import CometChannels
import CometWire
import NIOCore

/// LIST and SESSIONS: answers cut into pages that fit the maximum frame size.
extension Broker {
    /// Room in one OK frame for a reply body: the frame maximum less opcode and request id.
    var replyRoom: Int { Int(configuration.maxFrameSize) - 5 }

    /// The channels `conn` may see, sorted by (name, scope), from the entry after `after` on,
    /// as many as fit in one frame.
    func listPage(after: (name: String, scope: UInt8)?, _ conn: ConnectionState) -> ListReply {
        var infos: [ChannelInfo] = []
        func isAfter(_ name: String, _ scope: UInt8) -> Bool {
            guard let after else { return true }
            return name > after.name || (name == after.name && scope > after.scope)
        }
        for c in registry.byName.values where isAfter(c.name, 0) {
            let judged = standing(of: c.name, creator: c.creator)
            infos.append(ChannelInfo(
                name: c.name, kind: c.keepsNewestOnly ? .newest : .buffered, scope: 0, size: UInt32(c.size),
                buffered: UInt32(c.ring.count), subscribers: UInt32(c.subscriberCount), lastSequence: c.lastSequence,
                epoch: c.epoch, owner: c.creator.owner, rule: judged.rule, standing: judged.standing))
        }
        // Imports: their mirror of the origin's epoch, or (none read yet) the name alone.
        for feed in links.mirrors.values where isAfter(feed.name, 0) {
            if let c = feed.channel {
                let judged = standing(of: c.name, creator: c.creator, imported: true)
                infos.append(ChannelInfo(
                    name: c.name, kind: c.keepsNewestOnly ? .newest : .buffered, scope: 0, size: UInt32(c.size),
                    buffered: UInt32(c.ring.count), subscribers: UInt32(c.subscriberCount), lastSequence: c.lastSequence,
                    epoch: c.epoch, owner: c.creator.owner, imported: true, rule: judged.rule, standing: judged.standing))
            } else {
                let judged = standing(of: feed.name, creator: Identity(uid: feed.declaredBy.uid, gid: feed.declaredBy.gid), imported: true)
                infos.append(ChannelInfo(
                    name: feed.name, kind: feed.newest ? .newest : .buffered, scope: 0, size: UInt32(feed.size), buffered: 0, subscribers: 0,
                    lastSequence: 0, epoch: 0, owner: feed.declaredBy, imported: true, rule: judged.rule, standing: judged.standing))
            }
        }
        // Private channels: only this connection's own session's.
        for handle in (conn.session?.channels.values).map(Array.init) ?? [] {
            guard let c = privateChannels[handle], isAfter(c.name, 1) else { continue }
            infos.append(ChannelInfo(
                name: c.name, kind: c.kind, scope: 1, size: UInt32(c.size), buffered: UInt32(c.unacknowledged),
                subscribers: c.reader == nil ? 0 : 1, lastSequence: c.lastSequence, epoch: c.epoch, owner: c.creator.owner))
        }
        infos.sort { ($0.name, $0.scope) < ($1.name, $1.scope) }
        var room = replyRoom - ListReply.overhead
        var count = 0
        for info in infos {
            room -= ListReply.entrySize(info)
            guard room >= 0 else { break }
            count += 1
        }
        return ListReply(channels: Array(infos.prefix(count)), more: count < infos.count)
    }

    /// The sessions `conn` may see (its user's; root: all), by id after `after`, as many as fit.
    func sessionsPage(after: UInt64, _ conn: ConnectionState) -> SessionsReply {
        let now = uptime()
        let visible = sessions.sessions.values
            .filter { $0.id > after && (conn.identity.isRoot || $0.uid == conn.uid) }
            .sorted { $0.id < $1.id }
        let fit = (replyRoom - SessionsReply.overhead) / SessionsReply.entrySize
        let page = visible.prefix(fit).map { s in
            SessionInfo(
                id: s.id, uid: s.uid, connections: UInt32(s.connections.count), privateChannels: UInt32(s.channels.count),
                idleMilliseconds: (now - min(now, s.lastActivity)) / 1_000_000)
        }
        return SessionsReply(sessions: page, more: visible.count > fit)
    }
}
