import NIOCore

/// Who produces a channel: the uid and gid of the process that created it (SO_PEERCRED), as
/// SUBSCRIBE's reply, STARTED, OFFER and LIST carry them.
public struct Owner: Hashable, Sendable, CustomStringConvertible {
    public var uid: UInt32
    public var gid: UInt32

    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }

    /// Not known: a waiting subscription, or a daemon that does not send owners.
    public static let unknown = Owner(uid: .max, gid: .max)

    public var isKnown: Bool { uid != .max }

    public var description: String { isKnown ? "uid \(uid) gid \(gid)" : "unknown" }
}

extension ByteBuffer {
    /// Reads an `Owner` appended to an OK body or event, or `.unknown` if the sender did not append one.
    mutating func readOptionalOwner() -> Owner {
        guard readableBytes >= 8, let uid = readInteger(as: UInt32.self), let gid = readInteger(as: UInt32.self) else {
            return .unknown
        }
        return Owner(uid: uid, gid: gid)
    }
}
