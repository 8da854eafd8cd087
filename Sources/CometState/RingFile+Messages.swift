import Glibc
import NIOCore
import Synchronization

/// Writing and reading a ring file's messages: batches of pushes, eviction, the messages kept,
/// and the move to a bigger file (the layout and its ordering rules: `RingFile`).
extension RingFile {
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
        keepPagesAhead(of: batch.head, next: batch.sequence)
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

    /// The lengths of `count` messages from `start` on (all kept), added up: one slot after the
    /// other, without a division per message.
    public func totalLength(from start: UInt64, count: Int) -> Int {
        guard count > 0 else { return 0 }
        let index = UnsafeRawPointer(base + indexOffset)
        var slot = Int((start - 1) % UInt64(capacity))
        var total = 0
        for _ in 0..<count {
            total += Int(index.load(fromByteOffset: slot * Self.entrySize + 8, as: UInt32.self))
            slot = slot + 1 == capacity ? 0 : slot + 1
        }
        return total
    }

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
        // and a quarter more, instead of doubling (and copying, in one turn of the loop) again
        // and again — up to 1 GiB at once (beyond, by doubling, as the quota lets it). A page of
        // the file is only made when a message lands on it or the writer comes near it (at most
        // as far ahead as it has written: `keepPagesAhead`): a guess too big costs address
        // space, not memory.
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
        // The copy writes the first `live` bytes of the new area and the index entries of
        // `first...last`: their pages are made in one call each instead of one fault each (a ring
        // of 100 MiB is 25,000 faults, which a virtual machine takes tens of milliseconds over,
        // while every client waits).
        bigger.prefault(from: first, through: last, dataBytes: live)
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
}

extension RingFile {
    /// MADV_POPULATE_WRITE (Linux 5.14): prefaults a range writable.
    static let populateWrite: Int32 = 23

    /// Makes the pages of the index entries of `first...last` and of the first `dataBytes` of
    /// the data area present and writable at once (best effort: an older kernel leaves them to
    /// fault in). Only those: the index of a big ring that holds few messages stays unmade.
    func prefault(from first: UInt64, through last: UInt64, dataBytes: Int) {
        let count = min(Int(last - first + 1), capacity)
        let slot = Int((first - 1) % UInt64(capacity))
        let end = slot + count
        populate(bytes: (indexOffset + slot * Self.entrySize)..<(indexOffset + min(end, capacity) * Self.entrySize))
        if end > capacity { populate(bytes: indexOffset..<(indexOffset + (end - capacity) * Self.entrySize)) }
        populate(bytes: dataOffset..<(dataOffset + min(dataBytes, dataSize)))
        presentData = max(presentData, min(dataBytes, dataSize))
        presentIndex = max(presentIndex, count * Self.entrySize)
    }

    /// Makes the pages that hold the file's bytes `range` present and writable (those wholly
    /// inside the file's memory: a ring in the heap need not start or end on a page).
    func populate(bytes range: Range<Int>) {
        guard !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let memory = Int(bitPattern: base)
        let start = max((memory + range.lowerBound) & ~(page - 1), (memory + page - 1) & ~(page - 1))
        let end = min((memory + range.upperBound + page - 1) & ~(page - 1), (memory + length) & ~(page - 1))
        guard end > start, let address = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(address, end - start, Self.populateWrite)
    }
}
