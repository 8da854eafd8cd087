import Comet
import CometWire
import ArgumentParser
import Foundation

/// uid ↔ user name, through the system's user database.
enum UserNames {
    /// The user's name, or the number when it has none.
    static func name(of uid: UInt32) -> String {
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &found) == 0, found != nil, let name = entry.pw_name else {
            return "\(uid)"
        }
        return String(cString: name)
    }

    /// `OWNER` column text: the user name, or `-` when the daemon did not say.
    static func column(_ owner: Owner) -> String { owner.isKnown ? name(of: owner.uid) : "-" }

    /// A uid from a number or a user name.
    static func uid(_ text: String) -> UInt32? { UInt32(text) ?? OwnerPin.systemUser(named: text) }
}

/// `--owner USER|UID|any`.
struct OwnerOption: ExpressibleByArgument {
    let pin: OwnerPin
    init?(argument: String) {
        if argument == "any" {
            pin = .anyone
            return
        }
        guard let uid = UserNames.uid(argument) else { return nil }
        pin = .uid(uid)
    }

    /// The uid to pin, for requests that take one (private channels).
    var uid: UInt32? {
        if case .uid(let uid) = pin { return uid }
        return nil
    }
}
