import CometChannels

#if canImport(Glibc)
import Glibc
#endif

/// Whether a user could open a Unix socket at a path by itself: search permission on every
/// directory on the way (symbolic links followed, each step checked) and write permission on the
/// socket, judged from the mode bits with the user's uid, gid and groups. A relay connects only
/// where this holds (or where the policy allows), so the daemon is never a deputy.
enum PathAccess {
    enum Verdict: Equatable {
        /// The user could connect there (the socket exists and is writable for it).
        case allowed
        /// The user could not: a directory on the way or the socket is closed to it.
        case denied
        /// The user could look, and nothing is there.
        case missing
    }

    static func check(_ path: String, for who: Identity) -> Verdict {
        if who.isRoot { return .allowed }
        var pending = path.split(separator: "/").map(String.init)
        var current = ""
        var links = 0
        while !pending.isEmpty {
            let part = pending.removeFirst()
            if part == "." || part.isEmpty { continue }
            // Entering `current` needs search permission on it.
            guard permits(current.isEmpty ? "/" : current, who, bit: 1) else { return .denied }
            if part == ".." {
                current = String(current[..<(current.lastIndex(of: "/") ?? current.startIndex)])
                continue
            }
            let next = current + "/" + part
            var info = stat()
            guard lstat(next, &info) == 0 else { return .missing }
            if info.st_mode & S_IFMT == S_IFLNK {
                links += 1
                guard links <= 40 else { return .denied }
                var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let n = readlink(next, &target, target.count - 1)
                guard n > 0 else { return .denied }
                let text = String(decoding: target[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if text.hasPrefix("/") { current = "" }
                pending = text.split(separator: "/").map(String.init) + pending
                continue
            }
            current = next
        }
        var info = stat()
        guard stat(current, &info) == 0 else { return .missing }
        guard info.st_mode & S_IFMT == S_IFSOCK else { return .missing }
        return permits(current, who, bit: 2) ? .allowed : .denied
    }

    /// Whether the mode bits of `path` grant `bit` (1 search/execute, 2 write, 4 read) to `who`.
    private static func permits(_ path: String, _ who: Identity, bit: mode_t) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0 else { return false }
        let mode = info.st_mode
        if info.st_uid == who.uid { return mode & (bit << 6) != 0 }
        if who.isMember(of: info.st_gid) { return mode & (bit << 3) != 0 }
        return mode & bit != 0
    }
}
