#if canImport(Glibc)
import Glibc
#endif

/// uids of user names, from the system's user database (NSS), for policy rules with a `%u`
/// segment (`user.%u.*`). Known names are kept until the policy is reloaded; unknown names are
/// asked again each time (a user created since may use its name at once).
package struct UserDirectory {
    private var known: [String: UInt32] = [:]
    /// Bound on the names kept: only existing users enter, but a directory service may hold many.
    static let capacity = 4096

    mutating func uid(named name: String) -> UInt32? {
        if let uid = known[name] { return uid }
        guard let uid = Self.lookUp(name) else { return nil }
        if known.count >= Self.capacity { known.removeAll(keepingCapacity: true) }
        known[name] = uid
        return uid
    }

    /// The uid of user `name` in the system's user database, asked now (no cache).
    package static func lookUp(_ name: String) -> UInt32? {
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var text = [CChar](repeating: 0, count: 4096)
        guard getpwnam_r(name, &entry, &text, text.count, &found) == 0, found != nil else { return nil }
        return entry.pw_uid
    }

    mutating func clear() { known = [:] }
}
