import CometChannels
import CometState
import NIOCore

/// While a previous process's state is being put back (docs/RESTARTS.md): its site channels by
/// handle until every subscription found its channel, the connections whose sockets are not
/// adopted yet, and the storage files to forget once fresh ones are written. Confined to the
/// broker's loop; empty outside a restore.
final class RestoreProgress: @unchecked Sendable {  // confined to the broker's loop
    private(set) var sites: [UInt64: SiteChannel<ByteRing>] = [:]
    private(set) var waiting: [UInt64: ConnectionImage] = [:]
    private var namesToForget: [String] = []

    /// A restore begins with these connections to adopt and these storage names to forget later.
    func begin(connections: [ConnectionImage], storedNames: [String]) {
        for saved in connections { waiting[saved.id] = saved }
        namesToForget = storedNames
    }

    func restored(_ channel: SiteChannel<ByteRing>) { sites[channel.id] = channel }

    /// The connection `id`'s socket is back.
    func adopted(_ id: UInt64) { waiting[id] = nil }

    /// The restore is over: the connections that never came back, the channels restored (to
    /// release those closed and drained), the storage names to forget.
    func finish() -> (missing: [UInt64: ConnectionImage], sites: [SiteChannel<ByteRing>], forget: [String]) {
        defer {
            waiting = [:]
            sites = [:]
            namesToForget = []
        }
        return (waiting, Array(sites.values), namesToForget)
    }
}
