import CometChannels
import CometServer
import FoundationEssentials
import Glibc

/// Loads the policy from files: one file, or every `*.conf` of a directory in name order.
/// By default `/etc/comet/policy.conf` and then `/etc/comet/policy.d/*.conf`, each if present.
struct PolicyFiles {
    /// The path given with `--policy`, or nil for the defaults.
    let explicit: String?

    static let defaultFile = "/etc/comet/policy.conf"
    static let defaultDirectory = "/etc/comet/policy.d"

    /// The files that make the policy, in order.
    func files() throws -> [String] {
        if let explicit {
            var info = stat()
            guard stat(explicit, &info) == 0 else {
                throw PolicyError(file: explicit, line: 0, reason: "no such file or directory")
            }
            return (info.st_mode & S_IFMT) == S_IFDIR ? try Self.confFiles(in: explicit) : [explicit]
        }
        var files: [String] = []
        if FileManager.default.fileExists(atPath: Self.defaultFile) { files.append(Self.defaultFile) }
        files += (try? Self.confFiles(in: Self.defaultDirectory)) ?? []
        return files
    }

    static func confFiles(in directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { $0.hasSuffix(".conf") }.sorted().map { directory + "/" + $0 }
    }

    /// Reads and compiles every file; the first error stops it, with its file and line.
    func load() throws -> (policy: Policy, files: [String]) {
        var policy = Policy()
        let parser = PolicyParser(userID: Self.uid(named:), groupID: Self.gid(named:), systemUIDMax: Self.systemUIDMax())
        let list = try files()
        for file in list {
            let text: String
            do {
                text = try String(contentsOfFile: file, encoding: .utf8)
            } catch {
                throw PolicyError(file: file, line: 0, reason: "cannot read: \(error)")
            }
            try parser.parse(text, file: file, into: &policy)
        }
        return (policy, list)
    }

    /// `SYS_UID_MAX` of /etc/login.defs, or 999 (Debian's) when it does not say.
    static func systemUIDMax(loginDefs: String = "/etc/login.defs") -> UInt32 {
        guard let text = try? String(contentsOfFile: loginDefs, encoding: .utf8) else { return 999 }
        for line in text.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if words.count >= 2, words[0] == "SYS_UID_MAX", let value = UInt32(words[1]) { return value }
        }
        return 999
    }

    static func uid(named name: String) -> UInt32? { UserDirectory.lookUp(name) }

    static func gid(named name: String) -> UInt32? {
        var entry = group()
        var found: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getgrnam_r(name, &entry, &buffer, buffer.count, &found) == 0, found != nil else { return nil }
        return entry.gr_gid
    }
}
