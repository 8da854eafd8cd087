import CometWire
import NIOCore

/// Feeding imports (docs/FEDERATION.md): what comet-bridge does with another daemon's channel
/// read from NATS JetStream. Only principals the daemon's policy names (`mirror` rules) and
/// root may; a reader never needs this.
extension CometClient {
    /// Whether the daemon serves MIRROR, MIRROR_PUSH and MIRROR_STATE (comet 0.7 and later).
    public var servesMirrors: Bool { server.servesMirrors }

    /// MIRROR: this connection feeds the import `name`, whose origin is in `epoch` (0 when not
    /// known yet: the import is only declared) with `next` as its first message.
    /// - Returns: the mirror's handle and the last sequence it holds of `epoch` (0: none); feed
    ///   it from the message after.
    /// - Throws: `CometError` with `.permissionDenied`, `.channelExists`, `.invalidArgument`,
    ///   `.limitExceeded`.
    public func mirror(_ name: String, epoch: UInt64, next: UInt64 = 1, size: Int, newest: Bool = false) async throws -> MirrorReply {
        try await request(.mirror(name: name, epoch: epoch, next: max(1, next), size: UInt32(clamping: size), newest: newest)) {
            try MirrorReply(from: &$0)
        }
    }

    /// MIRROR_PUSH of messages numbered from `first` by their origin, sent at once (requests go
    /// in the order of the calls); the future completes when the daemon applied them.
    public func mirrorPush(_ mirror: UInt64, first: UInt64, _ payloads: [ByteBuffer]) -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        send(.mirrorPush(mirror: mirror, first: first, payloads: MessageBatch(payloads)), promise: promise) { _ in () }
        return promise.futureResult
    }

    /// BRIDGE_REPORT: a bridge's counters, which STATS then shows (root and users a `mirror`
    /// rule names only).
    public func report(_ report: BridgeReport) async throws {
        try await request(.bridgeReport(report)) { _ in () }
    }

    /// MIRROR_STATE: the origin is live, stalled (with the reason readers are told), or its
    /// epoch closed after `last`.
    public func mirrorState(_ mirror: UInt64, _ state: MirrorState, last: UInt64 = 0, reason: String = "") -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        send(.mirrorState(mirror: mirror, state: state, last: last, reason: reason), promise: promise) { _ in () }
        return promise.futureResult
    }
}
