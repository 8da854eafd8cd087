import CometWire

/// A session's credentials: the public id producers address, and the secret that resumes it.
/// Keep the token private: whoever has it (and the same uid) can read the session's channels.
public struct SessionCredentials: Hashable, Sendable, CustomStringConvertible {
    public var id: UInt64
    public var tokenHigh: UInt64
    public var tokenLow: UInt64

    public init(id: UInt64, tokenHigh: UInt64, tokenLow: UInt64) {
        self.id = id
        self.tokenHigh = tokenHigh
        self.tokenLow = tokenLow
    }

    /// `ID:TOKEN` in hex, the form `comet` stores in a session file.
    public var description: String {
        "\(String(id, radix: 16)):\(hex(tokenHigh))\(hex(tokenLow))"
    }

    /// Parses `ID:TOKEN` as written by `description`.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ":")
        guard parts.count == 2, parts[1].count == 32, let id = UInt64(parts[0], radix: 16),
            let high = UInt64(parts[1].prefix(16), radix: 16), let low = UInt64(parts[1].suffix(16), radix: 16)
        else { return nil }
        self.init(id: id, tokenHigh: high, tokenLow: low)
    }
}

private func hex(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}

/// Something the daemon tells a client outside any subscription.
public enum ClientEvent: Sendable, Hashable {
    /// A private channel was created for this client's session (or still exists after a resume):
    /// subscribe to it with `subscribePrivate(_:)`.
    /// `owner` is who created it.
    case offer(channel: UInt64, name: String, kind: ChannelKind, epoch: UInt64, owner: Owner)
    /// A channel this client produces ended without its own CLOSE, e.g. its session ended.
    case ended(channel: UInt64, code: ErrorCode, message: String)
    /// The connection was lost and made again (`ReconnectPolicy`); `resumed` tells whether the
    /// session came back (else `session` is a new one and private channels are gone).
    case reconnected(session: SessionCredentials, resumed: Bool)
    /// After a reconnect, a channel this client produces is its again; pushing goes on after
    /// `lastSequence` (pushes in flight when the connection broke landed up to there).
    case adopted(channel: UInt64, lastSequence: UInt64)
}
