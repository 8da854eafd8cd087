/// Daemon-wide limits and what one user may take of them.
///
/// Every resource has a daemon-wide total and a per-user quota; by default the per-user quota is
/// a quarter of the total (`userShare`), so that no single non-root user can take more than that
/// of anything. Root (uid 0) is held only to the totals. `memoryCeiling` bounds the estimated
/// memory of everything together: past it the daemon refuses new work instead of growing.
public struct Quotas: Sendable, Equatable {
    /// Daemon-wide limit per resource.
    public var total: [Resource: Int]
    /// Per-user limit per resource.
    public var perUser: [Resource: Int]
    /// Estimated bytes all resources together may take.
    public var memoryCeiling: Int

    /// Fraction of each total that one non-root user may take.
    public static let userShare = 4

    /// Defaults for a daemon that may use `memoryCeiling` bytes and hold `maxConnections`
    /// connections (from its file-descriptor limit).
    public init(memoryCeiling: Int, maxConnections: Int) {
        let ceiling = max(memoryCeiling, 16 << 20)
        self.memoryCeiling = ceiling
        total = [
            .connections: max(maxConnections, 4),
            .channels: 65_536,
            .subscriptions: 1 << 20,
            .sessions: 65_536,
            .timeoutWaits: 16_384,
            .bufferedBytes: ceiling,
            .queuedOutputBytes: ceiling / 2,
            .unfinishedFrameBytes: ceiling / 4,
        ]
        perUser = total.mapValues { max(1, $0 / Quotas.userShare) }
    }

    public func total(_ resource: Resource) -> Int { total[resource] ?? Int.max }
    public func perUser(_ resource: Resource) -> Int { perUser[resource] ?? Int.max }
}
