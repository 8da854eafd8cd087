import CometChannels
import NIOCore

/// Every connection the broker knows, by id, and the counts STATS reports. Ids are never reused
/// while the daemon runs, nor across a live upgrade (`continueNumbering(after:)`). Confined to
/// the broker's loop.
final class ConnectionTable: @unchecked Sendable {  // confined to the broker's loop
    private var byID: [UInt64: ConnectionState] = [:]
    private(set) var nextID: UInt64 = 1
    /// Connections opened (and carried over) since the daemon started.
    private(set) var opened: UInt64 = 0
    /// Connections refused at once (over a quota or limit).
    private(set) var refused: UInt64 = 0

    subscript(id: UInt64) -> ConnectionState? { byID[id] }

    var values: Dictionary<UInt64, ConnectionState>.Values { byID.values }
    var count: Int { byID.count }
    var isEmpty: Bool { byID.isEmpty }

    /// A new connection, with the next id.
    func open(context: ChannelHandlerContext, identity: Identity, now: UInt64) -> ConnectionState {
        let conn = ConnectionState(id: nextID, context: context, now: now)
        nextID += 1
        conn.identity = identity
        insert(conn)
        return conn
    }

    /// A connection carried over a restart, with the id it had.
    func insert(_ conn: ConnectionState) {
        byID[conn.id] = conn
        opened += 1
    }

    /// Forgets a connection; false if it was not known.
    func remove(_ conn: ConnectionState) -> Bool {
        // Only the connection itself: another under the same id is not this one's to end.
        guard byID[conn.id] === conn else { return false }
        byID[conn.id] = nil
        return true
    }

    /// A connection was refused at once.
    func countRefusal() { refused += 1 }

    /// After a live upgrade: new ids go on after the previous process's.
    func continueNumbering(after next: UInt64) { nextID = max(nextID, next) }
}
