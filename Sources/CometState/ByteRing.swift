import CometChannels

#if canImport(Glibc)
import Glibc
#endif

/// A site channel's one ring: its messages' bytes in a `RingFile` (a memfd when the daemon keeps
/// a store, the heap otherwise), written once per push and delivered from directly.
///
/// The file grows (moves to a bigger one) when its data area is full of messages still kept, and
/// shrinks when the ring is emptied; `moved` hears of each new file (the store keeps the current
/// one). Eviction is by count, as `MessageRing`'s: the file never drops a message for space.
/// Messages handed out (`forEach`, the subscript) point into the file: valid until the next change.
public final class ByteRing: ChannelRing {
    public typealias Payload = UnsafeRawBufferPointer

    public private(set) var file: RingFile
    public let capacity: Int
    /// Bytes counted per message besides its payload (`bytes`).
    public let overhead: Int
    public private(set) var firstSequence: UInt64 = 1
    public private(set) var lastSequence: UInt64 = 0
    private var payloadBytes = 0
    private let clock: () -> UInt64
    /// Told of every new file the ring moved to (bigger, emptied, or out of the memfd it could not grow).
    public var moved: ((RingFile) -> Void)?
    /// Counts the files the ring moved to: a mapped reader holding another generation's file
    /// must be given the current one.
    public private(set) var generation: UInt64 = 1

    /// An empty ring for `meta` (its capacity), its data area starting at `dataSize` bytes.
    public init(
        _ meta: RingMeta, overhead: Int, backing: RingFile.Backing, dataSize: Int = 4096,
        clock: @escaping () -> UInt64 = ByteRing.monotonic
    ) throws(StateError) {
        self.file = try RingFile.create(meta, dataSize: dataSize, created: clock(), backing: backing)
        self.capacity = file.capacity
        self.overhead = overhead
        self.clock = clock
    }

    /// CLOCK_MONOTONIC in nanoseconds (which file is newest, after a crash).
    public static func monotonic() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    public var count: Int { Int(lastSequence + 1 - firstSequence) }
    public var bytes: Int { payloadBytes + overhead * count }

    @inlinable @discardableResult
    public func append(_ payload: UnsafeRawBufferPointer) -> UInt64 { append(count: 1) { _ in payload } }

    @discardableResult
    public func append(count: Int, _ make: (Int) -> UnsafeRawBufferPointer) -> UInt64 {
        let start = lastSequence + 1
        guard count > 0 else { return start }
        let end = lastSequence + UInt64(count)
        let first = max(firstSequence, end >= UInt64(capacity) ? end - UInt64(capacity) + 1 : 1)
        if first > firstSequence {
            // Uncounted and unreadable before their bytes can be overwritten.
            let gone = min(first, lastSequence + 1)
            payloadBytes -= file.totalLength(from: firstSequence, count: Int(gone - firstSequence))
            file.evict(before: first)
        }
        var batch = file.beginBatch(from: max(start, first), first: first)
        for i in 0..<count {
            let payload = make(i)
            guard start + UInt64(i) >= first else { continue }  // evicted by the same batch
            if !file.write(payload, into: &batch) {
                file.publish(batch)
                grow(need: payload.count)
                batch = file.beginBatch(from: batch.sequence, first: first)
                let written = file.write(payload, into: &batch)
                precondition(written, "a grown ring file takes the message it grew for")
            }
            payloadBytes += payload.count
        }
        file.publish(batch)
        firstSequence = first
        lastSequence = end
        return start
    }

    public func append(_ payload: UnsafeRawBufferPointer, sequence: UInt64) {
        precondition(sequence > lastSequence, "relayed sequence numbers increase")
        if sequence != lastSequence + 1 { restart(at: sequence) }
        append(payload)
    }

    public func restart(at next: UInt64) {
        let next = max(next, 1)
        file.restart(at: next)
        firstSequence = next
        lastSequence = next - 1
        payloadBytes = 0
    }

    /// Empties the ring and gives back its memory (a smaller file).
    public func removeAll() {
        let next = lastSequence + 1
        if file.dataSize > 4096, let small = try? RingFile.create(file.meta, dataSize: 4096, created: clock(), backing: file.backing) {
            small.setFlags(file.flags)
            small.setAcknowledged(file.acknowledged)
            replace(with: small)
        }
        restart(at: next)
    }

    @inlinable
    public func forEach(from start: UInt64, _ body: (borrowing UnsafeRawBufferPointer) -> Bool) -> UInt64 {
        guard start >= firstSequence, start <= lastSequence else { return start }
        return file.forEach(from: start, through: lastSequence) { body($0) }
    }

    public subscript(sequence: UInt64) -> UnsafeRawBufferPointer? {
        guard sequence >= firstSequence, sequence <= lastSequence else { return nil }
        return file.payload(sequence)
    }

    public func bytesAfterAppending(count adding: Int, keptWeight: Int) -> Int {
        let evictOld = min(count, max(0, count + adding - capacity))
        return bytes - file.totalLength(from: firstSequence, count: evictOld) - evictOld * overhead + keptWeight
    }

    /// Keeps the producer's numbering in the file (before the numbered messages are published).
    public func setNumberedFrom(_ origin: UInt64) { file.setNumberedFrom(origin) }

    /// Keeps a private channel's state in the file (what a crash leaves).
    public func setFlags(_ flags: UInt32) { file.setFlags(flags) }
    public func setAcknowledged(_ sequence: UInt64) { file.setAcknowledged(sequence) }

    /// Keeps the producer's token in the file (ADOPT after a crash).
    public func setToken(high: UInt64, low: UInt64) { file.setToken(high: high, low: low) }

    /// Moves to a bigger file with room for a message of `need` bytes; a memfd that cannot grow
    /// gives way to the heap (the channel then lives on without crash storage).
    private func grow(need: Int) {
        let bigger: RingFile
        do {
            bigger = try file.grown(need: need, created: clock())
        } catch {
            do {
                bigger = try file.grown(need: need, created: clock(), backing: .heap)
            } catch {
                fatalError("cannot grow a ring in the heap: \(error)")
            }
        }
        replace(with: bigger)
    }

    private func replace(with other: RingFile) {
        file = other
        generation += 1
        moved?(other)
    }

    /// Makes the ring shareable with readers that map it: a ring in the heap moves into a
    /// memfd. False when no memfd could be made.
    public func share() -> Bool {
        guard file.backing == .heap else { return true }
        guard let shared = try? file.grown(need: 0, created: clock(), backing: .memfd) else { return false }
        replace(with: shared)
        return true
    }
}
