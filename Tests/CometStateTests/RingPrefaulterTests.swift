@testable import CometState
import Glibc
import XCTest

/// The pages of a filling ring are made present ahead of its writer, off its thread, never
/// further ahead than it has written (so an estimate too big costs no memory), and without
/// touching a byte.
final class RingPrefaulterTests: XCTestCase {
    private let page = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// A new buffered ring file of `capacity` messages and a data area of `dataSize` bytes.
    private func ringFile(_ name: String, capacity: Int, dataSize: Int, backing: RingFile.Backing = .memfd) throws -> RingFile {
        try RingFile.create(
            RingMeta(kind: .buffered, id: 1, name: name, epoch: 1, capacity: capacity, creator: PeerImage(pid: 1, uid: 0, gid: 0),
                tokenHigh: 0, tokenLow: 0),
            dataSize: dataSize, created: 1, backing: backing)
    }

    /// Whole pages within the data area `range` that are resident (mincore).
    private func resident(_ file: RingFile, data range: Range<Int>) -> Int {
        resident(file, bytes: (file.dataOffset + range.lowerBound)..<(file.dataOffset + range.upperBound))
    }

    /// Whole pages within the file's bytes `range` that are resident.
    private func resident(_ file: RingFile, bytes range: Range<Int>) -> Int {
        let start = (Int(bitPattern: file.base) + range.lowerBound + page - 1) & ~(page - 1)
        let end = (Int(bitPattern: file.base) + range.upperBound) & ~(page - 1)
        let count = (end - start) / page
        var vector = [UInt8](repeating: 0, count: count)
        XCTAssertEqual(mincore(UnsafeMutableRawPointer(bitPattern: start), count * page, &vector), 0, "mincore: errno \(errno)")
        return vector.filter { $0 & 1 == 1 }.count
    }

    /// Writes messages of 1000 bytes (each with its number) until `bytes` are written.
    private func write(through bytes: Int, into file: RingFile, capacity: Int) {
        var payload = [UInt8](repeating: 0x5a, count: 1000)
        while Int(file.value(.head, UInt64.self)) < bytes {
            let sequence = file.last + 1
            let first = sequence > UInt64(capacity) ? sequence - UInt64(capacity) + 1 : file.first
            var batch = file.beginBatch(from: sequence, first: first)
            for _ in 0..<16 {
                withUnsafeBytes(of: batch.sequence) { payload.replaceSubrange(0..<8, with: $0) }
                XCTAssertTrue(payload.withUnsafeBytes { file.write($0, into: &batch) })
            }
            file.publish(batch)
        }
    }

    private func waitUntil(_ condition: () -> Bool) -> Bool {
        for _ in 0..<500 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    func testPagesAheadOfTheWriterArePresentAndNoFurther() throws {
        for backing in [RingFile.Backing.memfd, .heap] {
            let capacity = 100_000
            let file = try ringFile("big", capacity: capacity, dataSize: 64 << 20, backing: backing)
            XCTAssertEqual(resident(file, data: 0..<(64 << 20)), 0, "\(backing): nothing is made before a write")
            write(through: 3 << 20, into: file, capacity: capacity)
            let head = Int(file.value(.head, UInt64.self))
            // Ahead of the head, pages come without a write (as far ahead as was written, asked
            // for a MiB at a time: at least the next MiB by now).
            let ahead = head + page
            let wanted = (1 << 20) / page - 1
            XCTAssertTrue(
                waitUntil { resident(file, data: ahead..<(ahead + (1 << 20))) >= wanted },
                "\(backing): the MiB after the head is present (\(resident(file, data: ahead..<(ahead + (1 << 20)))) pages)")
            XCTAssertEqual(resident(file, data: (16 << 20)..<(64 << 20)), 0, "\(backing): nothing far ahead of the writer")
            // Nothing written was changed, and what lies ahead is still zero.
            var expected: UInt64 = 1
            _ = file.forEach(from: file.first, through: file.last) { bytes in
                XCTAssertEqual(bytes.load(as: UInt64.self), expected)
                XCTAssertTrue(bytes.dropFirst(8).allSatisfy { $0 == 0x5a })
                expected += 1
                return true
            }
            XCTAssertEqual(expected, file.last + 1)
            let zeros = UnsafeRawBufferPointer(start: file.base + file.dataOffset + head, count: 2 << 20)
            XCTAssertTrue(zeros.allSatisfy { $0 == 0 })
        }
    }

    /// The index is followed the same way: 300,000 messages of 16 bytes into a million-message
    /// ring find the next MiB of index slots present, and nothing 12 MiB or more into it; from a
    /// first slot near the end of the index, the slots ahead are at its start.
    func testIndexSlotsAheadOfTheWriterArePresentAndNoFurther() throws {
        for backing in [RingFile.Backing.memfd, .heap] {
            let capacity = 1_000_000
            let file = try ringFile("slots", capacity: capacity, dataSize: 64 << 20, backing: backing)
            let payload = [UInt8](repeating: 3, count: 16)
            while file.last < 300_000 {
                var batch = file.beginBatch(from: file.last + 1, first: file.first)
                for _ in 0..<256 { XCTAssertTrue(payload.withUnsafeBytes { file.write($0, into: &batch) }) }
                file.publish(batch)
            }
            let next = Int(file.last) * RingFile.entrySize + page
            let ahead = (file.indexOffset + next)..<(file.indexOffset + next + (1 << 20))
            XCTAssertTrue(
                waitUntil { resident(file, bytes: ahead) >= (1 << 20) / page - 1 },
                "\(backing): the MiB of slots after the last written is present (\(resident(file, bytes: ahead)) pages)")
            let far = (file.indexOffset + (12 << 20))..<(file.indexOffset + capacity * RingFile.entrySize)
            XCTAssertEqual(resident(file, bytes: far), 0, "\(backing): nothing far ahead in the index")
        }
        // A file whose first message's slot is near the end of the index goes round to its start.
        let file = try ringFile("round", capacity: 1_000_000, dataSize: 64 << 20)
        file.restart(at: 900_001)
        let payload = [UInt8](repeating: 4, count: 16)
        while file.last < 1_200_000 {
            var batch = file.beginBatch(from: file.last + 1, first: file.first)
            for _ in 0..<256 { XCTAssertTrue(payload.withUnsafeBytes { file.write($0, into: &batch) }) }
            file.publish(batch)
        }
        let next = Int((file.last) % 1_000_000) * RingFile.entrySize + page
        let ahead = (file.indexOffset + next)..<(file.indexOffset + next + (1 << 20))
        XCTAssertTrue(waitUntil { resident(file, bytes: ahead) >= (1 << 20) / page - 1 }, "past the end of the index, at its start")
        let far = (file.indexOffset + 500_000 * RingFile.entrySize)..<(file.indexOffset + 850_000 * RingFile.entrySize)
        XCTAssertEqual(resident(file, bytes: far), 0, "nothing between")
    }


    /// A ring of a million messages that holds a hundred moves to a file sized for them all (the
    /// estimate) when its first 4 KiB fill up: the copy makes the pages it writes, not the 16 MiB
    /// index nor the data area (a user's many big, nearly empty channels cost what they hold).
    func testAGrownRingMakesOnlyWhatItHolds() throws {
        for backing in [RingFile.Backing.memfd, .heap] {
            let capacity = 1_000_000
            var file = try ringFile("wide", capacity: capacity, dataSize: 4096, backing: backing)
            let payload = [UInt8](repeating: 7, count: 100)
            for _ in 0..<100 {
                let sequence = file.last + 1
                var batch = file.beginBatch(from: sequence, first: file.first)
                if !payload.withUnsafeBytes({ file.write($0, into: &batch) }) {
                    file = try file.grown(need: payload.count, created: 2)
                    batch = file.beginBatch(from: sequence, first: file.first)
                    XCTAssertTrue(payload.withUnsafeBytes { file.write($0, into: &batch) })
                }
                file.publish(batch)
            }
            XCTAssertEqual(file.last, 100)
            XCTAssertGreaterThan(file.dataSize, 64 << 20, "\(backing): sized for the capacity")
            let index = file.indexOffset..<(file.indexOffset + capacity * RingFile.entrySize)
            XCTAssertLessThanOrEqual(resident(file, bytes: index), 2, "\(backing): the index of 100 messages, not 16 MiB")
            XCTAssertLessThanOrEqual(resident(file, data: 0..<file.dataSize), 4, "\(backing): 10 KB of messages")
        }
    }

    func testASmallRingIsLeftToFaultIn() throws {
        let file = try ringFile("small", capacity: 1000, dataSize: 1 << 20)
        write(through: 600_000, into: file, capacity: 1000)
        usleep(100_000)
        let head = Int(file.value(.head, UInt64.self))
        let from = (head + page - 1) / page * page + page
        XCTAssertEqual(resident(file, data: from..<(1 << 20)), 0)
    }
}
