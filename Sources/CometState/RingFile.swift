import NIOCore
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

/// A channel's ring in a memfd that outlives the process (systemd's file-descriptor store):
/// every message the ring keeps, its numbering and state, kept consistent at every push so that
/// a process killed at any instruction leaves a readable file.
///
/// Layout (native byte order; one writer, the daemon; a reader could map it read-only):
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
    static let largestEstimate = 64 << 20
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
        store(.first, next)
        atomicMemoryFence(ordering: .releasing)
        store(.last, next - 1)
    }

    /// Where a batch of pushes goes: the data area's head and position, the index slot and
    /// the next sequence number, advanced per message without a division.
    public struct Batch {
        public fileprivate(set) var head: UInt64
        fileprivate var position: Int
        fileprivate var slot: Int
        /// Data offset of the oldest message kept once the batch is in (nil until it is written).
        fileprivate var oldest: UInt64?
        public fileprivate(set) var sequence: UInt64
        public let first: UInt64
    }

    /// A batch that writes messages from `sequence` on, `first` being the oldest the ring keeps
    /// once they are in.
    public func beginBatch(from sequence: UInt64, first: UInt64) -> Batch {
        let head = value(.head, UInt64.self)
        return Batch(
            head: head, position: Int(head % UInt64(dataSize)), slot: Int((sequence - 1) % UInt64(capacity)),
            oldest: first < sequence ? entry(first).offset : nil, sequence: sequence, first: first)
    }

    /// Writes the batch's next message (bytes, then index entry) without publishing it. False
    /// when the data area would have to overwrite the oldest message kept (the file must grow).
    @inline(__always)
    public func write(_ payload: UnsafeRawBufferPointer, into batch: inout Batch) -> Bool {
        let count = payload.count
        guard count <= dataSize else { return false }
        var at = batch.head
        var position = batch.position
        if position + count > dataSize {
            at += UInt64(dataSize - position)
            position = 0
        }
        if let oldest = batch.oldest {
            guard at + UInt64(count) - oldest <= UInt64(dataSize) else { return false }
        } else {
            batch.oldest = at
        }
        if count > 0 { (base + dataOffset + position).copyMemory(from: payload.baseAddress!, byteCount: count) }
        let slot = base + indexOffset + batch.slot * Self.entrySize
        slot.storeBytes(of: at, as: UInt64.self)
        slot.storeBytes(of: UInt32(count), toByteOffset: 8, as: UInt32.self)
        batch.head = at + UInt64(count)
        position += count
        batch.position = position == dataSize ? 0 : position
        batch.slot = batch.slot + 1 == capacity ? 0 : batch.slot + 1
        batch.sequence += 1
        return true
    }

    /// Makes the batch's messages visible: `head` and `first`, then `last`.
    @inline(__always)
    public func publish(_ batch: Batch) {
        atomicMemoryFence(ordering: .releasing)
        store(.head, batch.head)
        store(.first, batch.first)
        atomicMemoryFence(ordering: .releasing)
        store(.last, batch.sequence - 1)
    }

    /// Makes messages before `first` unreadable before their bytes may be overwritten: a reader
    /// that checks `first` after copying a message knows whether the copy is whole.
    @inline(__always)
    public func evict(before first: UInt64) {
        store(.first, first)
        atomicMemoryFence(ordering: .releasing)
    }

    /// Calls `body` with each message from `start` through `last` (all kept, in a file whose data
    /// area is a power of two) until it returns false; returns the first not handed over.
    @inlinable
    public func forEach(from start: UInt64, through last: UInt64, _ body: (UnsafeRawBufferPointer) -> Bool) -> UInt64 {
        let mask = UInt64(dataSize - 1)
        let data = UnsafeRawPointer(base + dataOffset)
        let index = UnsafeRawPointer(base + indexOffset)
        var slot = Int((start - 1) % UInt64(capacity))
        var sequence = start
        while sequence <= last {
            let entry = index + slot * Self.entrySize
            let offset = entry.load(as: UInt64.self)
            let length = Int(entry.load(fromByteOffset: 8, as: UInt32.self))
            guard body(UnsafeRawBufferPointer(start: data + Int(offset & mask), count: length)) else { break }
            sequence += 1
            slot += 1
            if slot == capacity { slot = 0 }
        }
        return sequence
    }

    /// Message `sequence`'s bytes (kept, in a file whose data area is a power of two).
    @inline(__always)
    public func payload(_ sequence: UInt64) -> UnsafeRawBufferPointer {
        let e = entry(sequence)
        return UnsafeRawBufferPointer(start: base + dataOffset + Int(e.offset & UInt64(dataSize - 1)), count: e.length)
    }

    /// Message `sequence`'s length in bytes.
    @inline(__always)
    public func length(_ sequence: UInt64) -> Int { entry(sequence).length }

    /// Whether the area still holds all of `e`'s bytes (no overflow on a damaged entry).
    func whole(_ e: Entry, head: UInt64) -> Bool {
        e.offset <= head && UInt64(e.length) <= head - e.offset && head - e.offset <= UInt64(dataSize) && e.length <= dataSize
    }

    struct Entry {
        var offset: UInt64
        var length: Int
    }

    func entry(_ sequence: UInt64) -> Entry {
        let slot = base + indexOffset + Int((sequence - 1) % UInt64(capacity)) * Self.entrySize
        return Entry(offset: slot.load(as: UInt64.self), length: Int(slot.load(fromByteOffset: 8, as: UInt32.self)))
    }

    /// The messages the file holds whole, oldest first, and the first one's sequence number.
    public func messages() -> (first: UInt64, payloads: [ByteBuffer]) {
        let (first, last) = kept()
        var payloads: [ByteBuffer] = []
        guard first <= last else { return (first, payloads) }
        payloads.reserveCapacity(Int(last - first + 1))
        for sequence in first...last {
            let e = entry(sequence)
            let at = Int(e.offset % UInt64(dataSize))
            guard at + e.length <= dataSize else { break }
            var buffer = ByteBufferAllocator().buffer(capacity: e.length)
            buffer.writeBytes(UnsafeRawBufferPointer(start: base + dataOffset + at, count: e.length))
            payloads.append(buffer)
        }
        return (first, payloads)
    }

    /// The numbers of the oldest and newest messages the file holds whole (`first > last`: none).
    /// Damaged numbers (beyond 2^62, or `first` past `last + 1`) read as an empty ring after `last`.
    func kept() -> (first: UInt64, last: UInt64) {
        let last = min(self.last, 1 << 62)
        var first = max(self.first, last >= UInt64(capacity) ? last - UInt64(capacity) + 1 : 1)
        if first > last + 1 { first = last + 1 }
        let head = value(.head, UInt64.self)
        while first <= last, !whole(entry(first), head: head) { first += 1 }
        return (first, last)
    }

    /// A new, larger file with the same header and the messages `first...last` of this one, for
    /// a push that did not fit; `need` is the size of that push. The bytes are copied message by
    /// message from one mapping to the other (no intermediate buffers).
    public func grown(need: Int, created: UInt64, backing: Backing? = nil) throws(StateError) -> RingFile {
        let (first, last) = kept()
        let head = value(.head, UInt64.self)
        let live = first <= last ? Int(head - entry(first).offset) : 0
        var size = dataSize * 2
        while size < 2 * (live + need) { size *= 2 }
        // The ring keeps `capacity` messages whatever they weigh (eviction is by count): a file
        // that fills up is made big enough for all of them at once, at the average size so far
        // and a quarter more, instead of doubling (and copying) again and again — up to 64 MiB
        // at once (a ring of a million large messages is reached by doubling, as the quota lets it).
        let count = first <= last ? Int(last - first + 1) : 0
        if count > 0, count < capacity {
            let average = (live + count - 1) / count
            size = max(size, min(capacity * average / 4 * 5, Self.largestEstimate))
        }
        let bigger = try RingFile.create(meta, dataSize: size, created: created, backing: backing ?? self.backing)
        bigger.setFlags(flags)
        bigger.setAcknowledged(acknowledged)
        bigger.restart(at: first)
        guard first <= last else { return bigger }
        var batch = bigger.beginBatch(from: first, first: first)
        var sequence = first
        while sequence <= last {
            let e = entry(sequence)
            let at = Int(e.offset % UInt64(dataSize))
            _ = bigger.write(UnsafeRawBufferPointer(start: base + dataOffset + at, count: e.length), into: &batch)
            sequence += 1
        }
        bigger.publish(batch)
        return bigger
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
