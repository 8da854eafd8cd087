import CometState

/// Tickets for ring descriptors (docs/PROTOCOL.md, "Mapped readers"): a mapped subscription is
/// told a ticket in RING_ADVANCED; a new connection of the same user redeems it once (RING) for
/// a read-only descriptor of that ring file. A subscription holds at most one ticket (a newer one
/// replaces it); a ticket stays redeemable after its subscription ended (at most
/// `orphansPerConnection` such per connection), and for `lingering` after its connection closed
/// (at most `lingeringMost` such in all), so that a reader whose connection the daemon closed
/// (it half-closed its own) can still read what the last RING_ADVANCED announced.
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
    /// `uid` and not redeemed yet (it is then used up), nor left to linger longer than `lingering`.
    mutating func redeem(_ ticket: UInt64, uid: UInt32, now: UInt64) -> (file: RingFile, holder: Holder)? {
        forgetLingering(before: now)
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

    /// Tickets of closed connections, oldest first, with when they stop being redeemable.
    private var lingeringTickets: [(ticket: UInt64, until: UInt64)] = []
    private var lingeringStart = 0
    /// How long a closed connection's tickets stay redeemable (ns), and how many may at once.
    static let lingering: UInt64 = 10_000_000_000
    static let lingeringMost = 1024

    /// The connection closed at `now`: its tickets (its subscriptions ended first) stay
    /// redeemable for `lingering`, the oldest of more than `lingeringMost` going at once.
    mutating func closed(connection: UInt64, at now: UInt64) {
        forgetLingering(before: now)
        var kept = orphans.removeValue(forKey: connection) ?? []
        for (holder, ticket) in byHolder where holder.connection == connection {
            byHolder[holder] = nil
            kept.append(ticket)
        }
        for ticket in kept { lingeringTickets.append((ticket, now &+ Self.lingering)) }
        while lingeringTickets.count - lingeringStart > Self.lingeringMost {
            tickets[lingeringTickets[lingeringStart].ticket] = nil
            lingeringStart += 1
        }
        compactLingering()
    }

    /// Tickets that lingered past their time go.
    private mutating func forgetLingering(before now: UInt64) {
        while lingeringStart < lingeringTickets.count, lingeringTickets[lingeringStart].until <= now {
            tickets[lingeringTickets[lingeringStart].ticket] = nil
            lingeringStart += 1
        }
        compactLingering()
    }

    private mutating func compactLingering() {
        if lingeringStart == lingeringTickets.count {
            lingeringTickets.removeAll(keepingCapacity: false)
            lingeringStart = 0
        } else if lingeringStart > 256, lingeringStart * 2 > lingeringTickets.count {
            lingeringTickets.removeFirst(lingeringStart)
            lingeringStart = 0
        }
    }
}
