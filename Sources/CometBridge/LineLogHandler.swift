import FoundationEssentials
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// One line per record on stderr (under systemd, the journal takes it with the unit's name).
struct LineLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    /// Under systemd the journal stamps each line itself.
    let timestamps: Bool

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let stamp = timestamps ? "\(Date().formatted(.iso8601)) " : ""
        let line = "\(stamp)\(event.level) comet-bridge: \(event.message)\(fields.isEmpty ? "" : " " + fields)\n"
        var bytes = Array(line.utf8)
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes.removeFirst(n)
        }
    }
}
