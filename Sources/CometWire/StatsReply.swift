import NIOCore

/// One channel's counters in a STATS reply.
public struct ChannelStats: Hashable, Sendable {
    public var name: String
    /// 0 site, 1 client process (the caller's session's private channels).
    public var scope: UInt8
    /// Messages pushed since the channel was created.
    public var pushed: UInt64
    /// Messages written to readers (each reader counts; a fan-out to 10 readers counts 10).
    public var delivered: UInt64
    /// Payload bytes pushed.
    public var bytes: UInt64
    /// Subscriptions of this channel that ended with FULL.
    public var fullEvents: UInt64
    /// Live subscriptions.
    public var readers: UInt32
    /// Memory the buffered messages take (payload + overhead), as the quotas count it.
    public var ringBytes: UInt64

    public init(name: String, scope: UInt8, pushed: UInt64, delivered: UInt64, bytes: UInt64, fullEvents: UInt64, readers: UInt32, ringBytes: UInt64) {
        self.name = name
        self.scope = scope
        self.pushed = pushed
        self.delivered = delivered
        self.bytes = bytes
        self.fullEvents = fullEvents
        self.readers = readers
        self.ringBytes = ringBytes
    }
}

/// What one user uses of one resource, and its quota.
public struct ResourceUsage: Hashable, Sendable {
    /// As `cometd --user-quota` names it: connections, channels, subscriptions, sessions, waits,
    /// buffered-bytes, output-bytes, unfinished-bytes.
    public var resource: String
    public var used: UInt64
    public var quota: UInt64

    public init(resource: String, used: UInt64, quota: UInt64) {
        self.resource = resource
        self.used = used
        self.quota = quota
    }
}

/// One user's usage in a STATS reply.
public struct UserUsage: Hashable, Sendable {
    public var uid: UInt32
    public var resources: [ResourceUsage]

    public init(uid: UInt32, resources: [ResourceUsage]) {
        self.uid = uid
        self.resources = resources
    }
}

/// One channel comet-bridge exports to NATS JetStream, as it reports it (BRIDGE_REPORT) and
/// STATS shows it (docs/FEDERATION.md).
public struct ExportCounters: Hashable, Sendable {
    public var name: String
    public var subject: String
    public var epoch: UInt64
    /// Messages handed to NATS, and acknowledged by JetStream.
    public var published: UInt64
    public var acknowledged: UInt64
    /// Messages that left the ring before they reached JetStream: remote readers that need them get FULL.
    public var missed: UInt64
    /// Messages buffered and not yet acknowledged.
    public var backlog: UInt64
    /// Whether the NATS connection is up.
    public var connected: Bool
    /// The `[nats]` section's servers, the stream and its replicas (comet 0.7; empty before).
    public var server = ""
    public var stream = ""
    public var replicas: UInt8 = 0
    /// Why the export makes no progress now ("" when it does).
    public var failure = ""

    public init(
        name: String, subject: String, epoch: UInt64, published: UInt64, acknowledged: UInt64, missed: UInt64, backlog: UInt64, connected: Bool,
        server: String = "", stream: String = "", replicas: UInt8 = 0, failure: String = ""
    ) {
        self.server = server
        self.stream = stream
        self.replicas = replicas
        self.failure = failure
        self.name = name
        self.subject = subject
        self.epoch = epoch
        self.published = published
        self.acknowledged = acknowledged
        self.missed = missed
        self.backlog = backlog
        self.connected = connected
    }
}

/// One import (a local name another daemon's channel feeds through comet-bridge), in STATS: what
/// cometd knows of it, and what its bridge last reported.
public struct ImportCounters: Hashable, Sendable {
    /// Where the import stands (cometd's view).
    public enum State: UInt8, Sendable {
        /// Its bridge is reading what the origin holds.
        case catchingUp = 0
        case live = 1
        /// Readers are told the origin cannot be reached.
        case stalled = 2
    }

    public var name: String
    public var state: State
    /// Whether a bridge is connected and feeding it.
    public var fed: Bool
    /// The origin's epoch (0: none read yet) and the last sequence the mirror holds.
    public var epoch: UInt64
    public var lastSequence: UInt64
    public var readers: UInt32
    /// The NATS servers and subject, from the bridge's report ("" when none reported).
    public var server: String
    public var subject: String
    /// Messages the bridge read whose sequence the mirror had (resends), and skipped foreign ones.
    public var foreign: UInt64
    /// Why it is stalled, or what troubles the bridge now ("" when nothing does).
    public var reason: String

    public init(
        name: String, state: State, fed: Bool, epoch: UInt64, lastSequence: UInt64, readers: UInt32, server: String = "", subject: String = "",
        foreign: UInt64 = 0, reason: String = ""
    ) {
        self.name = name
        self.state = state
        self.fed = fed
        self.epoch = epoch
        self.lastSequence = lastSequence
        self.readers = readers
        self.server = server
        self.subject = subject
        self.foreign = foreign
        self.reason = reason
    }
}

/// STATS reply: daemon totals, per-channel counters, per-user usage (PROTOCOL.md 6.16).
public struct StatsReply: Reply, Hashable {
    public var version: String
    public var uptimeMilliseconds: UInt64
    public var connectionsAccepted: UInt64
    public var connectionsRefused: UInt64
    public var connections: UInt32
    public var channels: UInt32
    public var subscriptions: UInt32
    public var sessions: UInt32
    /// Estimated memory of everything clients hold, and the ceiling past which work is refused.
    public var memory: UInt64
    public var memoryCeiling: UInt64
    public var channelStats: [ChannelStats]
    public var users: [UserUsage]
    /// Entries were left out to fit the frame.
    public var truncated: Bool
    /// Channels mirrored to NATS (appended in comet 0.4; empty from older daemons).
    public var exports: [ExportCounters] = []
    /// Imports (appended in comet 0.7).
    public var imports: [ImportCounters] = []

    public init(
        version: String, uptimeMilliseconds: UInt64, connectionsAccepted: UInt64, connectionsRefused: UInt64, connections: UInt32,
        channels: UInt32, subscriptions: UInt32, sessions: UInt32, memory: UInt64, memoryCeiling: UInt64,
        channelStats: [ChannelStats], users: [UserUsage], truncated: Bool = false
    ) {
        self.version = version
        self.uptimeMilliseconds = uptimeMilliseconds
        self.connectionsAccepted = connectionsAccepted
        self.connectionsRefused = connectionsRefused
        self.connections = connections
        self.channels = channels
        self.subscriptions = subscriptions
        self.sessions = sessions
        self.memory = memory
        self.memoryCeiling = memoryCeiling
        self.channelStats = channelStats
        self.users = users
        self.truncated = truncated
    }

    /// Bytes a channel entry takes.
    public static func entrySize(_ c: ChannelStats) -> Int { 2 + c.name.utf8.count + 1 + 8 * 4 + 4 + 8 }
    /// Bytes a user entry takes.
    public static func entrySize(_ u: UserUsage) -> Int { 5 + u.resources.reduce(0) { $0 + 2 + $1.resource.utf8.count + 16 } }

    public init(from body: inout ByteBuffer) throws(WireError) {
        version = try body.readWireString()
        uptimeMilliseconds = try body.readWire(UInt64.self, "uptime")
        connectionsAccepted = try body.readWire(UInt64.self, "connections accepted")
        connectionsRefused = try body.readWire(UInt64.self, "connections refused")
        connections = try body.readWire(UInt32.self, "connections")
        channels = try body.readWire(UInt32.self, "channels")
        subscriptions = try body.readWire(UInt32.self, "subscriptions")
        sessions = try body.readWire(UInt32.self, "sessions")
        memory = try body.readWire(UInt64.self, "memory")
        memoryCeiling = try body.readWire(UInt64.self, "memory ceiling")
        let channelCount = try body.readWire(UInt32.self, "channel count")
        guard Int(channelCount) <= body.readableBytes / 2 else { throw WireError.malformed("channel count exceeds frame") }
        channelStats = []
        for _ in 0..<channelCount {
            let name = try body.readWireString()
            let scope = try body.readWire(UInt8.self, "scope")
            let pushed = try body.readWire(UInt64.self, "pushed")
            let delivered = try body.readWire(UInt64.self, "delivered")
            let bytes = try body.readWire(UInt64.self, "bytes")
            let full = try body.readWire(UInt64.self, "full events")
            let readers = try body.readWire(UInt32.self, "readers")
            let ring = try body.readWire(UInt64.self, "ring bytes")
            channelStats.append(ChannelStats(
                name: name, scope: scope, pushed: pushed, delivered: delivered, bytes: bytes, fullEvents: full, readers: readers,
                ringBytes: ring))
        }
        let userCount = try body.readWire(UInt32.self, "user count")
        guard Int(userCount) <= body.readableBytes / 5 else { throw WireError.malformed("user count exceeds frame") }
        users = []
        for _ in 0..<userCount {
            let uid = try body.readWire(UInt32.self, "uid")
            let count = try body.readWire(UInt8.self, "resource count")
            var resources: [ResourceUsage] = []
            for _ in 0..<count {
                let name = try body.readWireString()
                let used = try body.readWire(UInt64.self, "used")
                let quota = try body.readWire(UInt64.self, "quota")
                resources.append(ResourceUsage(resource: name, used: used, quota: quota))
            }
            users.append(UserUsage(uid: uid, resources: resources))
        }
        truncated = try body.readWire(UInt8.self, "truncated") == 1
        guard body.readableBytes > 0 else { return }
        let exportCount = try body.readWire(UInt32.self, "export count")
        guard Int(exportCount) <= body.readableBytes / 37 else { throw WireError.malformed("export count exceeds frame") }
        for _ in 0..<exportCount { exports.append(try ExportCounters(counters: &body)) }
        guard body.readableBytes > 0 else { return }
        // Appended in comet 0.7: the imports, then each export's server, stream, replicas, failure.
        let importCount = try body.readWire(UInt32.self, "import count")
        guard Int(importCount) <= body.readableBytes / 30 else { throw WireError.malformed("import count exceeds frame") }
        for _ in 0..<importCount { imports.append(try ImportCounters(from: &body)) }
        for i in exports.indices { try exports[i].readDetails(from: &body) }
    }

    /// Bytes an export entry takes.
    public static func entrySize(_ e: ExportCounters) -> Int {
        4 + e.name.utf8.count + e.subject.utf8.count + 8 * 5 + 1 + 7 + e.server.utf8.count + e.stream.utf8.count + e.failure.utf8.count
    }
    /// Bytes an import entry takes.
    public static func entrySize(_ i: ImportCounters) -> Int {
        8 + i.name.utf8.count + i.server.utf8.count + i.subject.utf8.count + i.reason.utf8.count + 2 + 8 * 3 + 4
    }

    public func write(to body: inout ByteBuffer) {
        body.writeWireString(version)
        body.writeMultipleIntegers(uptimeMilliseconds, connectionsAccepted, connectionsRefused)
        body.writeMultipleIntegers(connections, channels, subscriptions, sessions)
        body.writeMultipleIntegers(memory, memoryCeiling)
        body.writeInteger(UInt32(channelStats.count))
        for c in channelStats {
            body.writeWireString(c.name)
            body.writeMultipleIntegers(c.scope, c.pushed, c.delivered, c.bytes, c.fullEvents)
            body.writeMultipleIntegers(c.readers, c.ringBytes)
        }
        body.writeInteger(UInt32(users.count))
        for u in users {
            body.writeMultipleIntegers(u.uid, UInt8(u.resources.count))
            for r in u.resources {
                body.writeWireString(r.resource)
                body.writeMultipleIntegers(r.used, r.quota)
            }
        }
        body.writeInteger(UInt8(truncated ? 1 : 0))
        body.writeInteger(UInt32(exports.count))
        for e in exports { e.writeCounters(to: &body) }
        body.writeInteger(UInt32(imports.count))
        for i in imports { i.write(to: &body) }
        for e in exports { e.writeDetails(to: &body) }
    }
}

extension ExportCounters {
    /// The counters as STATS has carried them since comet 0.4.
    init(counters body: inout ByteBuffer) throws(WireError) {
        let name = try body.readWireString()
        let subject = try body.readWireString()
        let epoch = try body.readWire(UInt64.self, "epoch")
        let published = try body.readWire(UInt64.self, "published")
        let acknowledged = try body.readWire(UInt64.self, "acknowledged")
        let missed = try body.readWire(UInt64.self, "missed")
        let backlog = try body.readWire(UInt64.self, "backlog")
        let connected = try body.readWire(UInt8.self, "connected") == 1
        self.init(
            name: name, subject: subject, epoch: epoch, published: published, acknowledged: acknowledged, missed: missed,
            backlog: backlog, connected: connected)
    }

    func writeCounters(to body: inout ByteBuffer) {
        body.writeWireString(name)
        body.writeWireString(subject)
        body.writeMultipleIntegers(epoch, published, acknowledged, missed, backlog)
        body.writeInteger(UInt8(connected ? 1 : 0))
    }

    /// Server, stream, replicas and failure (comet 0.7).
    mutating func readDetails(from body: inout ByteBuffer) throws(WireError) {
        server = try body.readWireString()
        stream = try body.readWireString()
        replicas = try body.readWire(UInt8.self, "replicas")
        failure = try body.readWireString()
    }

    func writeDetails(to body: inout ByteBuffer) {
        body.writeWireString(server)
        body.writeWireString(stream)
        body.writeInteger(replicas)
        body.writeWireString(failure)
    }
}

extension ImportCounters {
    init(from body: inout ByteBuffer) throws(WireError) {
        let name = try body.readWireString()
        let raw = try body.readWire(UInt8.self, "state")
        let fed = try body.readWire(UInt8.self, "fed") == 1
        let epoch = try body.readWire(UInt64.self, "epoch")
        let last = try body.readWire(UInt64.self, "last sequence")
        let readers = try body.readWire(UInt32.self, "readers")
        let server = try body.readWireString()
        let subject = try body.readWireString()
        let foreign = try body.readWire(UInt64.self, "foreign")
        let reason = try body.readWireString()
        self.init(
            name: name, state: State(rawValue: raw) ?? .stalled, fed: fed, epoch: epoch, lastSequence: last, readers: readers, server: server,
            subject: subject, foreign: foreign, reason: reason)
    }

    func write(to body: inout ByteBuffer) {
        body.writeWireString(name)
        body.writeMultipleIntegers(state.rawValue, UInt8(fed ? 1 : 0), epoch, lastSequence, readers)
        body.writeWireString(server)
        body.writeWireString(subject)
        body.writeInteger(foreign)
        body.writeWireString(reason)
    }
}

/// What comet-bridge tells its cometd about its links (BRIDGE_REPORT), for STATS: every export,
/// and its view of every import. Replaces the connection's previous report.
public struct BridgeReport: Hashable, Sendable {
    public var exports: [ExportCounters]
    public var imports: [ImportCounters]

    public init(exports: [ExportCounters], imports: [ImportCounters]) {
        self.exports = exports
        self.imports = imports
    }

    public init(from body: inout ByteBuffer) throws(WireError) {
        let exportCount = try body.readWire(UInt32.self, "export count")
        guard Int(exportCount) <= body.readableBytes / 40 else { throw WireError.malformed("export count exceeds frame") }
        exports = []
        for _ in 0..<exportCount {
            var entry = try ExportCounters(counters: &body)
            try entry.readDetails(from: &body)
            exports.append(entry)
        }
        let importCount = try body.readWire(UInt32.self, "import count")
        guard Int(importCount) <= body.readableBytes / 30 else { throw WireError.malformed("import count exceeds frame") }
        imports = []
        for _ in 0..<importCount { imports.append(try ImportCounters(from: &body)) }
    }

    public func write(to body: inout ByteBuffer) {
        body.writeInteger(UInt32(exports.count))
        for e in exports {
            e.writeCounters(to: &body)
            e.writeDetails(to: &body)
        }
        body.writeInteger(UInt32(imports.count))
        for i in imports { i.write(to: &body) }
    }
}
