#if canImport(Glibc)
import Glibc
#endif

/// Whose channel a reader accepts (SUBSCRIBE's owner pin, docs/PROTOCOL.md §6.5).
public enum OwnerPin: Sendable, Hashable {
    /// The owner the channel's name implies, else any: `user.NAME.…` is user NAME's (a user name
    /// or a uid in decimal; docs/POLICY.md). The default.
    case implied
    /// No pin of the reader's own. The daemon's policy still refuses a channel whose creator the
    /// name's rule does not allow (`.ownerMismatch`); pin that creator's uid to read it anyway.
    case anyone
    /// Only a channel created by this uid.
    case uid(UInt32)

    /// The namespace of user channels: `user.NAME.…` belongs to user NAME.
    public static let userNamespace = "user."

    /// The uid to pin for a channel named `name`, if any. `lookup` turns a user name into its uid
    /// (the system's user database by default).
    public func uid(for name: String, lookup: (String) -> UInt32? = OwnerPin.systemUser(named:)) -> UInt32? {
        switch self {
        case .uid(let uid): return uid
        case .anyone: return nil
        case .implied: return Self.impliedOwner(of: name, lookup: lookup)
        }
    }

    /// The owner a name implies: for `user.NAME.REST` (REST not empty) the uid of user NAME,
    /// when NAME is a uid in decimal or a known user; nil otherwise.
    public static func impliedOwner(of name: String, lookup: (String) -> UInt32? = OwnerPin.systemUser(named:)) -> UInt32? {
        guard name.hasPrefix(userNamespace) else { return nil }
        let rest = name.utf8.dropFirst(userNamespace.utf8.count)
        guard let dot = rest.firstIndex(of: UInt8(ascii: ".")), dot != rest.startIndex, rest.index(after: dot) != rest.endIndex,
            let user = String(rest[rest.startIndex..<dot])
        else { return nil }
        return UInt32(user) ?? lookup(user)
    }

    /// The uid of a user in the system's user database (NSS), or nil.
    public static func systemUser(named name: String) -> UInt32? {
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var text = [CChar](repeating: 0, count: 4096)
        guard getpwnam_r(name, &entry, &text, text.count, &found) == 0, found != nil else { return nil }
        return entry.pw_uid
    }
}
