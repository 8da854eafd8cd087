import CometWire
import NIOCore
import XCTest

/// The hex examples of docs/PROTOCOL.md, checked against the codec in both directions.
final class ProtocolVectorTests: XCTestCase {
    static let epoch: UInt64 = 0x1122_3344_5566_7788

    /// Every vector the document must hold, with the frame it encodes.
    static let requests: [String: Request] = [
        "hello": Request(id: 1, .hello(versions: [1])),
        "create": Request(id: 2, .create(name: "news", kind: .buffered, size: 1000)),
        "push": Request(id: 3, .push(channel: 1, payload: ByteBuffer(string: "hi"))),
        "push-batch": Request(id: 4, .pushBatch(channel: 1, payloads: [ByteBuffer(string: "a"), ByteBuffer(string: "bc")])),
        "close": Request(id: 5, .close(channel: 1)),
        "subscribe": Request(id: 6, .subscribe(name: "news", position: .from(2), epoch: epoch, wait: true)),
        "unsubscribe": Request(id: 7, .unsubscribe(subscription: 1)),
        "list": Request(id: 8, .list),
        "ping": Request(id: 9, .ping),
        "stats": Request(id: 0x15, .stats),
        "resume": Request(id: 10, .resume(session: 0xabc, tokenHigh: 0x0102_0304_0506_0708, tokenLow: 0x090a_0b0c_0d0e_0f10)),
        "create-private": Request(id: 11, .createPrivate(name: "mail", kind: .private, size: 100, session: 0xabc)),
        "subscribe-private": Request(id: 12, .subscribe(name: "mail", position: .next, epoch: 0, wait: false, scope: .clientProcess)),
        "ack": Request(id: 13, .ack(subscription: 3, sequence: 7)),
        "sessions": Request(id: 14, .sessions),
        "answer": Request(id: 15, .answer(channel: 0x8000_0000_0000_0002, pull: 1, payload: ByteBuffer(string: "hi"))),
        "wait-timeout": Request(id: 16, .waitTimeout(session: 0xabc, milliseconds: 1000)),
        "subscribe-external": Request(id: 17, .subscribeExternal(address: "unix:/run/comet/comet.sock", name: "news", history: 3, newest: false)),
        "subscribe-owner": Request(id: 18, .subscribe(name: "news", position: .next, epoch: 0, wait: true, owner: 1000)),
        "list-from": Request(id: 19, .listFrom(name: "news", scope: 0)),
        "sessions-from": Request(id: 20, .sessionsFrom(session: 0xabc)),
        "adopt": Request(id: 0x16, .adopt(channel: 1, tokenHigh: 0xa1a2_a3a4_a5a6_a7a8, tokenLow: 0xb1b2_b3b4_b5b6_b7b8)),
        "push-numbered": Request(id: 0x17, .pushNumbered(channel: 1, number: 5, payloads: [ByteBuffer(string: "a"), ByteBuffer(string: "bc")])),
        "mirror": Request(id: 0x18, .mirror(name: "remote.news", epoch: epoch, next: 1, size: 1000, newest: false)),
        "mirror-push": Request(id: 0x19, .mirrorPush(mirror: 0x4000_0000_0000_0001, first: 5, payloads: [ByteBuffer(string: "a"), ByteBuffer(string: "bc")])),
        "mirror-state": Request(id: 0x1a, .mirrorState(mirror: 0x4000_0000_0000_0001, state: .stalled, last: 5, reason: "no stream!")),
        "subscribe-mapped": Request(id: 0x1b, .subscribe(name: "news", position: .oldest, epoch: 0, wait: false, mapped: true)),
        "ring": Request(id: 0x1c, .ring(ticket: 0x0102_0304_0506_0708)),
        "subscribe-mapped-return": Request(
            id: 0x1d, .subscribe(name: "news", position: .oldest, epoch: 0, wait: false, mapped: true, returning: true)),
    ]
    static let owner = Owner(uid: 1000, gid: 100)

    static func ok(_ id: UInt32, _ reply: (any Reply)? = nil) -> ServerFrame {
        var body = ByteBuffer()
        reply?.write(to: &body)
        return .ok(requestID: id, body: body)
    }

    static let serverFrames: [String: ServerFrame] = [
        "hello-ok": ok(1, HelloReply(
            version: 1, maxFrameSize: 1 << 20, maxChannelSize: 1_000_000, maxNameLength: 255, sessionID: 0xabc,
            tokenHigh: 0x0102_0304_0506_0708, tokenLow: 0x090a_0b0c_0d0e_0f10, instance: 0x0c0e_0e0f_0c0e_0e0f,
            features: HelloReply.Features.numberedPushes)),
        "hello-ok-mirrors": ok(1, HelloReply(
            version: 1, maxFrameSize: 1 << 20, maxChannelSize: 1_000_000, maxNameLength: 255, sessionID: 0xabc,
            tokenHigh: 0x0102_0304_0506_0708, tokenLow: 0x090a_0b0c_0d0e_0f10, instance: 0x0c0e_0e0f_0c0e_0e0f,
            features: HelloReply.Features.numberedPushes | HelloReply.Features.mirrors)),
        "resume-ok": ok(10, ResumeReply(session: 0xabc)),
        "create-private-ok": ok(11, CreateReply(
            channel: 0x8000_0000_0000_0001, epoch: 0x0a0b_0c0d_0e0f_0102, tokenHigh: 0xa1a2_a3a4_a5a6_a7a8, tokenLow: 0xb1b2_b3b4_b5b6_b7b8)),
        "adopt-ok": ok(0x16, AdoptReply(channel: 1, epoch: epoch, lastSequence: 150, lastNumber: 144)),
        "push-numbered-ok": ok(0x17, PushReply(firstSequence: 5, count: 2)),
        "mirror-ok": ok(0x18, MirrorReply(mirror: 0x4000_0000_0000_0001, lastSequence: 0)),
        "ring-ok": ok(0x1c, RingReply(length: 0x12000)),
        "ring-ok-position": ok(0x1c, RingReply(length: 0x12000, positionLength: 0x1000)),
        "ring-advanced": .ringAdvanced(subscription: 1, last: 100, ticket: 0x0102_0304_0506_0708, reportRead: true, held: true),
        "ring-detached": .ringDetached(subscription: 1, nextSequence: 101),
        "ack-ok": ok(13),
        "wait-timeout-ok": ok(16, WaitTimeoutReply(ended: false)),
        "pull": .pull(channel: 0x8000_0000_0000_0002, pull: 1),
        "reset": .reset(subscription: 1, epoch: 0x2233_4455_6677_8899),
        "sessions-ok": ok(14, SessionsReply(sessions: [SessionInfo(id: 0xabc, uid: 1000, connections: 1, privateChannels: 2, idleMilliseconds: 1500)])),
        "offer": .offer(channel: 0x8000_0000_0000_0001, kind: .private, epoch: 0x0a0b_0c0d_0e0f_0102, name: "mail", owner: owner),
        "failed": .failed(subscription: 2, code: .ownerMismatch, message: "not the owner"),
        "ended": .ended(channel: 0x8000_0000_0000_0001, code: .sessionEnded, message: "session ended"),
        "create-ok": ok(2, CreateReply(channel: 1, epoch: epoch, tokenHigh: 0xa1a2_a3a4_a5a6_a7a8, tokenLow: 0xb1b2_b3b4_b5b6_b7b8)),
        "push-ok": ok(3, PushReply(firstSequence: 1, count: 1)),
        "push-batch-ok": ok(4, PushReply(firstSequence: 2, count: 2)),
        "close-ok": ok(5, CloseReply(lastSequence: 3)),
        "subscribe-ok": ok(6, SubscribeReply(subscription: 1, waiting: false, epoch: epoch, nextSequence: 2, owner: owner)),
        "unsubscribe-ok": ok(7),
        "list-ok": ok(8, ListReply(channels: [ChannelInfo(
            name: "news", kind: .buffered, scope: 0, size: 1000, buffered: 3, subscribers: 2, lastSequence: 3, epoch: epoch, owner: owner,
            rule: "news*", standing: .allowed)])),
        "ping-ok": ok(9),
        "message": .message(subscription: 1, sequence: 2, payload: ByteBuffer(string: "bc")),
        "full": .full(subscription: 1, firstAvailable: 5),
        "closed": .closed(subscription: 1, lastSequence: 3),
        "started": .started(subscription: 2, epoch: epoch, nextSequence: 1, owner: owner),
        "error": .error(requestID: 3, code: .notOwner, message: "not yours"),
    ]

    /// `name` → bytes, from the ```hex vector=NAME blocks of docs/PROTOCOL.md.
    static func documentVectors() throws -> [String: [UInt8]] {
        let url = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/PROTOCOL.md")
        let text = try String(contentsOf: url, encoding: .utf8)
        var vectors: [String: [UInt8]] = [:]
        var current: String?
        var hex = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```hex vector=") {
                current = String(line.dropFirst("```hex vector=".count))
                hex = ""
            } else if line.hasPrefix("```"), let name = current {
                vectors[name] = try bytes(fromHex: hex)
                current = nil
            } else if current != nil {
                hex += line.filter { !$0.isWhitespace }
            }
        }
        return vectors
    }

    static func bytes(fromHex hex: String) throws -> [UInt8] {
        let chars = Array(hex)
        guard chars.count % 2 == 0 else { throw WireError(.malformedFrame, "odd hex length") }
        return try stride(from: 0, to: chars.count, by: 2).map {
            guard let b = UInt8(String(chars[$0...$0 + 1]), radix: 16) else { throw WireError(.malformedFrame, "bad hex") }
            return b
        }
    }

    func testDocumentHoldsExactlyTheKnownVectors() throws {
        let names = Set(try Self.documentVectors().keys)
        XCTAssertEqual(names, Set(Self.requests.keys).union(Self.serverFrames.keys))
    }

    func testRequestsEncodeToTheDocumentedBytes() throws {
        let vectors = try Self.documentVectors()
        for (name, request) in Self.requests {
            var buffer = ByteBuffer()
            request.encode(into: &buffer)
            XCTAssertEqual(Array(buffer.readableBytesView), vectors[name], "vector \(name)")
        }
    }

    func testDocumentedRequestBytesDecodeBack() throws {
        let vectors = try Self.documentVectors()
        for (name, request) in Self.requests {
            var input = ByteBuffer(bytes: vectors[name] ?? [])
            let body = try XCTUnwrap(try FrameDecoder().nextFrame(from: &input), "vector \(name)")
            XCTAssertEqual(input.readableBytes, 0)
            let decoded = try Request.decode(body: body)
            var reencoded = ByteBuffer()
            decoded.encode(into: &reencoded)
            XCTAssertEqual(Array(reencoded.readableBytesView), vectors[name], "vector \(name)")
            XCTAssertEqual(decoded.id, request.id)
            XCTAssertEqual(decoded.opcode, request.opcode)
        }
    }

    func testServerFramesEncodeToTheDocumentedBytes() throws {
        let vectors = try Self.documentVectors()
        for (name, frame) in Self.serverFrames {
            var buffer = ByteBuffer()
            frame.encode(into: &buffer)
            XCTAssertEqual(Array(buffer.readableBytesView), vectors[name], "vector \(name)")
        }
    }

    func testDocumentedServerBytesDecodeToTheirValues() throws {
        let vectors = try Self.documentVectors()
        func frame(_ name: String) throws -> ServerFrame {
            var input = ByteBuffer(bytes: vectors[name] ?? [])
            return try ServerFrame.decode(body: XCTUnwrap(try FrameDecoder().nextFrame(from: &input)))
        }
        guard case .ok(1, var hello) = try frame("hello-ok") else { return XCTFail("hello-ok") }
        let decodedHello = try HelloReply(from: &hello)
        XCTAssertEqual(decodedHello.sessionID, 0xabc)
        XCTAssertTrue(decodedHello.servesNumberedPushes)
        // A daemon before 0.6 appends no features: it serves no numbered pushes.
        var oldHello = ByteBuffer(bytes: try Self.bytes(fromHex:
            "0001" + "00100000" + "000f4240" + "00ff" + "0000000000000abc" + "0102030405060708090a0b0c0d0e0f10" + "0c0e0e0f0c0e0e0f"))
        XCTAssertFalse(try HelloReply(from: &oldHello).servesNumberedPushes)
        var oldAdopt = ByteBuffer(bytes: try Self.bytes(fromHex: "000000000000000111223344556677880000000000000096"))
        XCTAssertEqual(try AdoptReply(from: &oldAdopt), AdoptReply(channel: 1, epoch: Self.epoch, lastSequence: 150, lastNumber: 0))
        guard case .ok(6, var sub) = try frame("subscribe-ok") else { return XCTFail("subscribe-ok") }
        XCTAssertEqual(try SubscribeReply(from: &sub), SubscribeReply(subscription: 1, waiting: false, epoch: Self.epoch, nextSequence: 2, owner: Self.owner))
        guard case .ok(8, var list) = try frame("list-ok") else { return XCTFail("list-ok") }
        let page = try ListReply(from: &list)
        XCTAssertEqual(page.channels.first?.name, "news")
        XCTAssertEqual(page.channels.first?.owner, Self.owner)
        XCTAssertEqual(page.channels.first?.rule, "news*")
        XCTAssertEqual(page.channels.first?.standing, .allowed)
        XCTAssertFalse(page.more)
        guard case .message(1, 2, let payload) = try frame("message") else { return XCTFail("message") }
        XCTAssertEqual(String(buffer: payload), "bc")
        guard case .error(3, .notOwner, "not yours") = try frame("error") else { return XCTFail("error") }
        guard case .started(2, Self.epoch, 1, Self.owner) = try frame("started") else { return XCTFail("started") }
        guard case .failed(2, .ownerMismatch, "not the owner") = try frame("failed") else { return XCTFail("failed") }
        // Frames of a daemon that appends no owner still decode, with the owner unknown.
        var old = ByteBuffer(bytes: try Self.bytes(fromHex: "0000001a8000000006000000010011223344556677880000000000000002"))
        guard case .ok(6, var oldBody) = try ServerFrame.decode(body: XCTUnwrap(try FrameDecoder().nextFrame(from: &old))) else {
            return XCTFail("old subscribe-ok")
        }
        XCTAssertEqual(try SubscribeReply(from: &oldBody).owner, .unknown)
    }
}
