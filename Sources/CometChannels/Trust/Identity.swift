/// Who a peer is: the kernel's credentials of the process at the other end of a Unix socket
/// (SO_PEERCRED, and SO_PEERGROUPS for its supplementary groups), taken when it connected.
public struct Identity: Hashable, Sendable {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    /// Supplementary groups (may be empty when the kernel does not tell).
    public var groups: [UInt32]

    /// uid and gid unknown (UInt32.max), as for a channel not made by a peer.
    public init(pid: Int32 = 0, uid: UInt32 = .max, gid: UInt32 = .max, groups: [UInt32] = []) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    public var isRoot: Bool { uid == 0 }

    /// Whether the peer is in group `gid` (primary or supplementary).
    public func isMember(of gid: UInt32) -> Bool { self.gid == gid || groups.contains(gid) }
}

/// A channel whose buffered messages are charged to its creator's quota.
public protocol ChargedChannel: AnyObject {
    /// Memory its messages take now.
    var bufferedBytes: Int { get }
    /// The part of it charged so far (the caller's bookkeeping).
    var chargedBytes: Int { get set }
    var creator: Identity { get }
}

extension SiteChannel: ChargedChannel {}
extension PrivateChannel: ChargedChannel {}
