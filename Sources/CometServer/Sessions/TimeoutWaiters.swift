import NIOCore

/// A WAIT_TIMEOUT request waiting for its session to be idle.
struct TimeoutWaiter {
    let id: UInt64
    let session: UInt64
    let connection: UInt64
    let uid: UInt32
    let requestID: UInt32
    /// Nanoseconds of inactivity asked for.
    let timeout: UInt64
    /// The next check.
    var timer: Scheduled<Void>? = nil
}

/// The pending WAIT_TIMEOUTs, by id and by the session each waits on. Confined to the broker's
/// loop; the broker answers them and charges them.
final class TimeoutWaiters: @unchecked Sendable {  // confined to the broker's loop
    private var byID: [UInt64: TimeoutWaiter] = [:]
    private var bySession: [UInt64: Set<UInt64>] = [:]
    private var nextID: UInt64 = 1

    subscript(id: UInt64) -> TimeoutWaiter? { byID[id] }

    /// Every pending waiter's id.
    var ids: [UInt64] { Array(byID.keys) }

    /// A new waiter on `session`.
    func add(session: UInt64, connection: UInt64, uid: UInt32, requestID: UInt32, timeout: UInt64) -> TimeoutWaiter {
        let waiter = TimeoutWaiter(id: nextID, session: session, connection: connection, uid: uid, requestID: requestID, timeout: timeout)
        nextID += 1
        byID[waiter.id] = waiter
        bySession[session, default: []].insert(waiter.id)
        return waiter
    }

    /// The timer of waiter `id`'s next check.
    func setTimer(_ timer: Scheduled<Void>, of id: UInt64) {
        byID[id]?.timer = timer
    }

    /// Forgets waiter `id` and cancels its timer; nil if it was not pending.
    func remove(_ id: UInt64) -> TimeoutWaiter? {
        guard let waiter = byID.removeValue(forKey: id) else { return nil }
        waiter.timer?.cancel()
        bySession[waiter.session]?.remove(id)
        if bySession[waiter.session]?.isEmpty == true { bySession[waiter.session] = nil }
        return waiter
    }

    /// The ids of the waiters on `session`.
    func waiting(on session: UInt64) -> Set<UInt64> { bySession[session] ?? [] }
}
