import CometWire
import NIOCore
import XCTest

final class MessageBatchTests: XCTestCase {
    private let texts = ["", "a", "bc", String(repeating: "x", count: 300), "last"]

    /// A PUSH_BATCH of `texts` through the encoder and the decoder.
    private func decoded(_ texts: [String]) throws -> MessageBatch {
        var frame = ByteBuffer()
        Request(id: 9, .pushBatch(channel: 3, payloads: MessageBatch(texts.map { ByteBuffer(string: $0) }))).encode(into: &frame)
        let body = try XCTUnwrap(try FrameDecoder().nextFrame(from: &frame))
        guard case .pushBatch(3, let payloads) = try Request.decode(body: body).operation else {
            XCTFail("not a PUSH_BATCH")
            return []
        }
        return payloads
    }

    private func strings(_ batch: MessageBatch) -> [String] {
        batch.withPayloads { payloads in
            var out: [String] = []
            while let payload = payloads.next() { out.append(String(decoding: payload, as: UTF8.self)) }
            XCTAssertNil(payloads.next(), "nothing after the last message")
            return out
        }
    }

    func testDecodedBatchIsReadInPlaceInOrder() throws {
        let batch = try decoded(texts)
        XCTAssertEqual(batch.count, texts.count)
        XCTAssertEqual(batch.payloadBytes, texts.reduce(0) { $0 + $1.utf8.count })
        XCTAssertEqual(strings(batch), texts)
        XCTAssertEqual(batch.buffers.map { String(buffer: $0) }, texts)
    }

    func testDropFirstAndPrefixKeepCountsAndBytes() throws {
        let batch = try decoded(texts)
        for n in 0...texts.count + 1 {
            let rest = batch.dropFirst(n), head = batch.prefix(n)
            let kept = Array(texts.dropFirst(n)), first = Array(texts.prefix(n))
            XCTAssertEqual(strings(rest), kept, "dropFirst(\(n))")
            XCTAssertEqual(rest.count, kept.count)
            XCTAssertEqual(rest.payloadBytes, kept.reduce(0) { $0 + $1.utf8.count })
            XCTAssertEqual(strings(head), first, "prefix(\(n))")
            XCTAssertEqual(head.count, first.count)
            XCTAssertEqual(head.payloadBytes, first.reduce(0) { $0 + $1.utf8.count })
        }
        XCTAssertEqual(strings(batch.dropFirst(1).prefix(2)), ["a", "bc"])
    }

    func testOneMessageIsNotCopiedAndEncodesAsABatch() throws {
        let one = MessageBatch(one: ByteBuffer(string: "solo"))
        XCTAssertEqual(one.count, 1)
        XCTAssertEqual(strings(one), ["solo"])
        XCTAssertEqual(strings(one.prefix(1)), ["solo"])
        XCTAssertTrue(one.dropFirst(1).isEmpty)
        var frame = ByteBuffer()
        Request(id: 1, .pushNumbered(channel: 1, number: 4, payloads: one)).encode(into: &frame)
        let body = try XCTUnwrap(try FrameDecoder().nextFrame(from: &frame))
        guard case .pushNumbered(1, 4, let payloads) = try Request.decode(body: body).operation else { return XCTFail() }
        XCTAssertEqual(strings(payloads), ["solo"])
    }

    func testATypedErrorThrownWhileReadingComesOutAsIs() throws {
        struct Stop: Error, Equatable { let at: Int }
        let batch = try decoded(texts)
        XCTAssertThrowsError(
            try batch.withPayloads { (payloads) throws(Stop) -> Void in
                var index = 0
                while payloads.next() != nil {
                    if index == 2 { throw Stop(at: index) }
                    index += 1
                }
            }
        ) { XCTAssertEqual($0 as? Stop, Stop(at: 2)) }
    }

    /// A PUSH_BATCH body whose batch part is `batch` (count, then entries as given).
    private func decodeBatchBody(_ batch: [UInt8]) throws -> Request {
        var body = ByteBuffer()
        body.writeInteger(Opcode.pushBatch.rawValue)
        body.writeInteger(UInt32(1))
        body.writeInteger(UInt64(2))
        body.writeBytes(batch)
        return try Request.decode(body: body)
    }

    func testLyingLengthsAreRefusedBeforeAnyMessageIsRead() {
        let cases: [(String, [UInt8], String)] = [
            ("count above what the frame can hold", [0, 0, 0, 9, 0, 0, 0, 0], "exceeds frame"),
            ("a length past the end", [0, 0, 0, 1, 0, 0, 0, 5, 0x61, 0x62], "truncated batch message"),
            ("second entry cut in its length field", [0, 0, 0, 2, 0, 0, 0, 1, 0x61, 0, 0, 0], "truncated field message length"),
            ("a length near 4 GiB", [0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0x61], "truncated batch message"),
        ]
        for (what, bytes, message) in cases {
            XCTAssertThrowsError(try decodeBatchBody(bytes), what) { error in
                let wire = error as? WireError
                XCTAssertEqual(wire?.code, .malformedFrame, what)
                XCTAssertTrue(wire?.message.contains(message) == true, "\(what): \(String(describing: wire))")
            }
        }
        // Bytes after the last entry are the request's trailing bytes: refused too.
        XCTAssertThrowsError(try decodeBatchBody([0, 0, 0, 1, 0, 0, 0, 1, 0x61, 0x62]))
        XCTAssertNoThrow(try decodeBatchBody([0, 0, 0, 2, 0, 0, 0, 1, 0x61, 0, 0, 0, 0]))
    }
}
