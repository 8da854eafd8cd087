import CometChannels
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The kernel's `struct ucred` (pid, uid, gid), as SO_PEERCRED fills it in.
struct PeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = UInt32.max
    var gid: UInt32 = UInt32.max

    /// SO_PEERCRED from <asm-generic/socket.h>.
    static let option: Int32 = 17

    /// The credentials of the process at the other end of `channel`'s Unix socket. On the
    /// channel's event loop the answer is there at once.
    static func of(_ channel: Channel) -> EventLoopFuture<PeerCredentials> {
        guard let provider = channel as? SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(PeerCredentials())
        }
        return provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(option))
    }

    var identity: Identity { Identity(pid: pid, uid: uid, gid: gid) }
}

/// Supplementary groups of users, from the system's user database (NSS), cached per uid until
/// the policy is reloaded. Looked up only when the policy names groups.
struct GroupDirectory {
    private var cache: [UInt32: [UInt32]] = [:]

    mutating func groups(of uid: UInt32, primary gid: UInt32) -> [UInt32] {
        if let known = cache[uid] { return known }
        var result: [UInt32] = []
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var text = [CChar](repeating: 0, count: 4096)
        if getpwuid_r(uid, &entry, &text, text.count, &found) == 0, let found, let name = found.pointee.pw_name {
            var count: Int32 = 64
            var list = [gid_t](repeating: 0, count: Int(count))
            if getgrouplist(name, gid, &list, &count) == -1 {
                list = [gid_t](repeating: 0, count: Int(count))
                _ = getgrouplist(name, gid, &list, &count)
            }
            result = Array(list.prefix(Int(max(0, count))))
        }
        cache[uid] = result
        return result
    }

    mutating func clear() { cache = [:] }
}
