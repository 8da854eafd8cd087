/// How a connection stands against its user's connection quota (docs/PROTOCOL.md §5).
enum Admission {
    /// Not charged: not admitted yet, refused (being closed), or carried over uncharged.
    case pending
    /// Charged to its user's connection quota.
    case counted
    /// Over the quota, let in for one RING only (§6.23): a mapped reader's ring does not depend
    /// on its user having a connection to spare. Any other first request is refused with
    /// QUOTA_EXCEEDED and `refusal`.
    case ringOnly(refusal: String)
}

/// Connections let in over their user's connection quota for one RING each: at most `perUser`
/// at once per user, so that the quota still bounds what a user holds. Confined to the
/// broker's loop.
final class OverQuotaRings: @unchecked Sendable {  // confined to the broker's loop
    static let perUser = 4

    private var held: [UInt32: Int] = [:]

    /// Takes one of `uid`'s places; false when it holds `perUser` already.
    func admit(uid: UInt32) -> Bool {
        let now = held[uid] ?? 0
        guard now < Self.perUser else { return false }
        held[uid] = now + 1
        return true
    }

    /// Gives a place of `uid` back (its connection closed).
    func release(uid: UInt32) {
        guard let now = held[uid] else { return }
        held[uid] = now > 1 ? now - 1 : nil
    }
}
