import CometChannels
import CometState
import CometWire
import NIOCore

/// An import: a local name whose messages another daemon's channel supplies, with that
/// channel's own sequence numbers and epoch, fed by a connection (comet-bridge) through MIRROR,
/// MIRROR_PUSH and MIRROR_STATE (docs/FEDERATION.md). Readers subscribe to the name as to any
/// site channel.
///
/// The feed outlives its feeder: when the bridge goes, readers keep what the mirror holds and
/// wait; past `ServerConfiguration.mirrorOrphanGrace` without a feeder the mirror is stalled
/// (readers are told, never left waiting silently). Confined to the broker's loop.
final class MirrorFeed: @unchecked Sendable {
    /// Where the feed stands with its origin.
    enum Phase: Equatable {
        /// The feeder is reading what its origin holds: SUBSCRIBE requests wait for the end.
        case catchingUp
        /// What the origin held is here; new messages come as they are made.
        case live
        /// The origin cannot be reached (or nothing feeds the mirror): readers that have every
        /// message get FAILED `UPSTREAM_UNREACHABLE` with this reason. `caughtUp`: whether the
        /// mirror had what its origin held when it stalled (a message then makes it live again;
        /// otherwise the feeder goes on catching up).
        case stalled(String, caughtUp: Bool)

        /// Whether the mirror holds what its origin held: readers waiting for the name may start.
        var isCaughtUp: Bool {
            switch self {
            case .catchingUp: return false
            case .live: return true
            case .stalled(_, let caughtUp): return caughtUp
            }
        }
    }

    let name: String
    /// The handle MIRROR_PUSH and MIRROR_STATE name: one per name, for the daemon's lifetime.
    let handle: UInt64
    private(set) var phase: Phase = .catchingUp
    /// The connection feeding the mirror, if any.
    private(set) var feeder: UInt64?
    /// The ring the feeder asked for, and whether only the newest message is kept.
    var size = 1
    var newest = false
    /// Who declared it last (LIST shows it before a channel exists).
    var declaredBy = Owner.unknown
    /// The mirror of the current epoch; nil until the feeder names an epoch.
    var channel: SiteChannel<ByteRing>?
    /// SUBSCRIBE requests that came while catching up, answered when that ends.
    private var parked: [() -> Void] = []
    /// The timer that stalls the mirror when its feeder left and none came back.
    private var orphanTimer: Scheduled<Void>?

    init(name: String, handle: UInt64) {
        self.name = name
        self.handle = handle
    }

    /// `connection` feeds the mirror from now on.
    func attach(_ connection: UInt64) {
        feeder = connection
        orphanTimer?.cancel()
        orphanTimer = nil
    }

    /// The feeder left; `stall` runs after `grace` unless another feeder comes first.
    func detach(after grace: TimeAmount, on loop: EventLoop, stall: @escaping @Sendable () -> Void) {
        feeder = nil
        orphanTimer?.cancel()
        orphanTimer = loop.scheduleTask(in: grace) { [weak self] in
            guard let self, self.feeder == nil else { return }
            stall()
        }
    }

    /// Ends the feed (daemon shutdown).
    func cancel() {
        orphanTimer?.cancel()
        orphanTimer = nil
        feeder = nil
    }

    /// Runs `request` once catching up ends.
    func park(_ request: @escaping () -> Void) { parked.append(request) }

    /// The phase a stall for `reason` brings: it remembers whether the mirror had caught up.
    func stall(_ reason: String) -> Phase { .stalled(reason, caughtUp: phase.isCaughtUp) }

    /// The phase a message from the origin ends a stall with: live if the mirror had caught up,
    /// else catching up again (until the feeder says it has read what its origin holds).
    var afterStall: Phase { phase.isCaughtUp ? .live : .catchingUp }

    /// Moves to `phase`; returns the requests parked while catching up, to answer now.
    func enter(_ phase: Phase) -> [() -> Void] {
        self.phase = phase
        channel?.stalled = { if case .stalled(let reason, _) = phase { return reason } else { return nil } }()
        guard phase != .catchingUp else { return [] }
        defer { parked = [] }
        return parked
    }
}
