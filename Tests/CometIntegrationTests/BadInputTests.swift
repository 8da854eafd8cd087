import CometWire
import NIOCore
import XCTest

/// Malformed and hostile input: each gets a numbered error; a violation closes only that connection.
final class BadInputTests: XCTestCase {
    var daemon: Daemon!

    override func setUpWithError() throws { daemon = try Daemon() }

    override func tearDown() {
        daemon.stop()
        daemon = nil
    }

    /// The daemon still serves a well-behaved client.
    func assertDaemonServes(file: StaticString = #filePath, line: UInt = #line) throws {
        let c = try RawConnection(daemon.socketPath)
        _ = try c.hello()
        let id = c.send(.ping)
        XCTAssertNoThrow(try c.expectOK(id), file: file, line: line)
    }

    /// Expects an ERROR with request id 0 and `code`, then the server closing the connection.
    func assertFatal(_ c: RawConnection, _ code: ErrorCode, file: StaticString = #filePath, line: UInt = #line) throws {
        var seen: ErrorCode?
        while let frame = try c.read() {
            if case .error(0, let got, _) = frame { seen = got }
        }
        XCTAssertEqual(seen, code, file: file, line: line)
    }

    func testRequestBeforeHello() throws {
        let c = try RawConnection(daemon.socketPath)
        c.send(.ping)
        try assertFatal(c, .handshakeRequired)
        try assertDaemonServes()
    }

    /// Request id 0 names the connection: a request using it is a fatal MALFORMED_FRAME.
    func testRequestIdZeroIsFatal() throws {
        let c = try RawConnection(daemon.socketPath)
        _ = try c.hello()
        var buffer = ByteBuffer()
        Request(id: 0, .ping).encode(into: &buffer)
        c.send(Array(buffer.readableBytesView))
        try assertFatal(c, .malformedFrame)
        try assertDaemonServes()
    }

    /// Before HELLO the limit is the documented 1 MiB, whatever --max-frame-size says; after it,
    /// the advertised one.
    func testFrameLimitBeforeHelloIsOneMiB() throws {
        let big = try Daemon(arguments: ["--max-frame-size", "\(4 << 20)"])
        defer { big.stop() }
        let before = try RawConnection(big.socketPath)
        before.send([0x00, 0x20, 0x00, 0x00])  // a 2 MiB frame announced before HELLO
        var seen: ErrorCode?
        while let frame = try before.read() { if case .error(0, let code, _) = frame { seen = code } }
        XCTAssertEqual(seen, .frameTooLarge)
        let after = try RawConnection(big.socketPath)
        XCTAssertEqual(try after.hello().maxFrameSize, 4 << 20)
        let payload = ByteBuffer(repeating: 0x61, count: 2 << 20)
        var created = try after.expectOK(after.send(.create(name: "big", kind: .buffered, size: 2)))
        let channel = try CreateReply(from: &created).channel
        XCTAssertNoThrow(try after.expectOK(after.send(.push(channel: channel, payload: payload))), "2 MiB after HELLO")
    }

    func testSecondHello() throws {
        let c = try RawConnection(daemon.socketPath)
        _ = try c.hello()
        c.send(.hello(versions: [1]))
        try assertFatal(c, .handshakeRequired)
    }

    func testVersionMismatchNamesBothVersions() throws {
        let c = try RawConnection(daemon.socketPath)
        c.send(.hello(versions: [7, 9]))
        var message = ""
        var code: ErrorCode?
        while let frame = try c.read() {
            if case .error(0, let got, let text) = frame {
                code = got
                message = text
            }
        }
        XCTAssertEqual(code, .unsupportedVersion)
        XCTAssertTrue(message.contains("1") && message.contains("7") && message.contains("9"), message)
    }

    func testOversizedLengthIsRefusedBeforeTheBody() throws {
        let c = try RawConnection(daemon.socketPath)
        _ = try c.hello()
        c.send([0x7F, 0xFF, 0xFF, 0xFF, 0x03])
        try assertFatal(c, .frameTooLarge)
        try assertDaemonServes()
    }

    func testGarbage() throws {
        for seed in 0..<20 {
            var generator = SeededGenerator(seed: UInt64(seed))
            let c = try RawConnection(daemon.socketPath)
            if seed % 2 == 0 { _ = try c.hello() }
            c.send((0..<200).map { _ in UInt8.random(in: 0...255, using: &generator) })
            // Whatever the bytes, the daemon answers or waits; close our side and move on.
            shutdown(c.fd, CInt(SHUT_WR))
            _ = try? c.closedByServer()
        }
        try assertDaemonServes()
    }

    func testUnknownOperationAndServerOpcode() throws {
        for opcode: UInt8 in [0x42, 0x90] {
            let c = try RawConnection(daemon.socketPath)
            _ = try c.hello()
            c.send([0, 0, 0, 5, opcode, 0, 0, 0, 9])
            try assertFatal(c, .unknownOperation)
        }
        try assertDaemonServes()
    }

    func testMalformedBodyAndTrailingBytes() throws {
        let c = try RawConnection(daemon.socketPath)
        _ = try c.hello()
        c.send([0, 0, 0, 6, 0x09, 0, 0, 0, 1, 0xAA])  // PING with a trailing byte
        try assertFatal(c, .malformedFrame)
        let d = try RawConnection(daemon.socketPath)
        _ = try d.hello()
        c.send([0, 0, 0, 0])
        d.send([0, 0, 0, 0])
        try assertFatal(d, .malformedFrame)
    }

    func testNonFatalErrorsKeepTheConnection() throws {
        let c = try RawConnection(daemon.socketPath)
        _ = try c.hello()
        XCTAssertEqual(try c.expectError(c.send(.create(name: "no spaces", kind: .buffered, size: 0))), .invalidName)
        XCTAssertEqual(try c.expectError(c.send(.create(name: String(repeating: "n", count: 300), kind: .buffered, size: 0))), .invalidName)
        XCTAssertEqual(try c.expectError(c.send(.create(name: "ok", kind: .buffered, size: 2_000_000))), .invalidArgument)
        XCTAssertEqual(try c.expectError(c.send(.create(name: "ok", kind: .private, size: 0))), .unsupported)
        XCTAssertEqual(try c.expectError(c.send(.subscribe(name: "nothing", position: .next, epoch: 0, wait: false))), .noSuchChannel)
        XCTAssertEqual(try c.expectError(c.send(.unsubscribe(subscription: 77))), .noSuchSubscription)
        XCTAssertEqual(try c.expectError(c.send(.push(channel: 12345, payload: ByteBuffer()))), .noSuchChannel)
        var body = try c.expectOK(c.send(.create(name: "mine", kind: .buffered, size: 4)))
        let created = try CreateReply(from: &body)
        XCTAssertEqual(try c.expectError(c.send(.pushBatch(channel: created.channel, payloads: []))), .invalidArgument)
        XCTAssertEqual(try c.expectError(c.send(.subscribe(name: "mine", position: .from(0), epoch: 0, wait: false))), .invalidArgument)
        // Unknown subscribe flag: the request is readable, so only it fails.
        c.send([0, 0, 0, 0x1d, 0x06, 0, 0, 0, 99, 0x80, 0] + [UInt8](repeating: 0, count: 16) + [0, 4] + Array("mine".utf8))
        XCTAssertEqual(try c.expectError(99), .invalidArgument)
        _ = try c.expectOK(c.send(.ping))
    }

    func testPushToAnotherConnectionsChannel() throws {
        let owner = try RawConnection(daemon.socketPath)
        _ = try owner.hello()
        var body = try owner.expectOK(owner.send(.create(name: "owned", kind: .buffered, size: 0)))
        let created = try CreateReply(from: &body)
        let intruder = try RawConnection(daemon.socketPath)
        _ = try intruder.hello()
        XCTAssertEqual(try intruder.expectError(intruder.send(.push(channel: created.channel, payload: ByteBuffer(string: "x")))), .notOwner)
        XCTAssertEqual(try intruder.expectError(intruder.send(.close(channel: created.channel))), .notOwner)
        var list = try intruder.expectOK(intruder.send(.list))
        XCTAssertEqual(try ListReply(from: &list).channels.first?.lastSequence, 0, "nothing was pushed")
    }

    func testPeerVanishingMidFrame() throws {
        do {
            let c = try RawConnection(daemon.socketPath)
            _ = try c.hello()
            var body = try c.expectOK(c.send(.create(name: "half", kind: .buffered, size: 0)))
            _ = try CreateReply(from: &body)
            c.send([0, 0, 1, 0, 0x03, 0, 0, 0])  // a PUSH frame cut short
        }
        try assertDaemonServes()
        let c = try RawConnection(daemon.socketPath)
        _ = try c.hello()
        var list = try c.expectOK(c.send(.list))
        XCTAssertFalse(try ListReply(from: &list).channels.contains { $0.name == "half" }, "its channel closed with it")
    }

    /// A reader that does not read: the producer is never blocked, other readers get everything,
    /// and the slow one gets a gap-free prefix followed by FULL.
    func testSlowReaderGetsFullNeverAGap() async throws {
        let slow = try RawConnection(daemon.socketPath, receiveBuffer: 4096)
        _ = try slow.hello()
        let producer = try RawConnection(daemon.socketPath)
        _ = try producer.hello()
        var body = try producer.expectOK(producer.send(.create(name: "flood", kind: .buffered, size: 16)))
        let channel = try CreateReply(from: &body).channel
        var sub = try slow.expectOK(slow.send(.subscribe(name: "flood", position: .next, epoch: 0, wait: false)))
        let subscription = try SubscribeReply(from: &sub).subscription

        // 8 MB: more than the reader's queue (1 MiB) and socket hold; the producer waits for the
        // reader at most the grace (1 s), then the reader loses messages.
        let payload = ByteBuffer(bytes: [UInt8](repeating: 0x61, count: 1024))
        for _ in 0..<1000 {
            let id = producer.send(.pushBatch(channel: channel, payloads: MessageBatch(Array(repeating: payload, count: 8))))
            _ = try producer.expectOK(id)
        }
        var sequences: [UInt64] = []
        var firstAvailable: UInt64?
        loop: while let frame = try slow.read() {
            switch frame {
            case .message(subscription, let seq, _): sequences.append(seq)
            case .full(subscription, let first):
                firstAvailable = first
                break loop
            default: continue
            }
        }
        let first = try XCTUnwrap(firstAvailable, "the slow reader was told it fell behind")
        XCTAssertFalse(sequences.isEmpty, "it read what its socket could take")
        XCTAssertEqual(sequences, sequences.indices.map { UInt64($0 + 1) }, "a gap-free prefix")
        XCTAssertGreaterThan(first, UInt64(sequences.count) + 1, "messages were really lost, and said so")
        XCTAssertLessThan(sequences.count, 6000)
    }
}

/// SplitMix64: reproducible garbage.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension BadInputTests {
    /// A client that pipelines requests and never reads the answers is slowed down, not buffered
    /// for without bound; once it reads, it gets every answer.
    func testUnreadAnswersDoNotGrowTheDaemon() throws {
        let greedy = try RawConnection(daemon.socketPath, receiveBuffer: 4096)
        _ = try greedy.hello()
        // Make the socket non-blocking for sending so the test notices when the daemon stops reading.
        let flags = fcntl(greedy.fd, F_GETFL)
        _ = fcntl(greedy.fd, F_SETFL, flags | O_NONBLOCK)
        var ping = ByteBuffer()
        for i in 0..<1000 { Request(id: UInt32(i + 100), .ping).encode(into: &ping) }
        let chunk = Array(ping.readableBytesView)
        var sentBytes = 0
        var stalled = false
        // Without back-pressure the daemon would take all 64 MiB, buffering the answers.
        while sentBytes < 64 << 20 {
            let n = chunk.withUnsafeBytes { send(greedy.fd, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
            if n > 0 {
                sentBytes += n
                continue
            }
            var writable = pollfd(fd: greedy.fd, events: Int16(POLLOUT), revents: 0)
            if poll(&writable, 1, 2000) == 0 {
                stalled = true
                break
            }
        }
        XCTAssertTrue(stalled, "the daemon kept reading \(sentBytes) bytes of requests whose answers nobody read")
        XCTAssertLessThan(sentBytes, 8 << 20)
        try assertDaemonServes()
        _ = fcntl(greedy.fd, F_SETFL, flags)
    }
}
