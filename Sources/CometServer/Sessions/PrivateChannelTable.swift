import CometChannels
import CometState
import NIOCore

/// Client-process channels by handle (handles with the top bit set: never a site channel's),
/// never reused while the daemon runs nor across restarts that keep them. Confined to the
/// broker's loop.
final class PrivateChannelTable: @unchecked Sendable {  // confined to the broker's loop
    private var byHandle: [UInt64: PrivateChannel<ByteRing>] = [:]
    /// The number part of the next handle.
    private(set) var nextNumber: UInt64 = 1

    subscript(handle: UInt64) -> PrivateChannel<ByteRing>? { byHandle[handle] }

    var values: Dictionary<UInt64, PrivateChannel<ByteRing>>.Values { byHandle.values }
    var count: Int { byHandle.count }

    /// The handle the next private channel gets.
    func nextHandle() -> UInt64 {
        defer { nextNumber += 1 }
        return (1 << 63) | nextNumber
    }

    func insert(_ channel: PrivateChannel<ByteRing>) { byHandle[channel.id] = channel }

    /// Forgets a channel; false if it was not known.
    func remove(_ channel: PrivateChannel<ByteRing>) -> Bool { byHandle.removeValue(forKey: channel.id) != nil }

    /// After a restart: new handles go on after the previous process's.
    func continueNumbering(after next: UInt64) { nextNumber = max(nextNumber, next) }
}
