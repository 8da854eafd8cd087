#if canImport(Glibc)
import Glibc
#endif

/// Finds the descriptor behind a connection's socket, to pass a ring's descriptor on it (RING):
/// the first lookup looks at every open descriptor (SO_COOKIE); later ones skip the descriptors
/// already known to be other sockets, so a new connection costs a look at the new descriptors,
/// not at every connection's. An entry goes when its connection closes (its number may be
/// reused); a known descriptor whose socket changed anyway is found by a full look again.
final class SocketDescriptors {
    private var byCookie: [UInt64: Int32] = [:]
    /// More entries than this (sockets that closed without a connection to say so): start over.
    private let bound = 1 << 16

    /// The descriptor of this process whose socket has `cookie`, if any.
    func descriptor(for cookie: UInt64) -> Int32? {
        if let fd = byCookie[cookie] {
            if SocketCookies.cookie(ofDescriptor: fd) == cookie { return fd }
            byCookie[cookie] = nil
        }
        if byCookie.count > bound { byCookie = [:] }
        let known = Set(byCookie.values)
        var found: Int32?
        SocketCookies.forEachSocket(skipping: known) { fd, other in
            byCookie[other] = fd
            if other == cookie { found = fd }
            return found == nil
        }
        if found == nil {
            // A known number may have been closed and reused by this socket: look at every one.
            byCookie = SocketCookies.descriptorsByCookie()
            found = byCookie[cookie]
        }
        return found
    }

    /// The connection whose socket has `cookie` closed: its descriptor number may be reused.
    func forget(_ cookie: UInt64) { byCookie[cookie] = nil }
}
