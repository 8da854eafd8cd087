import CometWire

// The protocol's value types a program using `Comet` meets, named here so that `import Comet` is
// all it needs. The codec itself (frames, requests, decoders) is not part of this library's API.

/// Where a subscription starts (SEMANTICS.md, "Positions").
public typealias SubscribePosition = CometWire.SubscribePosition
/// Who created a channel: uid and gid of its producer.
public typealias Owner = CometWire.Owner
/// The daemon's error codes (PROTOCOL.md, section 8), as `CometError.code`.
public typealias ErrorCode = CometWire.ErrorCode
/// A channel as `CometClient.channels()` lists it.
public typealias ChannelInfo = CometWire.ChannelInfo
/// A session as `CometClient.sessions()` lists it.
public typealias SessionInfo = CometWire.SessionInfo
/// Buffered, newest, private or unlimited.
public typealias ChannelKind = CometWire.ChannelKind
/// What the daemon said in the handshake (`CometClient.server`).
public typealias HelloReply = CometWire.HelloReply
/// The daemon's totals, per-channel counters and per-user usage (`CometClient.stats()`).
public typealias StatsReply = CometWire.StatsReply
/// One channel's counters in `StatsReply`.
public typealias ChannelStats = CometWire.ChannelStats
/// One user's usage in `StatsReply`.
public typealias UserUsage = CometWire.UserUsage
/// One resource of a user: used and quota.
public typealias ResourceUsage = CometWire.ResourceUsage
/// One channel mirrored to NATS JetStream, in `StatsReply.exports`.
public typealias ExportCounters = CometWire.ExportCounters
/// One import (another daemon's channel a bridge feeds), in `StatsReply.imports`.
public typealias ImportCounters = CometWire.ImportCounters
/// What a bridge reports for STATS (`CometClient.report(_:)`).
public typealias BridgeReport = CometWire.BridgeReport
/// What an import's origin is doing (`CometClient.mirrorState(_:_:last:reason:)`).
public typealias MirrorState = CometWire.MirrorState
/// The answer to MIRROR (`CometClient.mirror(_:epoch:next:size:newest:)`).
public typealias MirrorReply = CometWire.MirrorReply
