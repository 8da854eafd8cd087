import CSystemd
import FoundationEssentials
import Glibc
import Logging

/// cometd's log records: native journald entries under systemd, plain lines elsewhere.
///
/// When stderr is the journal stream systemd set up (`JOURNAL_STREAM` names stderr's device and
/// inode), each record is sent with sd_journal_sendv(3): `MESSAGE`, `PRIORITY`,
/// `SYSLOG_IDENTIFIER=cometd`, and each metadata key as a field of its own (`COMET_UID=1000`,
/// `COMET_CHANNEL=...`), so that `journalctl COMET_UID=1000` finds a user's records. Otherwise
/// (a terminal, a file, a pipe) one line per record on stderr, with a timestamp.
struct JournalLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    let label: String
    let journal: Bool

    init(label: String, journal: Bool = JournalLogHandler.stderrIsTheJournal()) {
        self.label = label
        self.journal = journal
    }

    /// Whether `JOURNAL_STREAM` (`DEVICE:INODE`) is stderr itself (systemd.exec(5)).
    static func stderrIsTheJournal() -> Bool {
        guard let value = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] else { return false }
        let parts = value.split(separator: ":")
        var info = stat()
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]), fstat(2, &info) == 0 else { return false }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let sorted = all.sorted { $0.key < $1.key }
        if journal, send(event, sorted) { return }
        let fields = sorted.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let line = "\(Date().formatted(.iso8601)) \(event.level) \(label): \(event.message)\(fields.isEmpty ? "" : " " + fields)\n"
        var bytes = Array(line.utf8)
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes.removeFirst(n)
        }
    }

    /// One native journal entry; false if the journal refused it (then a line is written).
    private func send(_ event: LogEvent, _ metadata: [(key: String, value: Logger.Metadata.Value)]) -> Bool {
        var fields = [
            "MESSAGE=\(event.message)", "PRIORITY=\(Self.priority(event.level))", "SYSLOG_IDENTIFIER=cometd",
            "COMET_LOGGER=\(label)",
        ]
        for (key, value) in metadata { fields.append("COMET_\(Self.fieldName(key))=\(value)") }
        let buffers = fields.map { Array($0.utf8) }
        var vectors: [iovec] = []
        let result: Int32 = buffers.withUnsafeBufferPointers { pointers in
            vectors = pointers.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
            return vectors.withUnsafeBufferPointer { sd_journal_sendv($0.baseAddress, Int32($0.count)) }
        }
        return result >= 0
    }

    /// A journal field name: upper-case letters, digits and underscores.
    static func fieldName(_ key: String) -> String {
        String(key.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" })
    }

    /// syslog(3) priorities.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }
}

extension Array where Element == [UInt8] {
    /// Calls `body` with a buffer pointer to each element's bytes, all valid at once.
    func withUnsafeBufferPointers<R>(_ body: ([UnsafeBufferPointer<UInt8>]) -> R) -> R {
        func go(_ index: Int, _ collected: [UnsafeBufferPointer<UInt8>]) -> R {
            guard index < count else { return body(collected) }
            return self[index].withUnsafeBufferPointer { go(index + 1, collected + [$0]) }
        }
        return go(0, [])
    }
}
