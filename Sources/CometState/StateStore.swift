
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's storage that outlives a crash: a ring file per channel and one session file, each
/// a memfd handed to the service manager's file-descriptor store under a name of its own
/// (`comet-state-…`), so that a file replaced by a bigger one can be forgotten alone.
///
/// Plain bookkeeping over `RingFile` and `SessionFile`; handing descriptors to the store and
/// asking it to forget them is the caller's (`keep`, `forget`), as is the clock.
public final class StateStore: @unchecked Sendable {  // used by one thread (the daemon's event loop) at a time
    /// Every name this store gives starts with this.
    public static let namePrefix = "comet-state"

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    private let keep: (Int32, String) -> Bool
    private let forget: (String) -> Void
    private let clock: () -> UInt64
    private var rings: [UInt64: (file: RingFile, name: String)] = [:]
    private var sessionFile: (file: SessionFile, name: String)?
    private var sessionSlots: [UInt64: Int] = [:]
    /// Files that could not be made or stored (memory, or the store refused).
    public private(set) var failures = 0

    /// - Parameters:
    ///   - keep: hands a descriptor to the store under a name; false if it was not taken.
    ///   - forget: asks the store to close and forget what it holds under a name.
    ///   - clock: CLOCK_MONOTONIC nanoseconds (which file is newest).
    public init(keep: @escaping (Int32, String) -> Bool, forget: @escaping (String) -> Void, clock: @escaping () -> UInt64) {
        self.keep = keep
        self.forget = forget
        self.clock = clock
    }

    /// Names of every file in the store now.
    public var names: [String] { rings.values.map(\.name) + (sessionFile.map { [$0.name] } ?? []) }

    private func newName() -> String {
        "\(Self.namePrefix)-\(String(UInt64.random(in: 1...UInt64.max), radix: 16))"
    }

    private func place(_ fd: Int32) -> String? {
        let name = newName()
        guard keep(fd, name) else {
            failures += 1
            return nil
        }
        return name
    }

    // MARK: Rings

    /// Keeps `file`, a channel's own ring (a `ByteRing`'s current file), as channel `id`'s: the
    /// file it replaces is forgotten once this one is in the store. A file in the heap (a ring
    /// that could not stay in a memfd) only makes the store forget the channel's.
    @discardableResult
    public func keepRing(_ id: UInt64, _ file: RingFile) -> Bool {
        guard file.fd >= 0, let name = place(file.fd) else {
            if file.fd < 0 { failures += 1 }
            removeRing(id)
            return false
        }
        if let old = rings.updateValue((file, name), forKey: id) { forget(old.name) }
        return true
    }

    /// The channel is gone: its file is forgotten.
    public func removeRing(_ id: UInt64) {
        guard let ring = rings.removeValue(forKey: id) else { return }
        forget(ring.name)
    }

    /// Asks the store to forget a file this store did not make (a previous process's).
    public func forgetName(_ name: String) { forget(name) }

    // MARK: Sessions

    public func addSession(_ record: SessionRecord) {
        if sessionFile == nil {
            guard let file = try? SessionFile.create(slots: 256, created: clock()), let name = place(file.fd) else {
                failures += 1
                return
            }
            sessionFile = (file, name)
        }
        guard let current = sessionFile else { return }
        if let slot = current.file.add(record) {
            sessionSlots[record.id] = slot
            return
        }
        // Full: a file twice as big with every session, then the old one goes.
        guard let bigger = try? SessionFile.create(slots: current.file.slots * 2, created: clock()) else {
            failures += 1
            return
        }
        var slots: [UInt64: Int] = [:]
        for (_, kept) in current.file.records() { slots[kept.id] = bigger.add(kept) }
        slots[record.id] = bigger.add(record)
        guard let name = place(bigger.fd) else { return }
        sessionFile = (bigger, name)
        sessionSlots = slots
        forget(current.name)
    }

    public func removeSession(_ id: UInt64) {
        guard let slot = sessionSlots.removeValue(forKey: id) else { return }
        sessionFile?.file.remove(slot: slot)
    }

    // MARK: Recovery

    /// What the files passed back after a crash hold.
    public struct Recovered: @unchecked Sendable {  // handed once to the event loop
        public var rings: [RingFile] = []
        public var sessions: [SessionRecord] = []
        /// Names of every file passed back (to forget once a fresh store is written).
        public var names: [String] = []
        /// Files that could not be read.
        public var unreadable = 0
    }

    /// Reads the files passed back under `stored` (descriptor, name): per channel the newest
    /// valid ring file, and the newest session file. Descriptors of the others are closed.
    public static func recover(_ stored: [(fd: Int32, name: String)]) -> Recovered {
        var result = Recovered()
        var rings: [UInt64: RingFile] = [:]
        var sessions: SessionFile?
        for (fd, name) in stored {
            result.names.append(name)
            if let file = try? SessionFile(fd: fd) {
                if sessions.map({ $0.created < file.created }) ?? true { sessions = file }
                continue
            }
            let ring: RingFile
            do {
                ring = try RingFile(fd: fd)
            } catch {
                close(fd)
                result.unreadable += 1
                continue
            }
            // An invalid one closes its descriptor as it goes.
            guard ring.isValid else {
                result.unreadable += 1
                continue
            }
            let id = ring.meta.id
            if rings[id].map({ $0.created < ring.created }) ?? true { rings[id] = ring }
        }
        result.rings = rings.values.sorted { $0.meta.id < $1.meta.id }
        result.sessions = sessions?.records().map(\.record) ?? []
        return result
    }
}
