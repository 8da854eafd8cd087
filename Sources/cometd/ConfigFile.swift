#if canImport(Glibc)
import Glibc
#endif

/// `cometd --config FILE` (default /etc/comet/cometd.conf when it exists). Since 0.7 cometd has
/// nothing to configure there: NATS servers, exports and imports are comet-bridge's
/// (docs/FEDERATION.md), which reads its own file and, for a migration, this one. cometd only
/// says so when the file still holds such sections, so that an old file never stops it.
struct ConfigFile {
    static let defaultPath = "/etc/comet/cometd.conf"

    /// The federation sections of `explicit` (or of the default file when it exists), by line;
    /// throws when an explicitly named file cannot be read.
    static func federationSections(explicit: String?) throws -> (file: String, lines: [Int])? {
        let path = explicit ?? defaultPath
        guard let text = readFile(path) else {
            if explicit != nil { throw ConfigurationMistake(file: path, reason: "cannot read the file (\(String(cString: strerror(errno))))") }
            return nil
        }
        var lines: [Int] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let head = line.drop { $0 == " " || $0 == "\t" }
            if head.hasPrefix("[nats") || head.hasPrefix("[export") || head.hasPrefix("[import") { lines.append(index + 1) }
        }
        return (path, lines)
    }

    static func readFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n > 0 { bytes.append(contentsOf: chunk[..<n]) }
            if n < chunk.count { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// A configuration file cometd cannot use.
struct ConfigurationMistake: Error, CustomStringConvertible {
    let file: String
    let reason: String

    var description: String { "\(file): \(reason)" }
}
