import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What a ring file holds about its channel (docs/RESTARTS.md, "Storage layout").
public struct RingMeta: Equatable, Sendable {
    public enum Kind: UInt32, Sendable {
        case buffered = 0
        case newest = 1
        case `private` = 2
        case unlimited = 3
    }

    public var kind: Kind
    public var id: UInt64
    public var name: String
    public var epoch: UInt64
    /// The session a private channel is addressed to (0 for site channels).
    public var session: UInt64
    public var capacity: Int
    public var creator: PeerImage
    public var tokenHigh: UInt64
    public var tokenLow: UInt64
    /// The sequence number producer number 1 got (PUSH_NUMBERED); 0: the producer has not numbered.
    public var numberedFrom: UInt64

    public init(
        kind: Kind, id: UInt64, name: String, epoch: UInt64, session: UInt64 = 0, capacity: Int, creator: PeerImage,
        tokenHigh: UInt64, tokenLow: UInt64, numberedFrom: UInt64 = 0
    ) {
        self.numberedFrom = numberedFrom
        self.kind = kind
        self.id = id
        self.name = name
        self.epoch = epoch
        self.session = session
        self.capacity = capacity
        self.creator = creator
        self.tokenHigh = tokenHigh
        self.tokenLow = tokenLow
    }
}

/// A channel's ring, the one place its messages live: in a memfd that outlives the process
/// (systemd's file-descriptor store) and that readers may map, or in the process's memory
/// without a store. Every message the ring keeps, its numbering and state, kept consistent at
/// every push so that a process killed at any instruction leaves a readable file.
///
/// Layout (native byte order; one writer, the daemon; readers map it read-only):
///
///     page 0:  header (magic "COMETRNG", layout 1, kind, capacity, data size, epoch, id,
///              session, creator, flags, producer token, acknowledged, created, first, last,
///              head, name)
///     index:   capacity × { u64 data offset (bytes ever written), u32 length, u32 0 },
///              message s in slot (s - 1) % capacity
///     data:    a circular byte area; a message never wraps (the rest of the area is skipped)
///
/// A batch of pushes writes the bytes and index entries, then `head` and `first`, then `last`,
/// each after a release fence: `last` says what is complete. A message whose bytes would
/// overwrite one still kept does not fit: `write` then says the file must grow (`grown`).
public final class RingFile {
    public static let magic: UInt64 = 0x474e_5254_454d_4f43  // "COMETRNG" little-endian
    public static let layout: UInt32 = 1
    static let headerSize = 4096
    // fcntl(2) sealing, from <linux/fcntl.h>.
    static let addSeals: Int32 = 1033
    static let sealShrink: Int32 = 0x2
    static let sealGrow: Int32 = 0x4
    static let sealFutureWrite: Int32 = 0x10
    /// The largest data area a growing file jumps to at once (beyond it, it doubles).
    static let largestEstimate = 1 << 30
    @usableFromInline static let entrySize = 16

    enum Field: Int {
        case magic = 0, layout = 8, kind = 12, capacity = 16, dataSize = 24, epoch = 32, id = 40, session = 48
        case uid = 56, gid = 60, pid = 64, flags = 68, tokenHigh = 72, tokenLow = 80, acknowledged = 88, created = 96
        case first = 104, last = 112, head = 120, numberedFrom = 128, nameLength = 136, name = 138
    }

    public static let closedFlag: UInt32 = 1
    public static let fullFlag: UInt32 = 2

    /// The memfd (-1 for a ring in the heap).
    public let fd: Int32
    public let backing: Backing
    @usableFromInline let base: UnsafeMutableRawPointer
    /// The file's size in bytes (what a reader maps).
    public let length: Int
    /// The data bytes made present ahead of the writer, or asked for, and the head at which the
    /// writer next looks ahead (`keepPagesAhead`); a small data area is left alone. The index is
    /// followed the same way from the slot of message `indexFrom` (the first the file got).
    var presentData = 0
    var nextPagesAhead: UInt64 = 0
    var indexFrom: UInt64 = 1
    var presentIndex = 0
    public let capacity: Int
    public let dataSize: Int
    @usableFromInline let indexOffset: Int
    @usableFromInline let dataOffset: Int

    /// Where a ring's bytes live.
    public enum Backing: Sendable {
        /// A memfd, mapped shared: it can be handed to the file-descriptor store (and to readers).
        case memfd
        /// Memory of the process alone (no store): the same layout, no descriptor.
        case heap
    }

    /// A new file for `meta` with a data area of at least `dataSize` bytes (a power of two).
    public static func create(_ meta: RingMeta, dataSize: Int, created: UInt64, backing: Backing = .memfd) throws(StateError) -> RingFile {
        let capacity = max(1, meta.capacity)
        let index = (capacity * entrySize + 4095) & ~4095
        var data = 4096
        while data < dataSize { data *= 2 }
        let length = headerSize + index + data
        let file: RingFile
        switch backing {
        case .memfd:
            let fd = Int32(memfdCreate("comet-ring", sealable: true))
            guard fd >= 0 else { throw StateError(.system, "memfd_create: \(String(cString: strerror(errno)))") }
            guard ftruncate(fd, off_t(length)) == 0 else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw StateError(.system, "ftruncate: \(reason)")
            }
            file = try RingFile(fd: fd, length: length, header: header(meta, capacity: capacity, data: data, created: created))
            // The daemon's mapping stays writable; nobody (a reader's descriptor reopened through
            // /proc included) can write, map it writable, or resize it from now on.
            _ = fcntl(fd, Self.addSeals, Self.sealShrink | Self.sealGrow | Self.sealFutureWrite)
        case .heap:
            let memory = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 64)
            file = RingFile(heap: memory, length: length, header: header(meta, capacity: capacity, data: data, created: created))
        }
        atomicMemoryFence(ordering: .releasing)
        file.store(.magic, magic)
        return file
    }

    /// The header of a new file, whole; the magic is stored last, once it is in place.
    private static func header(_ meta: RingMeta, capacity: Int, data: Int, created: UInt64) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: headerSize)
        header.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            func set<T: FixedWidthInteger>(_ field: Field, _ value: T) { p.storeBytes(of: value, toByteOffset: field.rawValue, as: T.self) }
            set(.layout, layout)
            set(.kind, meta.kind.rawValue)
            set(.capacity, UInt64(capacity))
            set(.dataSize, UInt64(data))
            set(.epoch, meta.epoch)
            set(.id, meta.id)
            set(.session, meta.session)
            set(.uid, meta.creator.uid)
            set(.gid, meta.creator.gid)
            set(.pid, UInt32(bitPattern: meta.creator.pid))
            set(.tokenHigh, meta.tokenHigh)
            set(.tokenLow, meta.tokenLow)
            set(.numberedFrom, meta.numberedFrom)
            set(.created, created)
            set(.first, UInt64(1))
            set(.last, UInt64(0))
            let name = Array(meta.name.utf8.prefix(255))
            set(.nameLength, UInt16(name.count))
            name.withUnsafeBytes { (p + Field.name.rawValue).copyMemory(from: $0.baseAddress!, byteCount: name.count) }
        }
        return header
    }

    /// Maps a new memfd whose header is written first (before the mapping, so that a crash
    /// leaves either no header or a whole one).
    private convenience init(fd: Int32, length: Int, header: [UInt8]) throws(StateError) {
        guard pwrite(fd, header, Self.headerSize, 0) == Self.headerSize else {
            close(fd)
            throw StateError(.system, "cannot write a ring header: errno \(errno)")
        }
        try self.init(fd: fd, length: length)
    }

    private init(heap memory: UnsafeMutableRawPointer, length: Int, header: [UInt8]) {
        header.withUnsafeBytes { memory.copyMemory(from: $0.baseAddress!, byteCount: Self.headerSize) }
        let capacity = Int(memory.load(fromByteOffset: Field.capacity.rawValue, as: UInt64.self))
        self.fd = -1
        self.base = memory
        self.length = length
        self.capacity = capacity
        self.dataSize = Int(memory.load(fromByteOffset: Field.dataSize.rawValue, as: UInt64.self))
        self.indexOffset = Self.headerSize
        self.dataOffset = Self.headerSize + ((capacity * Self.entrySize + 4095) & ~4095)
        self.backing = .heap
        self.nextPagesAhead = dataSize <= Self.aheadSmallest ? .max : UInt64(Self.aheadRun / 2)
    }

    /// Maps an existing file read-only (one passed back by the store, or handed to a reader),
    /// checking its header. Only reads are allowed on it.
    public convenience init(fd: Int32) throws(StateError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StateError(.system, "fstat: errno \(errno)") }
        try self.init(fd: fd, length: Int(info.st_size), writable: false)
    }

    init(fd: Int32, length: Int, writable: Bool = true) throws(StateError) {
        guard length >= Self.headerSize + 4096 else { throw StateError(.notStorage, "a ring file has at least two pages") }
        guard let mapped = mmap(nil, length, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw StateError(.system, "mmap: \(String(cString: strerror(errno)))")
        }
        // Sizes are checked before any arithmetic: a damaged file is refused, never trusted.
        let rawCapacity = mapped.load(fromByteOffset: Field.capacity.rawValue, as: UInt64.self)
        let rawData = mapped.load(fromByteOffset: Field.dataSize.rawValue, as: UInt64.self)
        let sane = rawCapacity >= 1 && rawCapacity <= 1 << 26 && rawData >= 4096 && rawData <= UInt64(length)
        let capacity = sane ? Int(rawCapacity) : 1
        let dataSize = sane ? Int(rawData) : 4096
        let dataOffset = Self.headerSize + ((capacity * Self.entrySize + 4095) & ~4095)
        guard sane, dataOffset + dataSize == length else {
            munmap(mapped, length)
            throw StateError(.damaged, "ring file sizes do not add up")
        }
        self.fd = fd
        self.base = mapped
        self.length = length
        self.capacity = capacity
        self.dataSize = dataSize
        self.indexOffset = Self.headerSize
        self.dataOffset = dataOffset
        self.backing = .memfd
        self.nextPagesAhead = dataSize <= Self.aheadSmallest || !writable ? .max : UInt64(Self.aheadRun / 2)
    }

    deinit {
        switch backing {
        case .memfd:
            munmap(base, length)
            close(fd)
        case .heap:
            base.deallocate()
        }
    }

    /// A new read-only descriptor of the file (for a mapped reader): the memfd reopened through
    /// /proc with O_RDONLY; -1 with `errno` when that fails or the ring is in the heap.
    public func readOnlyDescriptor() -> Int32 {
        guard fd >= 0 else {
            errno = EBADF
            return -1
        }
        return open("/proc/self/fd/\(fd)", O_RDONLY | O_CLOEXEC)
    }

    /// Whether the header is complete and of a layout this binary reads.
    public var isValid: Bool {
        value(.magic, UInt64.self) == Self.magic && value(.layout, UInt32.self) == Self.layout
            && RingMeta.Kind(rawValue: value(.kind, UInt32.self)) != nil
    }

    public var meta: RingMeta {
        let count = Int(value(.nameLength, UInt16.self))
        let name = String(decoding: UnsafeRawBufferPointer(start: base + Field.name.rawValue, count: min(count, 255)), as: UTF8.self)
        return RingMeta(
            kind: RingMeta.Kind(rawValue: value(.kind, UInt32.self)) ?? .buffered, id: value(.id, UInt64.self), name: name,
            epoch: value(.epoch, UInt64.self), session: value(.session, UInt64.self), capacity: capacity,
            creator: PeerImage(pid: Int32(bitPattern: value(.pid, UInt32.self)), uid: value(.uid, UInt32.self), gid: value(.gid, UInt32.self)),
            tokenHigh: value(.tokenHigh, UInt64.self), tokenLow: value(.tokenLow, UInt64.self),
            numberedFrom: value(.numberedFrom, UInt64.self))
    }

    public var created: UInt64 { value(.created, UInt64.self) }
    public var first: UInt64 { value(.first, UInt64.self) }
    public var last: UInt64 { value(.last, UInt64.self) }
    public var flags: UInt32 { value(.flags, UInt32.self) }
    public var acknowledged: UInt64 { value(.acknowledged, UInt64.self) }

    /// Keeps the channel's producer numbering (`RingMeta.numberedFrom`); called before the first
    /// numbered message's `last` is published, so a file never holds a message whose number it
    /// cannot tell.
    public func setNumberedFrom(_ origin: UInt64) {
        if origin != value(.numberedFrom, UInt64.self) { store(.numberedFrom, origin) }
    }

    public func setFlags(_ flags: UInt32) { store(.flags, flags) }
    public func setToken(high: UInt64, low: UInt64) {
        store(.tokenHigh, high)
        store(.tokenLow, low)
    }
    public func setAcknowledged(_ sequence: UInt64) { store(.acknowledged, sequence) }

    /// Empties the ring so that the next message is `next` (what the ring in memory did).
    public func restart(at next: UInt64) {
        indexFrom = next
        presentIndex = 0
        store(.first, next)
        atomicMemoryFence(ordering: .releasing)
        store(.last, next - 1)
    }

    // MARK: Fields

    @inline(__always) func value<T: FixedWidthInteger>(_ field: Field, _: T.Type) -> T {
        base.load(fromByteOffset: field.rawValue, as: T.self)
    }

    @inline(__always) func store<T: FixedWidthInteger>(_ field: Field, _ value: T) {
        base.storeBytes(of: value, toByteOffset: field.rawValue, as: T.self)
    }
}

/// memfd_create(2) by system call (glibc declares it only under _GNU_SOURCE), close-on-exec;
/// `sealable`: MFD_ALLOW_SEALING.
func memfdCreate(_ name: String, sealable: Bool = false) -> Int {
    let flags = sealable ? 3 : 1  // MFD_CLOEXEC | MFD_ALLOW_SEALING
    #if arch(x86_64)
    return name.withCString { syscall(319, $0, flags) }
    #elseif arch(arm64)
    return name.withCString { syscall(279, $0, flags) }
    #else
    return -1
    #endif
}

@_silgen_name("syscall")
private func syscall(_ number: Int, _ name: UnsafePointer<CChar>, _ flags: Int) -> Int
