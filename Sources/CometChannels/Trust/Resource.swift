/// Something the daemon spends on behalf of a user, counted per uid and in total.
///
/// Counts (`connections` … `timeoutWaits`) are numbers of objects; the `…Bytes` resources are
/// bytes of memory. docs/SECURITY.md lists each one with its default quota.
public enum Resource: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// Open connections.
    case connections
    /// Live channels created (site and private).
    case channels
    /// Subscriptions, waiting ones included.
    case subscriptions
    /// Sessions, including those in their grace period.
    case sessions
    /// Pending WAIT_TIMEOUT requests.
    case timeoutWaits
    /// Messages buffered in rings: payload bytes plus a fixed overhead per message.
    case bufferedBytes
    /// Bytes written for a connection and not yet taken by its socket.
    case queuedOutputBytes
    /// Bytes of frames received in part and not yet complete.
    case unfinishedFrameBytes

    /// The name used in refusals, logs and docs.
    public var description: String {
        switch self {
        case .connections: return "connections"
        case .channels: return "channels"
        case .subscriptions: return "subscriptions"
        case .sessions: return "sessions"
        case .timeoutWaits: return "pending WAIT_TIMEOUTs"
        case .bufferedBytes: return "buffered message bytes"
        case .queuedOutputBytes: return "queued output bytes"
        case .unfinishedFrameBytes: return "unfinished frame bytes"
        }
    }

    /// Whether the resource is measured in bytes (and counts fully toward the memory ceiling).
    public var isBytes: Bool { rawValue >= Resource.bufferedBytes.rawValue }

    /// Memory one object of a counted resource is estimated to take, for the memory ceiling.
    /// Measured on the release daemon (RSS growth divided by objects), rounded up.
    public var estimatedBytesPerObject: Int {
        switch self {
        case .connections: return 8192
        case .channels: return 1024
        case .subscriptions: return 512
        case .sessions: return 512
        case .timeoutWaits: return 256
        case .bufferedBytes, .queuedOutputBytes, .unfinishedFrameBytes: return 1
        }
    }
}
