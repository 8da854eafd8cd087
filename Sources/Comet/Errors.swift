import CometWire

/// The daemon refused a request; `code` is from the protocol's error registry.
public struct CometError: Error, Hashable, Sendable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(code: ErrorCode, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.name): \(message)" }
}

/// A subscription fell behind the channel's ring and ended (Eliom's `Channel_full`).
/// Subscribe again from `firstAvailable` (or later) to go on, knowing messages were missed.
public struct ChannelFull: Error, Hashable, Sendable, CustomStringConvertible {
    public var channel: String
    /// The oldest sequence number the channel still buffers.
    public var firstAvailable: UInt64
    public init(channel: String, firstAvailable: UInt64) {
        self.channel = channel
        self.firstAvailable = firstAvailable
    }

    public var description: String { "channel '\(channel)' is full: the reader fell behind; oldest buffered is \(firstAvailable)" }
}

/// The channel was closed and the subscription has delivered everything it held (Eliom's `Channel_closed`).
public struct ChannelClosed: Error, Hashable, Sendable, CustomStringConvertible {
    public var channel: String
    /// The last sequence number the channel gave (0 if none).
    public var lastSequence: UInt64
    public init(channel: String, lastSequence: UInt64) {
        self.channel = channel
        self.lastSequence = lastSequence
    }

    public var description: String { "channel '\(channel)' was closed after message \(lastSequence)" }
}

/// The channel was re-created (for an external channel: upstream) with a new epoch, so its
/// sequence numbers restarted; the subscription is over. Subscribe again to read the new one.
public struct EpochChanged: Error, Hashable, Sendable, CustomStringConvertible {
    public var channel: String
    /// The new epoch.
    public var epoch: UInt64

    public init(channel: String, epoch: UInt64) {
        self.channel = channel
        self.epoch = epoch
    }

    public var description: String { "channel '\(channel)' was re-created (new epoch \(epoch)): sequence numbers restarted" }
}

/// The daemon could not be reached or the connection to it ended.
public struct ConnectionError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// Nothing accepted a connection at the socket path.
        case unreachable
        /// The connection closed or failed after it was established.
        case lost
        /// The daemon does not speak this client's protocol version.
        case versionMismatch
        /// The daemon broke the protocol.
        case protocolViolation
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
