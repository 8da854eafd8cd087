/// The numbered error registry of docs/PROTOCOL.md ("Errors").
///
/// A struct rather than an enum so that a client decodes codes added by a newer
/// server without failing.
public struct ErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// No protocol version in common; the server closes the connection.
    public static let unsupportedVersion = ErrorCode(rawValue: 1)
    /// A frame whose body does not match its operation's layout; connection closed.
    public static let malformedFrame = ErrorCode(rawValue: 2)
    /// A length prefix above the advertised maximum; connection closed.
    public static let frameTooLarge = ErrorCode(rawValue: 3)
    /// An opcode the server does not know; connection closed.
    public static let unknownOperation = ErrorCode(rawValue: 4)
    /// A request before HELLO, or a second HELLO; connection closed.
    public static let handshakeRequired = ErrorCode(rawValue: 5)
    /// A channel name outside the grammar or too long.
    public static let invalidName = ErrorCode(rawValue: 6)
    /// A field out of range: size, position kind, flags, an empty batch.
    public static let invalidArgument = ErrorCode(rawValue: 7)
    /// CREATE for a name that a live channel already has.
    public static let channelExists = ErrorCode(rawValue: 8)
    /// No live channel has this name or id.
    public static let noSuchChannel = ErrorCode(rawValue: 9)
    /// PUSH or CLOSE on a channel that another connection created.
    public static let notOwner = ErrorCode(rawValue: 10)
    /// The channel was closed.
    public static let channelClosed = ErrorCode(rawValue: 11)
    /// UNSUBSCRIBE with an id this connection does not hold.
    public static let noSuchSubscription = ErrorCode(rawValue: 12)
    /// SUBSCRIBE named an epoch that is not the channel's current one.
    public static let epochMismatch = ErrorCode(rawValue: 13)
    /// SUBSCRIBE from a sequence number the channel has not reached yet.
    public static let positionAhead = ErrorCode(rawValue: 14)
    /// A per-connection or per-daemon limit (channels, subscriptions) is reached.
    public static let limitExceeded = ErrorCode(rawValue: 15)
    /// Reserved for client-process channels: the channel is full.
    public static let channelFull = ErrorCode(rawValue: 16)
    /// The request is valid but this kind or scope is not served by this daemon.
    public static let unsupported = ErrorCode(rawValue: 17)
    /// The daemon is shutting down.
    public static let shuttingDown = ErrorCode(rawValue: 18)
    /// RESUME named a session that does not exist (or ended after its grace period).
    public static let noSuchSession = ErrorCode(rawValue: 19)
    /// RESUME with a token that is not the session's.
    public static let badToken = ErrorCode(rawValue: 20)
    /// RESUME of a session that another user (uid) opened.
    public static let wrongUser = ErrorCode(rawValue: 21)
    /// A second subscription to a private channel that a live subscription already reads.
    public static let alreadySubscribed = ErrorCode(rawValue: 22)
    /// CHANNEL_ENDED reason: the session the private channel was addressed to ended.
    public static let sessionEnded = ErrorCode(rawValue: 23)
    /// ANSWER to a pull that was not asked for (or was already answered).
    public static let pullNotRequested = ErrorCode(rawValue: 24)
    /// SUBSCRIBE_EXTERNAL: nothing answers at the upstream address.
    public static let upstreamUnreachable = ErrorCode(rawValue: 25)
    /// SUBSCRIBE_EXTERNAL: the address leads back to this daemon.
    public static let loopDetected = ErrorCode(rawValue: 26)
    /// SUBSCRIBE_EXTERNAL: the upstream daemon speaks another protocol version.
    public static let upstreamVersion = ErrorCode(rawValue: 27)
    /// SUBSCRIBE_EXTERNAL: an address this daemon cannot use.
    public static let invalidAddress = ErrorCode(rawValue: 28)
    /// A per-user quota, a daemon-wide limit or the memory ceiling; the message names the resource.
    public static let quotaExceeded = ErrorCode(rawValue: 29)
    /// The daemon's policy does not let this user do this.
    public static let permissionDenied = ErrorCode(rawValue: 30)
    /// The channel's producer is not the owner the subscription pinned.
    public static let ownerMismatch = ErrorCode(rawValue: 31)
    /// The connection did not complete HELLO in time, or held nothing and was idle too long.
    public static let timedOut = ErrorCode(rawValue: 32)
    /// PUSH_NUMBERED whose first number is past the channel's next one: an earlier numbered push
    /// is missing (refused, or not sent); the message names the number expected.
    public static let outOfOrder = ErrorCode(rawValue: 33)
    /// A bug in the daemon; the request had no effect.
    public static let internalError = ErrorCode(rawValue: 255)

    /// Whether the server closes the connection after sending this error.
    public var isFatal: Bool {
        switch self {
        case .unsupportedVersion, .malformedFrame, .frameTooLarge, .unknownOperation, .handshakeRequired,
            .shuttingDown, .timedOut:
            return true
        default:
            return false
        }
    }

    public var name: String {
        switch self {
        case .unsupportedVersion: return "UNSUPPORTED_VERSION"
        case .malformedFrame: return "MALFORMED_FRAME"
        case .frameTooLarge: return "FRAME_TOO_LARGE"
        case .unknownOperation: return "UNKNOWN_OPERATION"
        case .handshakeRequired: return "HANDSHAKE_REQUIRED"
        case .invalidName: return "INVALID_NAME"
        case .invalidArgument: return "INVALID_ARGUMENT"
        case .channelExists: return "CHANNEL_EXISTS"
        case .noSuchChannel: return "NO_SUCH_CHANNEL"
        case .notOwner: return "NOT_OWNER"
        case .channelClosed: return "CHANNEL_CLOSED"
        case .noSuchSubscription: return "NO_SUCH_SUBSCRIPTION"
        case .epochMismatch: return "EPOCH_MISMATCH"
        case .positionAhead: return "POSITION_AHEAD"
        case .limitExceeded: return "LIMIT_EXCEEDED"
        case .channelFull: return "CHANNEL_FULL"
        case .unsupported: return "UNSUPPORTED"
        case .shuttingDown: return "SHUTTING_DOWN"
        case .noSuchSession: return "NO_SUCH_SESSION"
        case .badToken: return "BAD_TOKEN"
        case .wrongUser: return "WRONG_USER"
        case .alreadySubscribed: return "ALREADY_SUBSCRIBED"
        case .sessionEnded: return "SESSION_ENDED"
        case .pullNotRequested: return "PULL_NOT_REQUESTED"
        case .upstreamUnreachable: return "UPSTREAM_UNREACHABLE"
        case .loopDetected: return "LOOP_DETECTED"
        case .upstreamVersion: return "UPSTREAM_VERSION"
        case .invalidAddress: return "INVALID_ADDRESS"
        case .quotaExceeded: return "QUOTA_EXCEEDED"
        case .permissionDenied: return "PERMISSION_DENIED"
        case .ownerMismatch: return "OWNER_MISMATCH"
        case .timedOut: return "TIMED_OUT"
        case .outOfOrder: return "OUT_OF_ORDER"
        case .internalError: return "INTERNAL"
        default: return "ERROR_\(rawValue)"
        }
    }

    public var description: String { "\(name) (\(rawValue))" }
}
