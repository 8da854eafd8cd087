/// Who may do what, compiled from policy files (docs/POLICY.md) into lookups.
///
/// Rules name a channel-name pattern (an exact name, or a prefix ending in `*`) or an address
/// pattern, and the principals they grant. For a given name the most specific matching pattern
/// decides (an exact name before any prefix, a longer prefix before a shorter one); with no
/// matching rule the default applies. Root may always do everything.
public struct Policy: Sendable, Equatable {
    /// A set of peers: everyone, or users and groups by id.
    public struct Principals: Sendable, Equatable {
        public var everyone = false
        public var users: Set<UInt32> = []
        public var groups: Set<UInt32> = []

        public init(everyone: Bool = false, users: Set<UInt32> = [], groups: Set<UInt32> = []) {
            self.everyone = everyone
            self.users = users
            self.groups = groups
        }

        public func contains(_ who: Identity) -> Bool {
            everyone || who.isRoot || users.contains(who.uid) || groups.contains { who.isMember(of: $0) }
        }

        mutating func formUnion(_ other: Principals) {
            everyone = everyone || other.everyone
            users.formUnion(other.users)
            groups.formUnion(other.groups)
        }
    }

    /// A name or address pattern: `exact`, or `prefix*`.
    public struct Pattern: Hashable, Sendable, CustomStringConvertible {
        public var text: String
        public var isPrefix: Bool

        public init(_ source: String) {
            isPrefix = source.hasSuffix("*")
            text = isPrefix ? String(source.dropLast()) : source
        }

        public func matches(_ name: String) -> Bool { isPrefix ? name.hasPrefix(text) : name == text }

        /// Higher is more specific: exact names first, then longer prefixes.
        var specificity: Int { isPrefix ? text.utf8.count : Int.max }

        public var description: String { isPrefix ? text + "*" : text }
    }

    /// Rules that say who may create site channels with matching names.
    public var create: [Pattern: Principals] = [:]
    /// Rules that say who may subscribe to site channels with matching names.
    public var subscribe: [Pattern: Principals] = [:]
    /// Who may address other users' sessions (CREATE_PRIVATE, WAIT_TIMEOUT).
    public var addressSessions = Principals()
    /// Who may have the daemon relay from matching addresses, whatever their own permissions.
    public var relay: [Pattern: Principals] = [:]
    /// Who may feed imports (MIRROR) with matching names: their messages, numbers and epochs
    /// come from elsewhere, so only whom the policy names (and root) may.
    public var mirror: [Pattern: Principals] = [:]

    /// The empty policy: the defaults of docs/SECURITY.md.
    public init() {}

    /// Whether `who` may create a site channel named `name`.
    public func mayCreate(_ name: String, _ who: Identity) -> Bool { Self.decide(create, name, who) ?? true }

    /// Whether `who` may subscribe to a site channel named `name`.
    public func maySubscribe(_ name: String, _ who: Identity) -> Bool { Self.decide(subscribe, name, who) ?? true }

    /// Whether `who` may address a session of user `owner`.
    public func mayAddressSession(ofUser owner: UInt32, _ who: Identity) -> Bool {
        who.isRoot || who.uid == owner || addressSessions.contains(who)
    }

    /// Whether the policy lets `who` relay from `address` (a normalised `unix:/PATH`). `false`
    /// means only the requester's own permissions count.
    public func grantsRelay(_ address: String, _ who: Identity) -> Bool { Self.decide(relay, address, who) ?? false }

    /// Whether `who` may feed the import `name` (MIRROR). Without a rule, root only.
    public func mayMirror(_ name: String, _ who: Identity) -> Bool { who.isRoot || (Self.decide(mirror, name, who) ?? false) }

    /// Whether `who` may be a bridge at all (some `mirror` rule names it, or root): who may
    /// report a bridge's counters (BRIDGE_REPORT).
    public func mayBridge(_ who: Identity) -> Bool { who.isRoot || mirror.values.contains { $0.contains(who) } }

    /// The decision of the most specific rule matching `name`, or nil when none matches.
    static func decide(_ rules: [Pattern: Principals], _ name: String, _ who: Identity) -> Bool? {
        var best: (Int, Principals)?
        for (pattern, principals) in rules where pattern.matches(name) {
            if best == nil || pattern.specificity > best!.0 { best = (pattern.specificity, principals) }
        }
        return best.map { $0.1.contains(who) }
    }

    /// Whether any rule names a group (peers' supplementary groups are then looked up).
    public var namesGroups: Bool {
        let all = Array(create.values) + Array(subscribe.values) + Array(relay.values) + [addressSessions]
        return all.contains { !$0.groups.isEmpty }
    }

    /// The number of rules, for logs.
    public var ruleCount: Int { create.count + subscribe.count + relay.count + (addressSessions == Principals() ? 0 : 1) }
}
