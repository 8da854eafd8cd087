import NIOCore

/// One channel in a LIST reply.
public struct ChannelInfo: Hashable, Sendable {
    public var name: String
    public var kind: ChannelKind
    /// Scope: 0 site, 1 client process.
    public var scope: UInt8
    public var size: UInt32
    public var buffered: UInt32
    public var subscribers: UInt32
    public var lastSequence: UInt64
    public var epoch: UInt64
    /// Who produces it (for an import: the bridge that feeds it).
    public var owner: Owner
    /// An import: another daemon's channel a bridge feeds, with that channel's numbers and epoch
    /// (epoch 0 while the bridge has not read one yet).
    public var imported: Bool
    /// The policy rule that decides who may create (for an import: feed) a channel of this name,
    /// as written (`user.%u.*`); empty when no rule does (first come, first served).
    public var rule: String
    /// Whether that rule lets the channel's owner.
    public var standing: RuleStanding

    /// What a channel's name rule says of its owner.
    public enum RuleStanding: UInt8, Sendable, Hashable {
        /// No rule decides the name (or the daemon does not say).
        case unruled = 0
        /// The rule lets the owner: the channel belongs where it is.
        case allowed = 1
        /// The rule does not let the owner (the channel predates the rule): readers that do not
        /// pin an owner are refused it with OWNER_MISMATCH.
        case notAllowed = 2
    }

    public init(
        name: String, kind: ChannelKind, scope: UInt8, size: UInt32, buffered: UInt32, subscribers: UInt32, lastSequence: UInt64,
        epoch: UInt64, owner: Owner = .unknown, imported: Bool = false, rule: String = "", standing: RuleStanding = .unruled
    ) {
        self.owner = owner
        self.imported = imported
        self.rule = rule
        self.standing = standing
        self.name = name
        self.kind = kind
        self.scope = scope
        self.size = size
        self.buffered = buffered
        self.subscribers = subscribers
        self.lastSequence = lastSequence
        self.epoch = epoch
    }
}

/// Reply to LIST and LIST_FROM: one page of the live channels this connection may see, sorted
/// by (name, scope). `more` says that entries follow the last one (ask with LIST_FROM).
public struct ListReply: Reply, Hashable {
    public var channels: [ChannelInfo]
    public var more: Bool

    public init(channels: [ChannelInfo], more: Bool = false) {
        self.channels = channels
        self.more = more
    }

    /// Bytes one entry takes in the reply, owner, import byte and rule included.
    public static func entrySize(_ info: ChannelInfo) -> Int { 2 + info.name.utf8.count + 30 + 8 + 1 + 2 + info.rule.utf8.count + 1 }
    /// Bytes of the reply around its entries (count and `more`).
    public static let overhead = 5

    public init(from body: inout ByteBuffer) throws(WireError) {
        let count = try body.readWire(UInt32.self, "count")
        guard Int(count) <= body.readableBytes / 2 else { throw WireError.malformed("channel count exceeds frame") }
        channels = []
        for _ in 0..<count {
            let name = try body.readWireString()
            let kind = try body.readWire(UInt8.self, "kind")
            let scope = try body.readWire(UInt8.self, "scope")
            let size = try body.readWire(UInt32.self, "size")
            let buffered = try body.readWire(UInt32.self, "buffered")
            let subscribers = try body.readWire(UInt32.self, "subscribers")
            let last = try body.readWire(UInt64.self, "last sequence")
            let epoch = try body.readWire(UInt64.self, "epoch")
            channels.append(ChannelInfo(
                name: name, kind: ChannelKind(rawValue: kind), scope: scope, size: size, buffered: buffered,
                subscribers: subscribers, lastSequence: last, epoch: epoch))
        }
        // Appended in v1 by daemons that page and send owners; absent from older ones.
        more = (body.readInteger(as: UInt8.self) ?? 0) == 1
        for i in channels.indices { channels[i].owner = body.readOptionalOwner() }
        // Appended in comet 0.7: one byte per entry, 1 for an import.
        for i in channels.indices { channels[i].imported = (body.readInteger(as: UInt8.self) ?? 0) == 1 }
        // Appended in comet 0.8: per entry the name's rule and what it says of the owner.
        guard body.readableBytes > 0 else { return }
        for i in channels.indices {
            channels[i].rule = try body.readWireString()
            let standing = try body.readWire(UInt8.self, "standing")
            channels[i].standing = ChannelInfo.RuleStanding(rawValue: standing) ?? .unruled
        }
    }

    public func write(to body: inout ByteBuffer) {
        body.writeInteger(UInt32(channels.count))
        for c in channels {
            body.writeWireString(c.name)
            body.writeMultipleIntegers(c.kind.rawValue, c.scope, c.size, c.buffered, c.subscribers, c.lastSequence, c.epoch)
        }
        body.writeInteger(UInt8(more ? 1 : 0))
        for c in channels { body.writeMultipleIntegers(c.owner.uid, c.owner.gid) }
        for c in channels { body.writeInteger(UInt8(c.imported ? 1 : 0)) }
        for c in channels {
            body.writeWireString(c.rule)
            body.writeInteger(c.standing.rawValue)
        }
    }
}
