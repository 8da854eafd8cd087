import Dispatch
import Glibc

/// Makes the pages of a ring file's data area and index present ahead of its writer, on a
/// thread of its own. A page's first write costs the kernel a fault and the zeroing of the page (2–4 µs in a
/// virtual machine, more for a memfd than for the heap); a ring that fills up for the first time
/// would otherwise pay it on the event loop, once every fifty 64-byte pushes, while every client
/// of that loop waits. Populating does not change a byte of the file (MADV_POPULATE_WRITE only
/// makes pages present), so it never races the writer; a file freed before its turn is skipped.
final class RingPrefaulter: Sendable {
    static let shared = RingPrefaulter()

    private let queue = DispatchQueue(label: "comet.ring-prefault", qos: .utility)

    /// Makes the pages of `file`'s bytes `ranges` present (best effort: an older kernel leaves
    /// them to fault in).
    func populate(_ file: RingFile, bytes ranges: [Range<Int>]) {
        let target = Target(file)
        queue.async {
            guard let file = target.file else { return }
            for range in ranges { file.populate(bytes: range) }
        }
    }

    /// A weak reference to a file, handed to the prefaulter's thread: the file is only read
    /// there (its address and sizes, which never change), and kept alive while it is populated.
    private final class Target: @unchecked Sendable {
        weak var file: RingFile?
        init(_ file: RingFile) { self.file = file }
    }
}

extension RingFile {
    /// How far ahead of its head the writer keeps pages present: as far as it has written into
    /// the file, up to 4 MiB. A file sized for many more messages than it gets (sizes are
    /// estimated: `grown`) thus holds at most twice what was written, never the whole estimate.
    static let aheadMost = 4 << 20
    /// Pages are asked for in runs of at least this many bytes (or up to the end of the area).
    static let aheadRun = 1 << 20
    /// Data areas up to this size are left to fault in as they are written.
    static let aheadSmallest = 1 << 20

    /// Asks for the pages ahead of `head` (bytes ever written) and of the index slot of message
    /// `next`, every half run of data it writes, until the whole data area has been present once.
    @inline(__always)
    func keepPagesAhead(of head: UInt64, next: UInt64) {
        guard head >= nextPagesAhead else { return }
        askForPagesAhead(of: head, next: next)
    }

    @inline(never)
    private func askForPagesAhead(of head: UInt64, next: UInt64) {
        var ranges: [Range<Int>] = []
        let written = Int(min(head, UInt64(dataSize)))
        let target = min(dataSize, written + min(Self.aheadMost, written))
        let from = max(presentData, written)
        nextPagesAhead = target == dataSize ? .max : head + UInt64(Self.aheadRun / 2)
        if target > from, target - from >= Self.aheadRun || target == dataSize {
            presentData = target
            ranges.append((dataOffset + from)..<(dataOffset + target))
        }
        // The index is written slot after slot from the one of `indexFrom`, going round.
        let indexSize = capacity * Self.entrySize
        let indexWritten = next > indexFrom ? Int(min(next - indexFrom, UInt64(capacity))) * Self.entrySize : 0
        let indexTarget = min(indexSize, indexWritten + min(Self.aheadMost, indexWritten))
        let indexStart = max(presentIndex, indexWritten)
        if indexTarget > indexStart, indexTarget - indexStart >= Self.aheadRun || indexTarget == indexSize {
            presentIndex = indexTarget
            let origin = Int((indexFrom &- 1) % UInt64(capacity)) * Self.entrySize
            let (start, end) = (origin + indexStart, origin + indexTarget)
            if start < indexSize { ranges.append((indexOffset + start)..<(indexOffset + min(end, indexSize))) }
            if end > indexSize { ranges.append((indexOffset + max(start, indexSize) - indexSize)..<(indexOffset + end - indexSize)) }
        }
        if !ranges.isEmpty { RingPrefaulter.shared.populate(self, bytes: ranges) }
    }

    /// Makes the pages that hold the data bytes `range` present and writable.
    func populate(data range: Range<Int>) { populate(bytes: (dataOffset + range.lowerBound)..<(dataOffset + range.upperBound)) }
}
