import CometState

/// How many position pages (docs/PROTOCOL.md §6.23) each user's protected mapped readers hold:
/// at most `perUser` at once (4 KiB of shared memory each, no descriptor), so that no user can
/// make the daemon hold unbounded memory by subscribing again and again; a reader beyond that
/// reports with ACK when RING_ADVANCED asks (REPORT) instead. Confined to the broker's loop.
final class PositionPages: @unchecked Sendable {  // confined to the broker's loop
    /// Pages one user's readers may hold at once.
    static let perUser = 1024

    private var held: [UInt32: Int] = [:]

    /// Pages held now (for tests and STATS).
    func count(uid: UInt32) -> Int { held[uid] ?? 0 }

    /// A new page for a reader of `uid` starting at `start`, and its descriptor (hand it over,
    /// then close it); nil when the user holds `perUser` already or the system refuses.
    func make(uid: UInt32, start: UInt64) -> (PositionPage, Int32)? {
        guard count(uid: uid) < Self.perUser else { return nil }
        guard let made = try? PositionPage.create(start: start, released: { [weak self] in self?.release(uid) }) else { return nil }
        held[uid, default: 0] += 1
        return made
    }

    private func release(_ uid: UInt32) {
        guard let n = held[uid] else { return }
        held[uid] = n > 1 ? n - 1 : nil
    }
}
