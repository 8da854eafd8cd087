import CometState

/// Tickets for ring descriptors (docs/PROTOCOL.md, "Mapped readers"): a mapped subscription is
/// told a ticket in RING_ADVANCED; a new connection of the same user redeems it once (RING) for
/// a read-only descriptor of that ring file. A subscription holds at most one ticket (a newer one
/// replaces it); a ticket stays redeemable after its subscription ended, until its connection
/// closes (at most `orphansPerConnection` such per connection).
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
    /// The position pages of protected readers, counted per user.
    let pages = PositionPages()
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

    /// The file `ticket` stands for and the subscription it was issued to, if it was issued to
    /// `uid` and not redeemed yet (it is then used up).
    mutating func redeem(_ ticket: UInt64, uid: UInt32) -> (file: RingFile, holder: Holder)? {
        guard let found = tickets[ticket], found.uid == uid else { return nil }
        tickets[ticket] = nil
        if byHolder[found.holder] == ticket { byHolder[found.holder] = nil }
        if var kept = orphans[found.holder.connection], let at = kept.firstIndex(of: ticket) {
            kept.remove(at: at)
            orphans[found.holder.connection] = kept.isEmpty ? nil : kept
        }
        return (found.file, found.holder)
    }

    /// Tickets of ended subscriptions, per connection, oldest first.
    private var orphans: [UInt64: [UInt64]] = [:]
    /// At most this many tickets of ended subscriptions stay redeemable per connection.
    static let orphansPerConnection = 16

    /// The subscription is no longer mapped (detached to the socket): its ticket goes.
    mutating func drop(connection: UInt64, subscription: UInt32) {
        guard let ticket = byHolder.removeValue(forKey: Holder(connection: connection, subscription: subscription)) else { return }
        tickets[ticket] = nil
    }

    /// The subscription ended (CLOSED, RESET, FAILED, UNSUBSCRIBE): its ticket stays redeemable
    /// while the connection lives, so that the reader can still read what the last RING_ADVANCED
    /// announced (the ticket may be on its way when the end is sent); the oldest of more than
    /// `orphansPerConnection` go.
    mutating func ended(connection: UInt64, subscription: UInt32) {
        guard let ticket = byHolder.removeValue(forKey: Holder(connection: connection, subscription: subscription)) else { return }
        var kept = orphans[connection, default: []]
        kept.append(ticket)
        if kept.count > Self.orphansPerConnection { tickets[kept.removeFirst()] = nil }
        orphans[connection] = kept
    }

    /// The connection closed: every ticket issued on it goes.
    mutating func dropAll(connection: UInt64) {
        for ticket in orphans.removeValue(forKey: connection) ?? [] { tickets[ticket] = nil }
        for (holder, ticket) in byHolder where holder.connection == connection {
            byHolder[holder] = nil
            tickets[ticket] = nil
        }
    }
}
