import CSystemd
import FoundationEssentials
import Glibc

/// Talks to the service manager through sd_notify(3). Every call is a no-op when
/// `NOTIFY_SOCKET` is unset, so the standalone daemon runs the same code.
struct SystemdNotifier: Sendable {
    func notify(_ state: String) {
        _ = sd_notify(0, state)
    }

    func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }
    func status(_ status: String) { notify("STATUS=\(status)") }
    func stopping() { notify("STOPPING=1\nSTATUS=shutting down") }
    func watchdogPing() { notify("WATCHDOG=1") }

    /// A reload starts (sd_notify(3)): READY=1 ends it.
    func reloading() {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        notify("RELOADING=1\nMONOTONIC_USEC=\(UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000)\nSTATUS=live upgrade")
    }

    /// The interval at which the service manager expects WATCHDOG=1, if it asked for pings.
    var watchdogInterval: Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(usec))
    }
}
