#if canImport(Glibc)
import Glibc
#endif

/// Where the daemon kills itself with SIGKILL, for tests that must crash it at an exact point of
/// a push (`cometd --crash-at`, hidden): `stored:N`, once message N of any site channel is in its
/// ring file but the rest of its batch is not (mid-batch); `applied:N`, once the push holding
/// message N is applied and stored but before its answer is written.
public enum CrashPoint: Hashable, Sendable {
    case stored(UInt64)
    case applied(UInt64)

    /// Parses `stored:N` or `applied:N`.
    public init?(_ text: String) {
        let parts = text.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, let n = UInt64(parts[1]), n > 0 else { return nil }
        switch parts[0] {
        case "stored": self = .stored(n)
        case "applied": self = .applied(n)
        default: return nil
        }
    }

    /// Dies now: no handler runs, nothing more is written (as kill -9 from outside).
    func crash() -> Never {
        kill(getpid(), SIGKILL)
        while true { pause() }
    }
}
