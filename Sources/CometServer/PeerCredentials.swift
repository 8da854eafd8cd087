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

    /// The credentials of the process at the other end of `channel`'s Unix socket.
    static func of(_ channel: Channel) -> EventLoopFuture<PeerCredentials> {
        guard let provider = channel as? SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(PeerCredentials())
        }
        return provider.unsafeGetSocketOption(level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(option))
    }
}
