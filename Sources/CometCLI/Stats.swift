import ArgumentParser
import Comet
import Foundation

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what the daemon is doing: totals, channels, usage against the quotas.",
        discussion: """
            --openmetrics prints the OpenMetrics text format (e.g. for node_exporter's textfile \
            collector); --json one JSON object.
            """)

    @OptionGroup var connection: ConnectionOptions

    @Flag(name: .long, help: "Print one JSON object instead of tables.")
    var json = false

    @Flag(name: .long, help: "Print the OpenMetrics text exposition format.")
    var openmetrics = false

    func run() async throws {
        try await running {
            guard !(json && openmetrics) else { throw ValidationError("--json and --openmetrics exclude each other") }
            let client = try await connection.connect()
            let stats = try await client.stats()
            await client.close()
            if json {
                printJSON(Self.json(stats))
            } else if openmetrics {
                print(OpenMetrics.text(stats), terminator: "")
            } else {
                Self.printTables(stats)
            }
        }
    }

    static func json(_ s: StatsReply) -> [String: Any] {
        [
            "version": s.version, "uptime_ms": s.uptimeMilliseconds, "connections": s.connections,
            "connections_accepted": s.connectionsAccepted, "connections_refused": s.connectionsRefused,
            "channels": s.channels, "subscriptions": s.subscriptions, "sessions": s.sessions,
            "memory_bytes": s.memory, "memory_ceiling_bytes": s.memoryCeiling, "truncated": s.truncated,
            "site_channels": s.channelStats.map { c -> [String: Any] in
                [
                    "name": c.name, "pushed": c.pushed, "delivered": c.delivered, "bytes": c.bytes, "full": c.fullEvents,
                    "readers": c.readers, "ring_bytes": c.ringBytes,
                ]
            },
            "exports": s.exports.map { e -> [String: Any] in
                [
                    "channel": e.name, "subject": e.subject, "epoch": "\(e.epoch)", "published": e.published,
                    "acknowledged": e.acknowledged, "missed": e.missed, "backlog": e.backlog, "connected": e.connected,
                    "server": e.server, "stream": e.stream, "replicas": e.replicas, "failure": e.failure,
                ]
            },
            "imports": s.imports.map { i -> [String: Any] in
                [
                    "channel": i.name, "state": i.state.name, "fed": i.fed, "epoch": "\(i.epoch)", "last_sequence": i.lastSequence,
                    "readers": i.readers, "server": i.server, "subject": i.subject, "foreign": i.foreign, "reason": i.reason,
                ]
            },
            "users": s.users.map { u -> [String: Any] in
                [
                    "uid": u.uid, "user": UserNames.name(of: u.uid),
                    "resources": Dictionary(uniqueKeysWithValues: u.resources.map { ($0.resource, ["used": $0.used, "quota": $0.quota]) }),
                ]
            },
        ]
    }

    static func printTables(_ s: StatsReply) {
        print("cometd \(s.version), up \(s.uptimeMilliseconds / 1000) s: \(s.connections) connections (\(s.connectionsAccepted) accepted, \(s.connectionsRefused) refused), \(s.channels) channels, \(s.subscriptions) subscriptions, \(s.sessions) sessions; memory \(s.memory >> 20) MiB of \(s.memoryCeiling >> 20) MiB")
        print("")
        table(["CHANNEL", "PUSHED", "DELIVERED", "BYTES", "FULL", "READERS", "RING"], s.channelStats.map { c in
            [c.name, "\(c.pushed)", "\(c.delivered)", "\(c.bytes)", "\(c.fullEvents)", "\(c.readers)", "\(c.ringBytes)"]
        })
        if !s.exports.isEmpty {
            print("")
            table(["EXPORT", "STREAM", "R", "PUBLISHED", "ACKED", "MISSED", "BACKLOG", "NATS", "SERVERS"], s.exports.map { e in
                [e.name, e.stream, "\(e.replicas)", "\(e.published)", "\(e.acknowledged)", "\(e.missed)", "\(e.backlog)",
                 e.failure.isEmpty ? (e.connected ? "connected" : "disconnected") : "stuck: \(e.failure)", e.server]
            })
        }
        if !s.imports.isEmpty {
            print("")
            table(["IMPORT", "SUBJECT", "STATE", "BRIDGE", "EPOCH", "LAST", "READERS", "SERVERS", "REASON"], s.imports.map { i in
                [i.name, i.subject, i.state.name, i.fed ? "connected" : "none", "\(i.epoch)", "\(i.lastSequence)", "\(i.readers)", i.server, i.reason]
            })
        }
        print("")
        let names = s.users.first?.resources.map(\.resource) ?? []
        table(["USER"] + names.map { $0.uppercased() }, s.users.map { u in
            [UserNames.name(of: u.uid)] + u.resources.map { "\($0.used)/\($0.quota)" }
        })
        if s.truncated { print("(cut to fit one frame: some entries are not shown)") }
    }

    static func table(_ header: [String], _ rows: [[String]]) {
        let widths = header.indices.map { i in ([header] + rows).map { $0.indices.contains(i) ? $0[i].count : 0 }.max()! }
        for row in [header] + rows {
            print(row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  "))
        }
    }
}

/// The OpenMetrics text exposition format (https://openmetrics.io), for STATS.
enum OpenMetrics {
    static func text(_ s: StatsReply) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, unit: String? = nil, _ samples: [(String, [(String, String)], UInt64)]) {
            out += "# TYPE \(name) \(type)\n"
            if let unit { out += "# UNIT \(name) \(unit)\n" }
            out += "# HELP \(name) \(help)\n"
            for (suffix, labels, value) in samples {
                let labelText = labels.isEmpty ? "" : "{" + labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
                out += "\(name)\(suffix)\(labelText) \(value)\n"
            }
        }
        family("comet_info", "info", "The daemon's version.", [("_info", [("version", s.version)], 1)])
        family("comet_uptime_seconds", "gauge", "Seconds since the daemon started.", unit: "seconds", [("", [], s.uptimeMilliseconds / 1000)])
        family("comet_connections", "gauge", "Open client connections.", [("", [], UInt64(s.connections))])
        family("comet_connections_accepted", "counter", "Connections accepted.", [("_total", [], s.connectionsAccepted)])
        family("comet_connections_refused", "counter", "Connections refused at once (quota or limit).", [("_total", [], s.connectionsRefused)])
        family("comet_channels", "gauge", "Live channels (site and private).", [("", [], UInt64(s.channels))])
        family("comet_subscriptions", "gauge", "Live subscriptions, waiting ones included.", [("", [], UInt64(s.subscriptions))])
        family("comet_sessions", "gauge", "Live sessions.", [("", [], UInt64(s.sessions))])
        family("comet_memory_bytes", "gauge", "Estimated memory of what clients hold.", unit: "bytes", [("", [], s.memory)])
        family("comet_memory_ceiling_bytes", "gauge", "Memory past which new work is refused.", unit: "bytes", [("", [], s.memoryCeiling)])
        let channel = { (c: ChannelStats) in [("channel", c.name)] }
        family("comet_channel_pushed_messages", "counter", "Messages pushed to the channel.", unit: "messages", s.channelStats.map { ("_total", channel($0), $0.pushed) })
        family("comet_channel_delivered_messages", "counter", "Messages written to the channel's readers.", unit: "messages", s.channelStats.map { ("_total", channel($0), $0.delivered) })
        family("comet_channel_pushed_bytes", "counter", "Payload bytes pushed to the channel.", unit: "bytes", s.channelStats.map { ("_total", channel($0), $0.bytes) })
        family("comet_channel_full_events", "counter", "Subscriptions of the channel that ended with FULL.", s.channelStats.map { ("_total", channel($0), $0.fullEvents) })
        family("comet_channel_readers", "gauge", "Live subscriptions of the channel.", s.channelStats.map { ("", channel($0), UInt64($0.readers)) })
        family("comet_channel_ring_bytes", "gauge", "Memory the channel's buffered messages take.", unit: "bytes", s.channelStats.map { ("", channel($0), $0.ringBytes) })
        let export = { (e: ExportCounters) in [("channel", e.name), ("subject", e.subject)] }
        family("comet_export_published_messages", "counter", "Messages of the channel published to NATS.", unit: "messages", s.exports.map { ("_total", export($0), $0.published) })
        family("comet_export_acknowledged_messages", "counter", "Messages of the channel JetStream acknowledged.", unit: "messages", s.exports.map { ("_total", export($0), $0.acknowledged) })
        family("comet_export_missed_messages", "counter", "Messages that left the ring before reaching JetStream (remote readers get FULL).", unit: "messages", s.exports.map { ("_total", export($0), $0.missed) })
        family("comet_export_backlog_messages", "gauge", "Messages buffered and not yet acknowledged by JetStream.", unit: "messages", s.exports.map { ("", export($0), $0.backlog) })
        family("comet_export_connected", "gauge", "Whether the export's NATS connection is up.", s.exports.map { ("", export($0), $0.connected ? 1 : 0) })
        let imported = { (i: ImportCounters) in [("channel", i.name), ("subject", i.subject)] }
        family("comet_import_last_sequence", "gauge", "The last sequence number the import holds of its origin's epoch.", s.imports.map { ("", imported($0), $0.lastSequence) })
        family("comet_import_stalled", "gauge", "Whether the import's readers are told its origin cannot be reached.", s.imports.map { ("", imported($0), $0.state == .stalled ? 1 : 0) })
        family("comet_import_fed", "gauge", "Whether a bridge is connected and feeding the import.", s.imports.map { ("", imported($0), $0.fed ? 1 : 0) })
        family("comet_import_readers", "gauge", "Live subscriptions of the import.", s.imports.map { ("", imported($0), UInt64($0.readers)) })
        let usage = s.users.flatMap { u in u.resources.map { (u.uid, $0) } }
        family("comet_user_usage", "gauge", "What a user holds of a resource.", usage.map { ("", [("uid", "\($0.0)"), ("resource", $0.1.resource)], $0.1.used) })
        family("comet_user_quota", "gauge", "A user's quota of a resource.", usage.map { ("", [("uid", "\($0.0)"), ("resource", $0.1.resource)], $0.1.quota) })
        out += "# EOF\n"
        return out
    }

    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}

extension ImportCounters.State {
    /// How `comet stats` names it.
    var name: String {
        switch self {
        case .catchingUp: return "catching-up"
        case .live: return "live"
        case .stalled: return "stalled"
        }
    }
}
