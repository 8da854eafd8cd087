/// A policy file that cannot be used: where and why.
public struct PolicyError: Error, Equatable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var reason: String

    public init(file: String, line: Int, reason: String) {
        self.file = file
        self.line = line
        self.reason = reason
    }

    public var description: String { "\(file):\(line): \(reason)" }
}

/// Reads the policy language of docs/POLICY.md. No I/O: the caller passes each file's text and
/// how to turn user and group names into ids.
public struct PolicyParser {
    /// Turns a user name into a uid (nil: unknown user).
    public var userID: (String) -> UInt32?
    /// Turns a group name into a gid (nil: unknown group).
    public var groupID: (String) -> UInt32?

    /// The highest uid of a system user (`SYS_UID_MAX` of login.defs(5), 999 on Debian): the
    /// principal `system` is root, uids 1 to this, and systemd's dynamic users.
    public var systemUIDMax: UInt32

    public init(userID: @escaping (String) -> UInt32?, groupID: @escaping (String) -> UInt32?, systemUIDMax: UInt32 = 999) {
        self.userID = userID
        self.groupID = groupID
        self.systemUIDMax = systemUIDMax
    }

    /// Adds the rules of one file to `policy`; on error `policy` may be partly changed, so parse
    /// into a copy and keep the old policy on failure.
    public func parse(_ text: String, file: String, into policy: inout Policy) throws(PolicyError) {
        var number = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            number += 1
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard let verb = words.first else { continue }
            func fail(_ reason: String) -> PolicyError { PolicyError(file: file, line: number, reason: reason) }
            switch verb {
            case "create", "subscribe", "relay", "mirror":
                guard words.count == 3 else {
                    throw fail("'\(verb)' takes a pattern and a list of principals: \(verb) PATTERN PRINCIPALS")
                }
                let pattern = try checkedPattern(words[1], forAddress: verb == "relay", fail)
                let principals = try self.principals(words[2], fail)
                if principals.namedUser && !pattern.hasUserSegment {
                    throw fail("'%u' is the user a pattern's %u segment names, and '\(words[1])' has none (e.g. user.%u.*)")
                }
                switch verb {
                case "create": policy.create[pattern, default: .init()].formUnion(principals)
                case "subscribe": policy.subscribe[pattern, default: .init()].formUnion(principals)
                case "mirror": policy.mirror[pattern, default: .init()].formUnion(principals)
                default: policy.relay[pattern, default: .init()].formUnion(principals)
                }
            case "address-sessions":
                guard words.count == 2 else { throw fail("'address-sessions' takes a list of principals") }
                let principals = try self.principals(words[1], fail)
                if principals.namedUser { throw fail("'%u' needs a pattern with a %u segment; address-sessions has none") }
                policy.addressSessions.formUnion(principals)
            default:
                throw fail("unknown rule '\(verb)' (expected create, subscribe, mirror, address-sessions or relay)")
            }
        }
    }

    private func checkedPattern(_ word: String, forAddress: Bool, _ fail: (String) -> PolicyError) throws(PolicyError) -> Policy.Pattern {
        let pattern = Policy.Pattern(word)
        guard !pattern.text.contains("*") else { throw fail("'*' may only end a pattern: '\(word)'") }
        let placeholder = Policy.Pattern.userSegment
        if pattern.hasUserSegment {
            let parts = pattern.text.split(separator: placeholder, omittingEmptySubsequences: false)
            guard !forAddress else { throw fail("address patterns have no %u segment: '\(word)'") }
            guard parts.count == 2 else { throw fail("a pattern has at most one %u segment: '\(word)'") }
            guard parts[0].isEmpty || parts[0].hasSuffix("."), parts[1].isEmpty || parts[1].hasPrefix(".") else {
                throw fail("%u stands for a whole segment of a name, between dots: '\(word)' (e.g. user.%u.*)")
            }
        } else if pattern.text.contains("%") {
            throw fail("'%' is not allowed in a pattern except as %u: '\(word)'")
        }
        if forAddress {
            let schemes = ["unix:/", "nats://", "tls://"]
            guard schemes.contains(where: { pattern.text.hasPrefix($0) || (pattern.isPrefix && $0.hasPrefix(pattern.text)) }) else {
                throw fail("relay patterns are addresses: unix:/PATH, nats://HOST:PORT/SUBJECT (or a prefix of one ending with *), not '\(word)'")
            }
        } else if !pattern.isPrefix {
            let example = pattern.text.replacing(placeholder, with: "u")
            do throws(ChannelRefusal) { try ChannelName.validate(example) } catch { throw fail("'\(word)': \(error.message)") }
        }
        return pattern
    }

    /// `*`, `none`, or a comma-separated list of `user:NAME|UID`, `group:NAME|GID`, `system` and
    /// `%u`.
    private func principals(_ word: String, _ fail: (String) -> PolicyError) throws(PolicyError) -> Policy.Principals {
        var result = Policy.Principals()
        if word == "*" { return Policy.Principals(everyone: true) }
        if word == "none" { return result }
        for item in word.split(separator: ",", omittingEmptySubsequences: false) {
            if item == "system" {
                result.systemUIDMax = systemUIDMax
                continue
            }
            if item == Policy.Pattern.userSegment {
                result.namedUser = true
                continue
            }
            let parts = item.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[1].isEmpty else {
                throw fail("'\(item)' is not a principal (user:NAME, user:UID, group:NAME, group:GID, system, %u, * or none)")
            }
            switch parts[0] {
            case "user":
                guard let uid = UInt32(parts[1]) ?? userID(parts[1]) else { throw fail("unknown user '\(parts[1])'") }
                result.users.insert(uid)
            case "group":
                guard let gid = UInt32(parts[1]) ?? groupID(parts[1]) else { throw fail("unknown group '\(parts[1])'") }
                result.groups.insert(gid)
            default:
                throw fail("'\(item)' is not a principal (user:NAME, user:UID, group:NAME, group:GID, system, %u, * or none)")
            }
        }
        return result
    }
}
