import CometFederation
import CometChannels
import CometWire

#if canImport(Glibc)
import Glibc
#endif

/// `cometd --config FILE` (default /etc/comet/cometd.conf when it exists): NATS servers,
/// exports and imports, in sections of `key = value` lines (docs/FEDERATION.md).
struct ConfigFile {
    static let defaultPath = "/etc/comet/cometd.conf"

    /// Reads `explicit`, or the default file when it exists; an empty configuration otherwise.
    static func load(explicit: String?) throws -> (FederationConfiguration, String?) {
        let path = explicit ?? defaultPath
        guard let text = readFile(path) else {
            if explicit != nil { throw ConfigurationMistake(file: path, line: 0, reason: "cannot read the file (\(String(cString: strerror(errno))))") }
            return (FederationConfiguration(), nil)
        }
        return (try parse(text, file: path), path)
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

    static func parse(_ text: String, file: String) throws -> FederationConfiguration {
        try FederationConfiguration.parse(text, file: file)
    }
}

