/// Who may do what, compiled from policy files (docs/POLICY.md) into lookups.
///
/// Rules name a channel-name pattern (an exact name, or a prefix ending in `*`, either of which
/// may hold a `%u` segment standing for a user's name) or an address pattern, and the principals
/// they grant. For a given name the most specific matching pattern decides (an exact name before
/// any prefix, a longer prefix before a shorter one); with no matching rule the default applies.
/// Root may always do everything.
///
/// Decisions about names with a `%u` segment need the uid of the user the segment names: callers
/// pass a `UserLookup` (the policy itself does no I/O).
public struct Policy: Sendable, Equatable {
    /// Turns a user name into its uid (nil: no such user).
    public typealias UserLookup = (String) -> UInt32?

    /// A set of peers: everyone, users and groups by id, system users, or the user a name's `%u`
    /// segment names.
    public struct Principals: Sendable, Equatable {
        public var everyone = false
        public var users: Set<UInt32> = []
        public var groups: Set<UInt32> = []
        /// `system`: root and system users, uids 1…`systemUIDMax` and systemd's dynamic users
        /// (61184–65519); nil when the rule does not name them.
        public var systemUIDMax: UInt32?
        /// `%u`: the user the channel name's `%u` segment names.
        public var namedUser = false

        public init(
            everyone: Bool = false, users: Set<UInt32> = [], groups: Set<UInt32> = [], systemUIDMax: UInt32? = nil,
            namedUser: Bool = false
        ) {
            self.everyone = everyone
            self.users = users
            self.groups = groups
            self.systemUIDMax = systemUIDMax
            self.namedUser = namedUser
        }

        /// systemd's range of dynamic service users (DynamicUser=), which are system users too.
        public static let dynamicUsers: ClosedRange<UInt32> = 61184...65519

        /// Whether `who` is one of them; `nameOwner` is the uid a `%u` segment named, if any.
        public func contains(_ who: Identity, nameOwner: UInt32? = nil) -> Bool {
            if everyone || who.isRoot || users.contains(who.uid) || groups.contains(where: { who.isMember(of: $0) }) { return true }
            if let max = systemUIDMax, who.uid <= max || Self.dynamicUsers.contains(who.uid) { return true }
            return namedUser && nameOwner == who.uid
        }

        mutating func formUnion(_ other: Principals) {
            everyone = everyone || other.everyone
            users.formUnion(other.users)
            groups.formUnion(other.groups)
            if let max = other.systemUIDMax { systemUIDMax = Swift.max(systemUIDMax ?? 0, max) }
            namedUser = namedUser || other.namedUser
        }
    }

    /// A name or address pattern: `exact`, or `prefix*`; a channel-name pattern may hold one `%u`
    /// segment (`user.%u.*`), which matches one non-empty segment without a dot: a user's name or
    /// uid in decimal.
    public struct Pattern: Hashable, Sendable, CustomStringConvertible {
        /// The pattern as written, without its final `*`.
        public var text: String
        public var isPrefix: Bool
        /// Around the `%u` segment, if the pattern has one.
        private var split: Split?

        private struct Split: Hashable, Sendable {
            var before: String
            var after: String
        }

        /// The placeholder for "the user this segment names".
        public static let userSegment = "%u"

        public init(_ source: String) {
            isPrefix = source.hasSuffix("*")
            text = isPrefix ? String(source.dropLast()) : source
            if let range = text.firstRange(of: Self.userSegment) {
                split = Split(before: String(text[..<range.lowerBound]), after: String(text[range.upperBound...]))
            }
        }

        /// Whether the pattern has a `%u` segment.
        public var hasUserSegment: Bool { split != nil }

        /// What a name's match says: nil when it does not match; otherwise the `%u` segment's text
        /// (empty for a pattern without one).
        public func match(_ name: String) -> Substring? {
            guard let split else {
                guard isPrefix ? name.hasPrefix(text) : name == text else { return nil }
                return ""
            }
            guard name.hasPrefix(split.before) else { return nil }
            let rest = name.dropFirst(split.before.count)
            let segment = rest.prefix { $0 != "." }
            guard !segment.isEmpty else { return nil }
            let tail = rest.dropFirst(segment.count)
            guard isPrefix ? tail.hasPrefix(split.after) : tail == split.after else { return nil }
            return segment
        }

        public func matches(_ name: String) -> Bool { match(name) != nil }

        /// Higher is more specific: exact names first (those with a `%u` segment just after), then
        /// longer prefixes, the literal characters counted; a `%u` segment counts for more than
        /// none and less than one (`user.alice.*` before `user.%u.*` before `user.*`).
        var specificity: Int {
            if !isPrefix { return split == nil ? Int.max : Int.max - 1 }
            return split.map { 2 * ($0.before.utf8.count + $0.after.utf8.count) + 1 } ?? 2 * text.utf8.count
        }

        public var description: String { isPrefix ? text + "*" : text }
    }

    /// What a policy says about one channel name and one peer: the rule that decides (nil: none
    /// matches, the default applies) and whether it lets the peer.
    public struct Decision: Sendable, Equatable {
        public var pattern: Pattern?
        public var allows: Bool
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

    /// Which rule decides whether `who` may create a site channel named `name`, and what it
    /// says. Without a rule: first come, first served.
    public func creation(_ name: String, _ who: Identity, users: UserLookup = { _ in nil }) -> Decision {
        Self.decide(create, name, who, users) ?? Decision(pattern: nil, allows: true)
    }

    /// Whether `who` may create a site channel named `name`.
    public func mayCreate(_ name: String, _ who: Identity, users: UserLookup = { _ in nil }) -> Bool {
        creation(name, who, users: users).allows
    }

    /// Whether `who` may subscribe to a site channel named `name`.
    public func maySubscribe(_ name: String, _ who: Identity, users: UserLookup = { _ in nil }) -> Bool {
        Self.decide(subscribe, name, who, users)?.allows ?? true
    }

    /// Whether `who` may address a session of user `owner`.
    public func mayAddressSession(ofUser owner: UInt32, _ who: Identity) -> Bool {
        who.isRoot || who.uid == owner || addressSessions.contains(who)
    }

    /// Whether the policy lets `who` relay from `address` (a normalised `unix:/PATH`). `false`
    /// means only the requester's own permissions count.
    public func grantsRelay(_ address: String, _ who: Identity) -> Bool { Self.decide(relay, address, who, { _ in nil })?.allows ?? false }

    /// Which rule decides whether `who` may feed the import `name` (MIRROR), and what it says.
    /// Without a rule, root only.
    public func feeding(_ name: String, _ who: Identity, users: UserLookup = { _ in nil }) -> Decision {
        let decision = Self.decide(mirror, name, who, users)
        return Decision(pattern: decision?.pattern, allows: who.isRoot || (decision?.allows ?? false))
    }

    /// Whether `who` may feed the import `name` (MIRROR). Without a rule, root only.
    public func mayMirror(_ name: String, _ who: Identity, users: UserLookup = { _ in nil }) -> Bool {
        feeding(name, who, users: users).allows
    }

    /// Whether `who` may be a bridge at all (some `mirror` rule names it, or root): who may
    /// report a bridge's counters (BRIDGE_REPORT).
    public func mayBridge(_ who: Identity) -> Bool { who.isRoot || mirror.values.contains { $0.contains(who) } }

    /// The decision of the most specific rule matching `name`, or nil when none matches.
    static func decide(_ rules: [Pattern: Principals], _ name: String, _ who: Identity, _ users: UserLookup) -> Decision? {
        var best: (pattern: Pattern, segment: Substring, principals: Principals)?
        for (pattern, principals) in rules {
            guard let segment = pattern.match(name) else { continue }
            if best == nil || pattern.specificity > best!.pattern.specificity
                || (pattern.specificity == best!.pattern.specificity && pattern.description < best!.pattern.description)
            {
                best = (pattern, segment, principals)
            }
        }
        guard let best else { return nil }
        var nameOwner: UInt32?
        if best.principals.namedUser, !best.segment.isEmpty {
            nameOwner = UInt32(best.segment) ?? users(String(best.segment))
        }
        return Decision(pattern: best.pattern, allows: best.principals.contains(who, nameOwner: nameOwner))
    }

    /// Whether any rule names a group (peers' supplementary groups are then looked up).
    public var namesGroups: Bool {
        let all = Array(create.values) + Array(subscribe.values) + Array(relay.values) + Array(mirror.values) + [addressSessions]
        return all.contains { !$0.groups.isEmpty }
    }

    /// Whether any rule has a `%u` segment (user names in channel names are then looked up).
    public var namesUsersInNames: Bool {
        (Array(create.keys) + Array(subscribe.keys) + Array(mirror.keys)).contains(where: \.hasUserSegment)
    }

    /// The number of rules, for logs.
    public var ruleCount: Int {
        create.count + subscribe.count + relay.count + mirror.count + (addressSessions == Principals() ? 0 : 1)
    }
}
