import CometChannels
import CometWire
import NIOCore

/// STATS: what the daemon, its site channels and its users are doing.
extension Broker {
    /// The names `cometd --user-quota` uses for each resource.
    static func optionName(_ resource: Resource) -> String {
        switch resource {
        case .connections: return "connections"
        case .channels: return "channels"
        case .subscriptions: return "subscriptions"
        case .sessions: return "sessions"
        case .timeoutWaits: return "waits"
        case .bufferedBytes: return "buffered-bytes"
        case .queuedOutputBytes: return "output-bytes"
        case .unfinishedFrameBytes: return "unfinished-bytes"
        }
    }

    /// The STATS reply for `conn`: every site channel (as LIST shows them), the usage of the
    /// caller's own user (root: of every user), cut to fit a frame.
    func stats(for conn: ConnectionState) -> StatsReply {
        let uids = conn.uid == 0 ? accounts.uids.sorted() : [conn.uid]
        let users = uids.map { uid in
            UserUsage(uid: uid, resources: Resource.allCases.map { resource in
                let quota = uid == 0 ? accounts.quotas.total(resource) : accounts.quotas.perUser(resource)
                return ResourceUsage(resource: Self.optionName(resource), used: UInt64(max(0, accounts.usage(resource, uid: uid))), quota: UInt64(max(0, quota)))
            })
        }
        let channels = registry.byName.values.sorted { $0.name < $1.name }.map { c in
            ChannelStats(
                name: c.name, scope: 0, pushed: c.pushedCount, delivered: c.deliveredCount, bytes: c.pushedBytes,
                fullEvents: c.fullCount, readers: UInt32(c.subscriberCount), ringBytes: UInt64(c.bufferedBytes))
        }
        var reply = StatsReply(
            version: CometProtocol.softwareVersion,
            uptimeMilliseconds: (uptime() - startedAt) / 1_000_000,
            connectionsAccepted: connections.opened - connections.refused, connectionsRefused: connections.refused,
            connections: UInt32(connections.count), channels: UInt32(registry.count + privateChannels.count),
            subscriptions: UInt32(clamping: accounts.total(.subscriptions)), sessions: UInt32(clamping: accounts.total(.sessions)),
            memory: UInt64(max(0, accounts.estimatedMemory)), memoryCeiling: UInt64(accounts.quotas.memoryCeiling),
            channelStats: [], users: [])
        // Fill to the frame: users first (few), then channels by name.
        var room = replyRoom - 200
        for user in users {
            room -= StatsReply.entrySize(user)
            guard room >= 0 else { reply.truncated = true; break }
            reply.users.append(user)
        }
        // Exports and imports (few, and where remote loss shows) before the channels.
        room -= 8
        let federation = federationStats()
        for export in federation.exports {
            room -= StatsReply.entrySize(export)
            guard room >= 0 else { reply.truncated = true; break }
            reply.exports.append(export)
        }
        for entry in federation.imports {
            room -= StatsReply.entrySize(entry)
            guard room >= 0 else { reply.truncated = true; break }
            reply.imports.append(entry)
        }
        for channel in channels {
            room -= StatsReply.entrySize(channel)
            guard room >= 0 else { reply.truncated = true; break }
            reply.channelStats.append(channel)
        }
        return reply
    }
}
