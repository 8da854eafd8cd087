import CometChannels
import CometState

/// A mapped reader detached to the socket that asked (SUBSCRIBE `RETURN`) to be given its ring
/// back (docs/PROTOCOL.md §6.23, "Return to the ring"). It returns at a delivery pass once it has
/// caught up: nothing of its connection waits to be written, at most half the ring lies between
/// it and the newest message, and it has been off the ring for its back-off. The back-off
/// doubles with each detach that follows a return within `settled` (10 ms up to about 5 s), so
/// that a reader too slow for its ring does not flap between the two paths.
struct RingReturn {
    /// Detaches in a row, each after less than `settled` back on the ring.
    let detaches: Int
    /// When it was last detached (loop uptime, ns).
    let detachedAt: UInt64

    static let firstBackOff: UInt64 = 10_000_000
    static let longestBackOffShift = 9
    /// Back on its ring this long, a reader starts its count of detaches again.
    static let settled: UInt64 = 60_000_000_000

    /// The reader left its ring at `now`, having been back on it since `attachedAt` after
    /// `before` detaches in a row.
    init(detachedAt now: UInt64, attachedAt: UInt64, before: Int) {
        detaches = now &- attachedAt >= Self.settled ? 1 : before + 1
        detachedAt = now
    }

    var backOff: UInt64 { Self.firstBackOff << UInt64(min(max(detaches - 1, 0), Self.longestBackOffShift)) }

    /// Whether a reader whose next message is `cursor`, whose connection has `unwritten` bytes
    /// waiting for its socket, goes back to `channel`'s ring at `now`.
    func isDue(now: UInt64, cursor: UInt64, unwritten: Int, of channel: SiteChannel<ByteRing>) -> Bool {
        guard unwritten == 0, now &- detachedAt >= backOff, !channel.keepsNewestOnly, cursor >= channel.ring.firstSequence else {
            return false
        }
        return channel.room(above: cursor) >= max(1, channel.size / 2)
    }
}
