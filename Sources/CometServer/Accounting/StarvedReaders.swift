/// Connections whose delivery waits for their user's queued output to go under its quota, by
/// uid. The one place that sets and clears `ConnectionState.starved`. Confined to the broker's
/// loop.
final class StarvedReaders: @unchecked Sendable {  // confined to the broker's loop
    private var byUser: [UInt32: Set<UInt64>] = [:]

    /// `conn` waits for its user's output; true when it just began to.
    func starve(_ conn: ConnectionState) -> Bool {
        guard !conn.starved else { return false }
        conn.starved = true
        byUser[conn.uid, default: []].insert(conn.id)
        return true
    }

    /// The connections of `uid` that waited, no longer waiting (looked up in `connections`).
    func wake(uid: UInt32, in connections: ConnectionTable) -> [ConnectionState] {
        guard let ids = byUser.removeValue(forKey: uid) else { return [] }
        return ids.compactMap { id in
            guard let conn = connections[id] else { return nil }
            conn.starved = false
            return conn
        }
    }

    /// Whether any connection of `uid` waits.
    func hasWaiting(uid: UInt32) -> Bool { byUser[uid] != nil }

    /// `conn` is gone.
    func forget(_ conn: ConnectionState) {
        guard conn.starved else { return }
        byUser[conn.uid]?.remove(conn.id)
        if byUser[conn.uid]?.isEmpty == true { byUser[conn.uid] = nil }
    }
}
