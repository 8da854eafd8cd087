import Logging
import NIOCore

/// Rate-limits log lines by kind: up to `burst` lines of one kind per `interval`, then the rest are
/// counted and reported as one "N similar messages suppressed" line when the kind may log again.
struct LogLimiter {
    private struct Window {
        var start: NIODeadline
        var logged = 0
        var suppressed = 0
    }

    let burst: Int
    let interval: TimeAmount
    private var windows: [String: Window] = [:]

    init(burst: Int, interval: TimeAmount) {
        self.burst = burst
        self.interval = interval
    }

    /// Logs `message` unless `kind` has used its burst in the current window.
    mutating func log(
        _ logger: Logger, _ level: Logger.Level, kind: String, _ message: @autoclosure () -> Logger.Message,
        metadata: @autoclosure () -> Logger.Metadata = [:], now: NIODeadline = .now()
    ) {
        guard logger.logLevel <= level else { return }
        var window = windows[kind] ?? Window(start: now)
        if now - window.start >= interval {
            if window.suppressed > 0 {
                logger.log(level: level, "\(window.suppressed) similar messages suppressed", metadata: ["kind": "\(kind)"])
            }
            window = Window(start: now)
        }
        if window.logged < burst {
            window.logged += 1
            logger.log(level: level, message(), metadata: metadata())
        } else {
            window.suppressed += 1
        }
        windows[kind] = window
    }

    /// Reports the suppressed counts of windows that have ended (called periodically).
    mutating func flush(_ logger: Logger, level: Logger.Level = .notice, now: NIODeadline = .now()) {
        for (kind, window) in windows where now - window.start >= interval {
            if window.suppressed > 0 {
                logger.log(level: level, "\(window.suppressed) similar messages suppressed", metadata: ["kind": "\(kind)"])
            }
            windows[kind] = nil
        }
    }
}
