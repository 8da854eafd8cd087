/// How comet names map onto NATS subjects and JetStream streams (docs/FEDERATION.md).
public enum NATSMapping {
    /// Subject of channel `name`: `prefix.name`, or nil when the result is not a valid NATS
    /// subject (a name with an empty token, such as `a..b` or `a.`).
    public static func subject(prefix: String, name: String) -> String? {
        let subject = prefix.isEmpty ? name : prefix + "." + name
        return isValidSubject(subject) ? subject : nil
    }

    /// A literal subject (no wildcards, no empty tokens, no white space), at most 255 bytes.
    public static func isValidSubject(_ subject: String) -> Bool {
        guard !subject.isEmpty, subject.utf8.count <= 255 else { return false }
        for token in subject.split(separator: ".", omittingEmptySubsequences: false) {
            guard !token.isEmpty, token != "*", token != ">" else { return false }
            for byte in token.utf8 where byte <= 0x20 || byte >= 0x7F || byte == UInt8(ascii: "*") || byte == UInt8(ascii: ">") {
                return false
            }
        }
        return true
    }

    /// Stream of channel `name`: `prefix` followed by the name with every byte that a stream name
    /// may not hold (anything but letters, digits and `-`) written `_XX` in hex, `_` included, so
    /// that two names never share a stream.
    public static func stream(prefix: String, name: String) -> String {
        var out = prefix
        for byte in name.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out.unicodeScalars.append("_")
                out.unicodeScalars.append(hex[Int(byte >> 4)])
                out.unicodeScalars.append(hex[Int(byte & 15)])
            }
        }
        return out
    }

    /// A stream-name prefix: letters, digits, `-` and `_` only.
    public static func isValidStreamPrefix(_ prefix: String) -> Bool {
        prefix.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                return true
            default:
                return false
            }
        }
    }
}

/// `nats://HOST:PORT[/SUBJECT]`: where SUBSCRIBE_EXTERNAL reads a JetStream subject.
public struct NATSAddress: Sendable, Hashable {
    /// `nats://HOST:PORT`, as nats.c takes it.
    public var server: String
    /// The subject, when the address names one.
    public var subject: String?

    /// Parses `nats://HOST:PORT[/SUBJECT]` (also `tls://`); nil for anything else.
    public init?(_ address: String) {
        let scheme: String
        if address.hasPrefix("nats://") {
            scheme = "nats://"
        } else if address.hasPrefix("tls://") {
            scheme = "tls://"
        } else {
            return nil
        }
        let rest = address.dropFirst(scheme.count)
        let hostPort: Substring
        if let slash = rest.firstIndex(of: "/") {
            hostPort = rest[..<slash]
            let subject = String(rest[rest.index(after: slash)...])
            if !subject.isEmpty {
                guard NATSMapping.isValidSubject(subject) else { return nil }
                self.subject = subject
            }
        } else {
            hostPort = rest
        }
        // HOST:PORT, with a numeric port; HOST a name, an IPv4 address or [IPv6]. No user info:
        // credentials come from the daemon's configuration, never from a client.
        guard let colon = hostPort.lastIndex(of: ":"), !hostPort.contains("@") else { return nil }
        let host = hostPort[..<colon]
        guard let port = UInt16(hostPort[hostPort.index(after: colon)...]), port > 0, !host.isEmpty,
            host.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") })
        else { return nil }
        self.server = scheme + hostPort
    }

    public var description: String { subject.map { server + "/" + $0 } ?? server }
}
