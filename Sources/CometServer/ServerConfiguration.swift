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
    /// Bytes a reader's connection may have queued (outbox and what its socket has not taken)
    /// when the daemon hands it messages that a push is about to evict from a ring. A reader whose
    /// queue is at this bound when its next message is evicted gets FULL.
    /// At least twice `outboundHighWatermark`, so that a reader at the bound is not writable and
    /// its draining (writability) resumes a producer that waits for it.
    public var readerQueueBound = 1024 * 1024
    /// Bytes one hand-over pass copies at most (over all readers of the channel).
    public var handOverBudget = 8 * 1024 * 1024
    /// How long a producer's push waits for a reader whose queue is full before it evicts what
    /// that reader has not taken (the reader then gets FULL).
    public var readerGrace: TimeAmount = .seconds(1)
    /// A protected mapped reader holds its producer (for up to `readerGrace`) only on a ring that
    /// keeps at least this many messages; on a smaller ring it is detached at once and served over
    /// the socket, whose queue absorbs a burst the ring cannot (measured: below ~4096 messages a
    /// producer waiting on its mapped reader is slower than the same reader on the socket).
    public var mappedHoldMinimumRing = 4096
    /// Bytes copied for one connection before the daemon turns to other work.
    public var deliveryBudget = 128 * 1024
    /// Bytes one delivery pass writes over all connections before the loop turns to other work.
    public var deliveryPassBudget = 2 * 1024 * 1024
    /// Where to kill the process, for crash tests (`CrashPoint`); nil in production.
    public var crashPoint: CrashPoint?
    /// Requests handled for one connection before the daemon turns to other connections.
    public var requestsPerTurn = 256

    /// How long a session outlives its last connection; a client that resumes within it loses nothing.
    public var sessionGrace: TimeAmount = .seconds(30)

    /// Per-user quotas, daemon-wide limits and the memory ceiling (docs/SECURITY.md).
    public var quotas = Quotas(memoryCeiling: 1 << 30, maxConnections: 4096)
    /// Who may create, subscribe, address sessions and relay (docs/POLICY.md). Replaceable at run time.
    public var policy = Policy()
    /// A connection must complete HELLO within this time, or it is closed with TIMED_OUT.
    public var handshakeTimeout: TimeAmount = .seconds(5)
    /// A connection that holds nothing (no channel, subscription, pending wait or private channel
    /// of its session) and sends nothing for this long is closed with TIMED_OUT.
    public var idleTimeout: TimeAmount = .seconds(300)
    /// On shutdown, how long readers get to receive what is buffered before the daemon closes.
    public var shutdownDrain: TimeAmount = .seconds(5)
    /// The longest WAIT_TIMEOUT accepted, in milliseconds (longer ones are refused).
    public var maxWaitTimeoutMilliseconds: UInt64 = UInt64(UInt32.max)
    /// Memory a buffered message costs beyond its payload (slot, buffer header), for accounting.
    public var messageOverhead = 48
    /// Lines of one kind logged per `logInterval` before they are counted and summarised instead.
    public var logBurst = 10
    public var logInterval: TimeAmount = .seconds(10)

    /// How long an import (MIRROR) may go without a feeder before its readers are told it is
    /// stalled (docs/FEDERATION.md).
    public var mirrorOrphanGrace: TimeAmount = .seconds(10)
    /// Most imports (MIRROR names) the daemon holds.
    public var maxMirrors = 1024

    public init() {}
}
