import NIOCore

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

    /// A ring file for a new (or restored) channel holding `messages` from `first` on.
    @discardableResult
    public func createRing(_ meta: RingMeta, first: UInt64 = 1, messages: [ByteBuffer] = [], flags: UInt32 = 0, acknowledged: UInt64 = 0) -> Bool {
        let bytes = messages.reduce(0) { $0 + $1.readableBytes }
        // Room for the ring's messages at 96 bytes each (up to 1 MiB to start with); a file whose
        // messages do not fit moves to one twice as big.
        let size = max(min(meta.capacity * 96, 1 << 20), 2 * bytes)
        let file: RingFile
        do {
            file = try RingFile.create(meta, dataSize: size, created: clock())
        } catch {
            failures += 1
            return false
        }
        file.setFlags(flags)
        file.setAcknowledged(acknowledged)
        file.restart(at: first)
        var batch = file.beginBatch(from: first, first: first)
        for message in messages {
            _ = message.withUnsafeReadableBytes { file.write($0, into: &batch) }
        }
        file.publish(batch)
        guard let name = place(file.fd) else { return false }
        if let old = rings.updateValue((file, name), forKey: meta.id) { forget(old.name) }
        return true
    }

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

    /// Channel `id`'s file, for a caller that writes a batch itself (`RingFile.write`, `publish`).
    @inline(__always)
    public func ringFile(_ id: UInt64) -> RingFile? { rings[id]?.file }

    /// Writes the next message of `batch` into channel `id`'s `file`; when the data area is full
    /// of messages still kept, publishes what is in and moves to a bigger file. False when the
    /// message could not be kept (the file could not grow).
    @inline(__always)
    public func write(_ message: UnsafeRawBufferPointer, _ id: UInt64, file: inout RingFile, batch: inout RingFile.Batch) -> Bool {
        if file.write(message, into: &batch) { return true }
        file.publish(batch)
        guard let bigger = grow(id, need: message.count) else { return false }
        file = bigger
        batch = file.beginBatch(from: batch.sequence, first: batch.first)
        return file.write(message, into: &batch)
    }

    /// Moves channel `id` to a bigger file (what is published in the current one is copied),
    /// room for a message of `need` bytes; nil if that failed (the current file stays).
    public func grow(_ id: UInt64, need: Int) -> RingFile? {
        guard let ring = rings[id] else { return nil }
        do {
            let bigger = try ring.file.grown(need: need, created: clock())
            guard let name = place(bigger.fd) else { return nil }
            rings[id] = (bigger, name)
            forget(ring.name)
            return bigger
        } catch {
            failures += 1
            return nil
        }
    }

    /// The ring was emptied so that the next message is `next`.
    public func restart(_ id: UInt64, at next: UInt64) { rings[id]?.file.restart(at: next) }
    public func setAcknowledged(_ id: UInt64, _ sequence: UInt64) { rings[id]?.file.setAcknowledged(sequence) }
    public func setFlags(_ id: UInt64, _ flags: UInt32) { rings[id]?.file.setFlags(flags) }

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
