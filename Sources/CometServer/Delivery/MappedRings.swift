import CometState

/// Tickets for ring descriptors (docs/PROTOCOL.md, "Mapped readers"): a mapped subscription is
/// told a ticket in RING_ADVANCED; a new connection of the same user redeems it once (RING) for
/// a read-only descriptor of that ring file. A subscription holds at most one ticket (a newer one
/// replaces it); its tickets go when it ends.
struct MappedRings {
    struct Holder: Hashable {
        let connection: UInt64
        let subscription: UInt32
    }

    private struct Ticket {
        let file: RingFile
        let uid: UInt32
        let holder: Holder
    }

    private var tickets: [UInt64: Ticket] = [:]
    private var byHolder: [Holder: UInt64] = [:]

    /// Tickets not yet redeemed.
    var count: Int { tickets.count }

    /// A ticket for `file`, redeemable by `uid`, replacing the subscription's previous one.
    mutating func issue(_ file: RingFile, uid: UInt32, connection: UInt64, subscription: UInt32) -> UInt64 {
        let holder = Holder(connection: connection, subscription: subscription)
        if let old = byHolder[holder] { tickets[old] = nil }
        var ticket: UInt64 = 0
        while ticket == 0 || tickets[ticket] != nil { ticket = UInt64.random(in: 1...UInt64.max) }
        tickets[ticket] = Ticket(file: file, uid: uid, holder: holder)
        byHolder[holder] = ticket
        return ticket
    }

    /// The file `ticket` stands for, if it was issued to `uid` and not redeemed yet (it is then used up).
    mutating func redeem(_ ticket: UInt64, uid: UInt32) -> RingFile? {
        guard let found = tickets[ticket], found.uid == uid else { return nil }
        tickets[ticket] = nil
        byHolder[found.holder] = nil
        return found.file
    }

    /// The subscription ended: its ticket goes.
    mutating func drop(connection: UInt64, subscription: UInt32) {
        guard let ticket = byHolder.removeValue(forKey: Holder(connection: connection, subscription: subscription)) else { return }
        tickets[ticket] = nil
    }
}
