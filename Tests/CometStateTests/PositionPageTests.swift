@testable import CometState
import Glibc
import XCTest

/// A protected mapped reader's position page: what the reader writes reaches the daemon, what the
/// daemon asks reaches the reader, and nothing the reader does can resize it under the daemon.
final class PositionPageTests: XCTestCase {
    /// The reader's side, as libcomet does it: its own mapping of the descriptor it was given.
    private func readerMapping(_ page: PositionPage) throws -> UnsafeMutableRawPointer {
        let mapped = try XCTUnwrap(mmap(nil, PositionPage.length, PROT_READ | PROT_WRITE, MAP_SHARED, page.fd, 0))
        XCTAssertNotEqual(mapped, MAP_FAILED)
        return mapped
    }

    func testTheReaderAndTheDaemonSeeEachOther() throws {
        let page = try PositionPage.create(start: 41)
        XCTAssertEqual(page.read, 41, "starts where the subscription starts")
        XCTAssertFalse(page.wanted)
        let reader = try readerMapping(page)
        defer { munmap(reader, PositionPage.length) }
        reader.storeBytes(of: UInt64(500), toByteOffset: PositionPage.readOffset, as: UInt64.self)
        XCTAssertEqual(page.read, 500, "the daemon reads what the reader wrote")
        XCTAssertEqual(reader.load(fromByteOffset: PositionPage.wantedOffset, as: UInt64.self), 0)
        XCTAssertEqual(page.want(), 500, "asking returns the position as it is after the request")
        XCTAssertNotEqual(reader.load(fromByteOffset: PositionPage.wantedOffset, as: UInt64.self), 0, "the reader sees the request")
        page.settle()
        XCTAssertEqual(reader.load(fromByteOffset: PositionPage.wantedOffset, as: UInt64.self), 0, "and its end")
    }

    func testTheReaderCannotResizeIt() throws {
        let page = try PositionPage.create(start: 1)
        XCTAssertEqual(ftruncate(page.fd, 0), -1)
        XCTAssertEqual(errno, EPERM, "shrinking would fault the daemon's reads: sealed")
        XCTAssertEqual(ftruncate(page.fd, off_t(1 << 20)), -1)
        XCTAssertEqual(errno, EPERM)
        // Reopened through /proc (as another process could), still sealed.
        let again = open("/proc/self/fd/\(page.fd)", O_RDWR)
        XCTAssertGreaterThanOrEqual(again, 0)
        defer { close(again) }
        XCTAssertEqual(ftruncate(again, 0), -1)
        XCTAssertEqual(page.read, 1, "the daemon still reads it")
    }
}
