/// The connections that have something to write, in the order they became so, and whether a
/// delivery pass is scheduled for them; the bytes passes have handed to sockets (a pass measures
/// its share with it). Confined to the broker's loop.
final class DeliveryQueue: @unchecked Sendable {  // confined to the broker's loop
    private var queued: [ConnectionState] = []
    private var scheduled = false
    /// Whether a pass is running (what it queues waits for the next turn of the loop).
    private(set) var inPass = false
    /// Bytes handed to sockets so far.
    private(set) var bytesWritten = 0

    /// Queues `conn` for the next pass; true when a pass must be scheduled for it.
    func enqueue(_ conn: ConnectionState) -> Bool {
        guard !conn.isDirty, !conn.isClosing else { return false }
        conn.isDirty = true
        queued.append(conn)
        guard !scheduled else { return false }
        scheduled = true
        return true
    }

    /// Starts a pass: the connections queued until now (those queued during the pass wait for
    /// the next one).
    func beginPass() -> [ConnectionState] {
        scheduled = false
        inPass = true
        defer { queued = [] }
        return queued
    }

    /// Puts back the connections a pass had no budget left for (still marked queued), ahead of
    /// any queued meanwhile; true when a pass must be scheduled for them.
    func requeue(_ rest: ArraySlice<ConnectionState>) -> Bool {
        queued = Array(rest) + queued
        guard !scheduled else { return false }
        scheduled = true
        return true
    }

    /// The pass is over.
    func endPass() { inPass = false }

    /// `conn` is served by the current pass.
    func serving(_ conn: ConnectionState) { conn.isDirty = false }

    /// Counts bytes handed to a socket.
    func wrote(_ bytes: Int) { bytesWritten &+= bytes }
}
