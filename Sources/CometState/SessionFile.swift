import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One session as the session file keeps it: what a client needs to RESUME it after a crash.
public struct SessionRecord: Equatable, Sendable {
    public var id: UInt64
    public var tokenHigh: UInt64
    public var tokenLow: UInt64
    public var uid: UInt32

    public init(id: UInt64, tokenHigh: UInt64, tokenLow: UInt64, uid: UInt32) {
        self.id = id
        self.tokenHigh = tokenHigh
        self.tokenLow = tokenLow
        self.uid = uid
    }
}

/// Every live session in a memfd that outlives the process (docs/RESTARTS.md, "Storage layout"):
///
///     page 0: magic "COMETSES", u32 layout 1, u32 slot count, u64 created
///     then:   slots of 64 bytes { u32 state (0 free, 1 used), u32 uid, u64 id, u64 token high,
///             u64 token low, 32 bytes reserved }
///
/// A slot's fields are written before its state says it is used.
public final class SessionFile {
    public static let magic: UInt64 = 0x5345_5354_454d_4f43  // "COMETSES" little-endian
    static let headerSize = 4096
    static let slotSize = 64

    public let fd: Int32
    let base: UnsafeMutableRawPointer
    let length: Int
    public let slots: Int
    private var free: [Int]

    public static func create(slots: Int, created: UInt64) throws(StateError) -> SessionFile {
        let slots = max(64, slots)
        let length = headerSize + ((slots * slotSize + 4095) & ~4095)
        let fd = Int32(memfdCreate("comet-sessions"))
        guard fd >= 0 else { throw StateError(.system, "memfd_create: \(String(cString: strerror(errno)))") }
        guard ftruncate(fd, off_t(length)) == 0 else {
            close(fd)
            throw StateError(.system, "ftruncate: errno \(errno)")
        }
        let file = try SessionFile(fd: fd, length: length, fresh: true)
        file.base.storeBytes(of: UInt32(1), toByteOffset: 8, as: UInt32.self)
        file.base.storeBytes(of: UInt32(file.slots), toByteOffset: 12, as: UInt32.self)
        file.base.storeBytes(of: created, toByteOffset: 16, as: UInt64.self)
        atomicMemoryFence(ordering: .releasing)
        file.base.storeBytes(of: magic, as: UInt64.self)
        return file
    }

    public convenience init(fd: Int32) throws(StateError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StateError(.system, "fstat: errno \(errno)") }
        try self.init(fd: fd, length: Int(info.st_size), fresh: false)
    }

    init(fd: Int32, length: Int, fresh: Bool) throws(StateError) {
        guard length >= Self.headerSize + 4096 else { throw StateError(.notStorage, "a session file has at least two pages") }
        guard let mapped = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw StateError(.system, "mmap: errno \(errno)")
        }
        self.fd = fd
        self.base = mapped
        self.length = length
        self.slots = (length - Self.headerSize) / Self.slotSize
        if !fresh {
            guard mapped.load(as: UInt64.self) == Self.magic, mapped.load(fromByteOffset: 8, as: UInt32.self) == 1 else {
                munmap(mapped, length)
                throw StateError(.notStorage, "not a session file of layout 1")
            }
        }
        free = []
        for slot in (0..<slots).reversed() where fresh || state(slot) == 0 { free.append(slot) }
    }

    deinit {
        munmap(base, length)
        close(fd)
    }

    public var created: UInt64 { base.load(fromByteOffset: 16, as: UInt64.self) }

    private func slot(_ index: Int) -> UnsafeMutableRawPointer { base + Self.headerSize + index * Self.slotSize }
    private func state(_ index: Int) -> UInt32 { slot(index).load(as: UInt32.self) }

    /// Records `session`; nil when every slot is used (the caller moves to a bigger file).
    public func add(_ session: SessionRecord) -> Int? {
        guard let index = free.popLast() else { return nil }
        let p = slot(index)
        p.storeBytes(of: session.uid, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: session.id, toByteOffset: 8, as: UInt64.self)
        p.storeBytes(of: session.tokenHigh, toByteOffset: 16, as: UInt64.self)
        p.storeBytes(of: session.tokenLow, toByteOffset: 24, as: UInt64.self)
        atomicMemoryFence(ordering: .releasing)
        p.storeBytes(of: UInt32(1), as: UInt32.self)
        return index
    }

    public func remove(slot index: Int) {
        guard index >= 0, index < slots, state(index) == 1 else { return }
        slot(index).storeBytes(of: UInt32(0), as: UInt32.self)
        free.append(index)
    }

    /// Every session recorded, with its slot.
    public func records() -> [(slot: Int, record: SessionRecord)] {
        (0..<slots).compactMap { index in
            guard state(index) == 1 else { return nil }
            let p = slot(index)
            return (index, SessionRecord(
                id: p.load(fromByteOffset: 8, as: UInt64.self), tokenHigh: p.load(fromByteOffset: 16, as: UInt64.self),
                tokenLow: p.load(fromByteOffset: 24, as: UInt64.self), uid: p.load(fromByteOffset: 4, as: UInt32.self)))
        }
    }
}
