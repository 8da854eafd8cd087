@testable import CometState
import Glibc
import XCTest

/// A protected mapped reader's position page: what the reader writes reaches the daemon, what the
/// daemon asks reaches the reader, and nothing the reader does can resize it under the daemon.
final class PositionPageTests: XCTestCase {
    /// The reader's side, as libcomet does it: its own mapping of the descriptor it was given.
    private func readerMapping(_ fd: Int32) throws -> UnsafeMutableRawPointer {
        let mapped = try XCTUnwrap(mmap(nil, PositionPage.length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
        XCTAssertNotEqual(mapped, MAP_FAILED)
        return mapped
    }

    func testTheReaderAndTheDaemonSeeEachOther() throws {
        let (page, fd) = try PositionPage.create(start: 41)
        let reader = try readerMapping(fd)
        close(fd)  // the daemon keeps no descriptor; the mappings stay
        defer { munmap(reader, PositionPage.length) }
        XCTAssertEqual(page.read, 41, "starts where the reader is known to be")
        XCTAssertFalse(page.wanted)
        reader.storeBytes(of: UInt64(500), toByteOffset: PositionPage.readOffset, as: UInt64.self)
        XCTAssertEqual(page.read, 500, "the daemon reads what the reader wrote")
        XCTAssertEqual(reader.load(fromByteOffset: PositionPage.wantedOffset, as: UInt64.self), 0)
        XCTAssertEqual(page.want(), 500, "asking returns the position as it is after the request")
        XCTAssertNotEqual(reader.load(fromByteOffset: PositionPage.wantedOffset, as: UInt64.self), 0, "the reader sees the request")
        page.settle()
        XCTAssertEqual(reader.load(fromByteOffset: PositionPage.wantedOffset, as: UInt64.self), 0, "and its end")
    }

    func testTheReaderCannotResizeIt() throws {
        let (page, fd) = try PositionPage.create(start: 1)
        defer { close(fd) }
        XCTAssertEqual(ftruncate(fd, 0), -1)
        XCTAssertEqual(errno, EPERM, "shrinking would fault the daemon's reads: sealed")
        XCTAssertEqual(ftruncate(fd, off_t(1 << 20)), -1)
        XCTAssertEqual(errno, EPERM)
        // Reopened through /proc (as another process could), still sealed.
        let again = open("/proc/self/fd/\(fd)", O_RDWR)
        XCTAssertGreaterThanOrEqual(again, 0)
        defer { close(again) }
        XCTAssertEqual(ftruncate(again, 0), -1)
        XCTAssertEqual(page.read, 1, "the daemon still reads it")
    }

    func testItSaysWhenItIsGone() throws {
        var released = 0
        var (page, fd): (PositionPage?, Int32) = try PositionPage.create(start: 1) { released += 1 }
        close(fd)
        XCTAssertNotNil(page)
        page = nil
        XCTAssertEqual(released, 1)
    }
}
