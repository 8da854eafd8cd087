import CometChannels
@testable import CometState
import Glibc
import NIOCore
import XCTest

/// The daemon's one ring per site channel: the same behaviour as the heap ring (`MessageRing`),
/// kept in a file a crash leaves readable and (later) a reader can map.
final class ByteRingTests: XCTestCase {
    let peer = PeerImage(pid: 7, uid: 1000, gid: 100)

    private func meta(capacity: Int) -> RingMeta {
        RingMeta(kind: .buffered, id: 7, name: "ring.test", epoch: 99, capacity: capacity, creator: peer, tokenHigh: 0, tokenLow: 0)
    }

    private func contents(_ ring: ByteRing) -> [[UInt8]] {
        var all: [[UInt8]] = []
        _ = ring.forEach(from: ring.firstSequence) { all.append(Array($0)); return true }
        return all
    }

    private func contents(_ ring: MessageRing<[UInt8]>) -> [[UInt8]] {
        var all: [[UInt8]] = []
        _ = ring.forEach(from: ring.firstSequence) { all.append(copy $0); return true }
        return all
    }

    /// Random pushes, batches, relayed gaps, restarts and emptying, each checked against the heap
    /// ring: numbering, contents, every message by number, bytes and the quota forecast.
    func testBehavesAsTheHeapRingUnderRandomOperations() throws {
        for (capacity, backing) in [(1, RingFile.Backing.heap), (7, .memfd), (64, .heap), (300, .memfd)] {
            var seed = UInt64(capacity) &* 0x9e37_79b9_7f4a_7c15
            func next(_ bound: Int) -> Int {
                seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Int((seed >> 33) % UInt64(bound))
            }
            let ring = try ByteRing(meta(capacity: capacity), overhead: 48, backing: backing)
            var model = MessageRing<[UInt8]>(capacity: capacity, weigh: { $0.count + 48 })
            var moves = 0
            ring.moved = { _ in moves += 1 }
            func message() -> [UInt8] {
                let size = next(10) == 0 ? next(3000) : next(100)
                var bytes = [UInt8](repeating: UInt8(truncatingIfNeeded: next(256)), count: size)
                if size > 0 { bytes[size / 2] = UInt8(truncatingIfNeeded: next(256)) }
                return bytes
            }
            for step in 0..<2000 {
                switch next(20) {
                case 0..<10:
                    let m = message()
                    let seq = m.withUnsafeBytes { ring.append($0) }
                    XCTAssertEqual(seq, model.append(m))
                case 10..<16:
                    let batch = (0..<(1 + next(2 * capacity + 3))).map { _ in message() }
                    let weights = batch.map { $0.count + 48 }
                    XCTAssertEqual(ring.bytesAfterAppending(weights: weights), model.bytesAfterAppending(weights: weights))
                    let first = ring.append(count: batch.count) { i in batch[i].withUnsafeBytes { $0 } }
                    XCTAssertEqual(first, model.append(count: batch.count) { batch[$0] })
                case 16, 17:
                    let m = message()
                    let sequence = model.lastSequence + 1 + UInt64(next(3) == 0 ? next(2 * capacity + 2) : 0)
                    m.withUnsafeBytes { ring.append($0, sequence: sequence) }
                    model.append(m, sequence: sequence)
                case 18:
                    let at = model.lastSequence + 1 + UInt64(next(5))
                    ring.restart(at: at)
                    model.restart(at: at)
                default:
                    ring.removeAll()
                    model.removeAll()
                }
                XCTAssertEqual(ring.firstSequence, model.firstSequence, "step \(step)")
                XCTAssertEqual(ring.lastSequence, model.lastSequence, "step \(step)")
                XCTAssertEqual(ring.count, model.count, "step \(step)")
                XCTAssertEqual(ring.bytes, model.bytes, "step \(step)")
                if step % 5 == 0 || capacity < 64 { XCTAssertEqual(contents(ring), contents(model), "step \(step)") }
                let probe = model.firstSequence &+ UInt64(next(capacity + 2)) &- 1
                XCTAssertEqual(ring[probe].map { Array($0) }, model[probe], "step \(step)")
                // The file says the same (what a crash leaves).
                XCTAssertEqual(ring.file.last, ring.lastSequence)
                if step % 100 == 0 { XCTAssertEqual(ring.file.messages().payloads.map { Array($0.readableBytesView) }, contents(model)) }
            }
            if capacity > 1 { XCTAssertGreaterThan(moves, 0, "capacity \(capacity): grew or shrank at least once") }
        }
    }

    /// A ring in a memfd is the file the store keeps: opened again through another descriptor
    /// (as after a crash), it holds the channel's messages, its numbering and producer token.
    func testAMemfdRingReadsBackAsItsFile() throws {
        let ring = try ByteRing(meta(capacity: 100), overhead: 48, backing: .memfd)
        var files: [RingFile] = [ring.file]
        ring.moved = { files.append($0) }
        ring.setToken(high: 5, low: 6)
        ring.setNumberedFrom(3)
        let texts = (1...1000).map { "message \($0) " + String(repeating: "z", count: $0 % 200) }
        for text in texts { _ = Array(text.utf8).withUnsafeBytes { ring.append($0) } }
        XCTAssertGreaterThan(files.count, 1, "moved to bigger files")
        XCTAssertTrue(files.last === ring.file)
        XCTAssertGreaterThanOrEqual(ring.file.fd, 0)
        let again = try RingFile(fd: dup(ring.file.fd))
        XCTAssertTrue(again.isValid)
        XCTAssertEqual(again.meta.tokenHigh, 5)
        XCTAssertEqual(again.meta.tokenLow, 6)
        XCTAssertEqual(again.meta.numberedFrom, 3)
        let (first, payloads) = again.messages()
        XCTAssertEqual(first, 901)
        XCTAssertEqual(payloads.map { String(buffer: $0) }, Array(texts.suffix(100)))
    }

    /// Messages evicted by a push are unreadable (the header's `first`) before their bytes can be
    /// overwritten; a ring in the heap has no descriptor.
    func testEvictionIsPublishedFirstAndTheHeapHasNoDescriptor() throws {
        let ring = try ByteRing(meta(capacity: 3), overhead: 0, backing: .heap)
        XCTAssertEqual(ring.file.fd, -1)
        for i in 0..<5 { _ = [UInt8(i)].withUnsafeBytes { ring.append($0) } }
        XCTAssertEqual(ring.file.first, 3)
        XCTAssertEqual(ring.file.last, 5)
        XCTAssertEqual(contents(ring), [[2], [3], [4]])
        XCTAssertEqual(ring.bytes, 3)
    }
}
