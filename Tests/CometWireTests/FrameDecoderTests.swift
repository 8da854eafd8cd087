import CometWire
import NIOCore
import XCTest

final class FrameDecoderTests: XCTestCase {
    /// Several frames of different kinds, back to back.
    func stream() -> ByteBuffer {
        var buffer = ByteBuffer()
        Request(id: 1, .hello(versions: [1, 2])).encode(into: &buffer)
        Request(id: 2, .create(name: "a/b", kind: .buffered, size: 5)).encode(into: &buffer)
        Request(id: 3, .pushBatch(channel: 7, payloads: MessageBatch((0..<50).map { ByteBuffer(string: "message \($0)") }))).encode(into: &buffer)
        Request(id: 4, .push(channel: 7, payload: ByteBuffer())).encode(into: &buffer)
        Request(id: 5, .subscribe(name: "x", position: .last(3), epoch: 0, wait: false)).encode(into: &buffer)
        return buffer
    }

    func decodeAll(_ chunks: [ByteBuffer]) throws -> [Request] {
        let decoder = FrameDecoder()
        var pending = ByteBuffer()
        var out: [Request] = []
        for var chunk in chunks {
            pending.writeBuffer(&chunk)
            while let body = try decoder.nextFrame(from: &pending) {
                out.append(try Request.decode(body: body))
            }
        }
        XCTAssertEqual(pending.readableBytes, 0, "bytes left over")
        return out
    }

    func testWholeAndByteAtATimeGiveTheSameFrames() throws {
        let whole = try decodeAll([stream()])
        let bytes = stream().readableBytesView.map { ByteBuffer(bytes: [$0]) }
        let trickled = try decodeAll(bytes)
        XCTAssertEqual(whole.map(\.id), [1, 2, 3, 4, 5])
        XCTAssertEqual(trickled.map(\.id), whole.map(\.id))
        guard case .pushBatch(7, let payloads) = trickled[2].operation else { return XCTFail() }
        XCTAssertEqual(payloads.buffers.map { String(buffer: $0) }, (0..<50).map { "message \($0)" })
        guard case .subscribe("x", .last(3), 0, false, .site, nil, false, false) = trickled[4].operation else { return XCTFail() }
    }

    func testIncompleteFrameConsumesNothing() throws {
        var full = stream()
        var partial = full.readSlice(length: 10)!
        XCTAssertNil(try FrameDecoder().nextFrame(from: &partial))
        XCTAssertEqual(partial.readableBytes, 10)
        var three = ByteBuffer(bytes: [0, 0, 0])
        XCTAssertNil(try FrameDecoder().nextFrame(from: &three))
    }

    func testOversizedLengthIsRejectedFromThePrefixAlone() {
        var buffer = ByteBuffer(bytes: [0x00, 0x10, 0x00, 0x01])  // 1 MiB + 1, no body yet
        XCTAssertThrowsError(try FrameDecoder().nextFrame(from: &buffer)) { error in
            XCTAssertEqual((error as? WireError)?.code, .frameTooLarge)
        }
        var huge = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF])
        XCTAssertThrowsError(try FrameDecoder(maxFrameSize: 4096).nextFrame(from: &huge))
    }

    func testZeroLengthIsMalformed() {
        var buffer = ByteBuffer(bytes: [0, 0, 0, 0])
        XCTAssertThrowsError(try FrameDecoder().nextFrame(from: &buffer)) { error in
            XCTAssertEqual((error as? WireError)?.code, .malformedFrame)
        }
    }

    func expectDecodeError(_ body: [UInt8], _ code: ErrorCode, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Request.decode(body: ByteBuffer(bytes: body)), file: file, line: line) { error in
            XCTAssertEqual((error as? WireError)?.code, code, file: file, line: line)
        }
    }

    func testTruncatedAndGarbageBodies() {
        expectDecodeError([0x01], .malformedFrame)  // no request id
        expectDecodeError([0x01, 0, 0, 0, 1, 2, 0, 1], .malformedFrame)  // 2 versions announced, 1 given
        expectDecodeError([0x02, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, 0x61], .malformedFrame)  // name cut short
        expectDecodeError([0x05, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xEE], .malformedFrame)  // trailing byte
        expectDecodeError([0x04, 0, 0, 0, 1] + [UInt8](repeating: 0, count: 8) + [0xFF, 0xFF, 0xFF, 0xFF], .malformedFrame)
        expectDecodeError([0x04, 0, 0, 0, 1] + [UInt8](repeating: 0, count: 8) + [0, 0, 0, 1, 0, 0, 0, 9, 1], .malformedFrame)
        expectDecodeError([0x7E, 0, 0, 0, 1], .unknownOperation)
        expectDecodeError([0x90, 0, 0, 0, 1], .unknownOperation)  // a server opcode from a client
        expectDecodeError([0x06, 0, 0, 0, 1, 0x80, 0] + [UInt8](repeating: 0, count: 16) + [0, 1, 0x61], .invalidArgument)
        expectDecodeError([0x06, 0, 0, 0, 1, 0, 9] + [UInt8](repeating: 0, count: 16) + [0, 1, 0x61], .invalidArgument)
        // RETURN without MAPPED; MAPPED and RETURN with PRIVATE.
        expectDecodeError([0x06, 0, 0, 0, 1, 0x10, 1] + [UInt8](repeating: 0, count: 16) + [0, 1, 0x61], .invalidArgument)
        expectDecodeError([0x06, 0, 0, 0, 1, 0x1A, 0] + [UInt8](repeating: 0, count: 16) + [0, 1, 0x61], .invalidArgument)
    }

    func testRandomGarbageNeverCrashesTheDecoders() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            let count = Int.random(in: 0..<64, using: &generator)
            var buffer = ByteBuffer(bytes: (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) })
            while let body = try? FrameDecoder(maxFrameSize: 64).nextFrame(from: &buffer) {
                _ = try? Request.decode(body: body)
                _ = try? ServerFrame.decode(body: body)
            }
        }
    }

    func testFatalAndNonFatalCodes() {
        XCTAssertTrue(ErrorCode.malformedFrame.isFatal)
        XCTAssertTrue(ErrorCode.frameTooLarge.isFatal)
        XCTAssertFalse(ErrorCode.noSuchChannel.isFatal)
        XCTAssertEqual(ErrorCode(rawValue: 999).name, "ERROR_999")
    }
}
