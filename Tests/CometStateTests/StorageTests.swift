@testable import CometState
import Glibc
import NIOCore
import XCTest

final class StorageTests: XCTestCase {
    let peer = PeerImage(pid: 7, uid: 1000, gid: 100)

    private func meta(capacity: Int, kind: RingMeta.Kind = .buffered) -> RingMeta {
        RingMeta(kind: kind, id: 42, name: "news.local", epoch: 0xabc, session: 9, capacity: capacity, creator: peer, tokenHigh: 1, tokenLow: 2)
    }

    /// Pushes `payloads` as the daemon does: growing the file when a push does not fit.
    private func push(_ texts: [String], into file: inout RingFile, capacity: Int) throws {
        for text in texts {
            let sequence = file.last + 1
            let first = sequence > UInt64(capacity) ? sequence - UInt64(capacity) + 1 : file.first
            let bytes = Array(text.utf8)
            var batch = file.beginBatch(from: sequence, first: first)
            if !bytes.withUnsafeBytes({ file.write($0, into: &batch) }) {
                file = try file.grown(need: bytes.count, created: 2)
                batch = file.beginBatch(from: sequence, first: first)
                XCTAssertTrue(bytes.withUnsafeBytes { file.write($0, into: &batch) })
            }
            file.publish(batch)
        }
    }

    func testRingKeepsTheLastMessagesAcrossGrowthAndReopening() throws {
        var file = try RingFile.create(meta(capacity: 50), dataSize: 100, created: 1)
        let texts = (1...1000).map { "message \($0) " + String(repeating: "x", count: $0 % 300) }
        try push(texts, into: &file, capacity: 50)
        XCTAssertGreaterThan(file.dataSize, 4096, "grew for messages of up to 300 bytes × 50")
        // What the next process finds: the same memfd through another descriptor.
        let again = try RingFile(fd: dup(file.fd))
        XCTAssertTrue(again.isValid)
        XCTAssertEqual(again.meta, meta(capacity: 50))
        let (first, payloads) = again.messages()
        XCTAssertEqual(first, 951)
        XCTAssertEqual(payloads.map { String(buffer: $0) }, Array(texts.suffix(50)))
    }

    /// The producer numbering's origin is kept in the header, through growth and reopening.
    func testNumberingOriginSurvivesGrowthAndReopening() throws {
        var file = try RingFile.create(meta(capacity: 50), dataSize: 100, created: 1)
        XCTAssertEqual(file.meta.numberedFrom, 0)
        try push(["before"], into: &file, capacity: 50)
        file.setNumberedFrom(2)
        try push((1...200).map { "numbered \($0) " + String(repeating: "y", count: 200) }, into: &file, capacity: 50)
        XCTAssertGreaterThan(file.dataSize, 4096, "grew")
        let again = try RingFile(fd: dup(file.fd))
        XCTAssertEqual(again.meta.numberedFrom, 2)
        XCTAssertEqual(again.last, 201)
    }

    func testEmptyRestartedAndStateFields() throws {
        let file = try RingFile.create(meta(capacity: 4, kind: .private), dataSize: 0, created: 5)
        XCTAssertEqual(file.messages().payloads.count, 0)
        XCTAssertEqual(file.messages().first, 1)
        var moving = file
        try push(["a", "b", "c"], into: &moving, capacity: 4)
        moving.setAcknowledged(2)
        moving.setFlags(RingFile.closedFlag)
        moving.restart(at: 10)
        XCTAssertEqual(moving.messages().first, 10)
        XCTAssertEqual(moving.messages().payloads.count, 0)
        let again = try RingFile(fd: dup(moving.fd))
        XCTAssertEqual(again.acknowledged, 2)
        XCTAssertEqual(again.flags, RingFile.closedFlag)
        XCTAssertEqual(again.created, 5)
        XCTAssertEqual(again.meta.kind, .private)
    }

    /// The bytes of `file` in a memfd of their own, without the seals: what damage could look like.
    private func unsealedCopy(of file: RingFile) -> Int32 {
        var bytes = [UInt8](repeating: 0, count: file.length)
        XCTAssertEqual(pread(file.fd, &bytes, file.length, 0), file.length)
        let fd = Int32(memfdCreate("damaged"))
        XCTAssertEqual(pwrite(fd, bytes, bytes.count, 0), bytes.count)
        return fd
    }

    func testRingFilesAreSealedAgainstWriting() throws {
        let file = try RingFile.create(meta(capacity: 10), dataSize: 4096, created: 1)
        var byte: UInt8 = 1
        XCTAssertEqual(pwrite(file.fd, &byte, 1, 16), -1)
        XCTAssertEqual(errno, EPERM)
        XCTAssertEqual(ftruncate(file.fd, 0), -1)
        XCTAssertEqual(mmap(nil, file.length, PROT_READ | PROT_WRITE, MAP_SHARED, file.fd, 0), MAP_FAILED)
        // The daemon's own mapping still writes.
        file.setFlags(RingFile.closedFlag)
        XCTAssertEqual(try RingFile(fd: dup(file.fd)).flags, RingFile.closedFlag)
    }

    func testDamagedFilesAreRefusedNotTrusted() throws {
        let file = try RingFile.create(meta(capacity: 10), dataSize: 4096, created: 1)
        // Absurd sizes in the header: refused when mapped.
        let damaged = unsealedCopy(of: file)
        var huge = UInt64.max
        XCTAssertEqual(pwrite(damaged, &huge, 8, 16), 8)
        XCTAssertThrowsError(try RingFile(fd: damaged))
        // A sane file whose numbers and index entries are garbage: what it holds whole, nothing else.
        let other = try RingFile.create(meta(capacity: 10), dataSize: 4096, created: 1)
        var batch = other.beginBatch(from: 1, first: 1)
        for text in ["a", "b", "c"] { _ = Array(text.utf8).withUnsafeBytes { other.write($0, into: &batch) } }
        other.publish(batch)
        let garbled = unsealedCopy(of: other)
        var junk: [UInt8] = Array(repeating: 0xff, count: 16)
        XCTAssertEqual(pwrite(garbled, &junk, 16, 4096 + 16), 16)  // entry of message 2
        var last = UInt64.max
        XCTAssertEqual(pwrite(garbled, &last, 8, 112), 8)
        let again = try RingFile(fd: garbled)
        XCTAssertLessThanOrEqual(again.messages().payloads.count, 10)
    }

    func testAFileWithoutHeaderIsNotValid() throws {
        let fd = Int32(memfdCreate("junk"))
        XCTAssertEqual(ftruncate(fd, 3 * 4096), 0)
        XCTAssertThrowsError(try RingFile(fd: fd), "a file of zeros has no sizes: refused")
        close(fd)
        // One whose header was written but not its magic (made when the process died): not valid.
        let made = try RingFile.create(meta(capacity: 4), dataSize: 4096, created: 1)
        let unfinished = unsealedCopy(of: made)
        var zero: UInt64 = 0
        XCTAssertEqual(pwrite(unfinished, &zero, 8, 0), 8)
        XCTAssertFalse(try RingFile(fd: unfinished).isValid)
        let tiny = Int32(memfdCreate("tiny"))
        XCTAssertThrowsError(try RingFile(fd: tiny))
        close(tiny)
    }

    func testSessionsAreKeptAndSlotsReused() throws {
        let file = try SessionFile.create(slots: 64, created: 3)
        var slots: [Int] = []
        for i in 1...64 { slots.append(try XCTUnwrap(file.add(SessionRecord(id: UInt64(i), tokenHigh: UInt64(i), tokenLow: 7, uid: 1000)))) }
        XCTAssertNil(file.add(SessionRecord(id: 65, tokenHigh: 0, tokenLow: 0, uid: 0)), "full: the caller grows")
        file.remove(slot: slots[0])
        XCTAssertNotNil(file.add(SessionRecord(id: 66, tokenHigh: 1, tokenLow: 1, uid: 0)))
        let again = try SessionFile(fd: dup(file.fd))
        let ids = Set(again.records().map(\.record.id))
        XCTAssertEqual(ids.count, 64)
        XCTAssertFalse(ids.contains(1))
        XCTAssertTrue(ids.contains(66))
        XCTAssertEqual(again.created, 3)
        XCTAssertNil(again.add(SessionRecord(id: 67, tokenHigh: 0, tokenLow: 0, uid: 0)))
    }
}
