import CometChannels
import CometWire
import NIOCore

/// Limits and tuning of a `CometServer`. Every bound the daemon enforces is here.
public struct ServerConfiguration: Sendable {
    /// Largest frame body accepted and sent; advertised in the HELLO reply.
    public var maxFrameSize: UInt32 = CometProtocol.defaultMaxFrameSize
    /// Channel sizes and counts.
    public var registry = RegistryLimits()
    /// Most channels one connection may own.
    public var maxChannelsPerConnection = 4096
    /// Most subscriptions (waiting ones included) one connection may hold.
    public var maxSubscriptionsPerConnection = 4096
    /// Bytes queued for a connection's socket above which the daemon stops copying messages to it.
    /// This is what bounds the output of a slow reader: its subscriptions wait in the ring instead.
    public var outboundHighWatermark = 256 * 1024
    /// Bytes below which copying resumes.
    public var outboundLowWatermark = 64 * 1024
    /// Bytes copied for one connection before the daemon turns to other work.
    public var deliveryBudget = 128 * 1024

    /// How long a session outlives its last connection; a client that resumes within it loses nothing.
    public var sessionGrace: TimeAmount = .seconds(30)

    public init() {}
}
