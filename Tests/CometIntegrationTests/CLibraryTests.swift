import CComet
import Comet
import XCTest

/// libcomet (through its SwiftPM target) and the Swift client on one daemon: a C producer, a
/// Swift consumer, and the other way round.
final class CLibraryTests: XCTestCase {
    var daemon: Daemon!

    override func setUpWithError() throws { daemon = try Daemon() }

    override func tearDown() {
        daemon.stop()
        daemon = nil
    }

    func testCProducerSwiftConsumer() async throws {
        var c: OpaquePointer?
        XCTAssertEqual(comet_connect(&c, daemon.socketPath), 0)
        defer { _ = comet_unref(c) }
        var channel: UInt64 = 0
        XCTAssertEqual(comet_create(c, "from.c", 0, &channel), 0)
        let reader = try await CometClient.connect(to: daemon.socketPath)
        let subscription = try await reader.subscribe("from.c")
        for text in ["one", "two", "three"] {
            XCTAssertEqual(Array(text.utf8).withUnsafeBytes { comet_push(c, channel, $0.baseAddress, $0.count) }, 0)
        }
        XCTAssertEqual(comet_flush(c), 0)
        var got: [String] = []
        for try await m in subscription {
            got.append(m.string)
            if got.count == 3 { break }
        }
        XCTAssertEqual(got, ["one", "two", "three"])
        XCTAssertEqual(String(cString: comet_strerror(-Int32(COMET_E_CHANNEL_FULL))), "the channel is full")
        await reader.close()
    }

    func testSwiftProducerToACPrivateSubscription() async throws {
        var c: OpaquePointer?
        XCTAssertEqual(comet_connect(&c, daemon.socketPath), 0)
        defer { _ = comet_unref(c) }
        var session = comet_session()
        XCTAssertEqual(comet_get_session(c, &session), 0)
        let producer = try await CometClient.connect(to: daemon.socketPath)
        let channel = try await producer.createPrivate("to.c", for: session.id)
        try await channel.push("hello C")
        final class Box { var text = "" }
        let box = Box()
        let handler: comet_message_handler = { _, _, _, data, size, userdata in
            let box = Unmanaged<Box>.fromOpaque(userdata!).takeUnretainedValue()
            box.text = String(decoding: UnsafeRawBufferPointer(start: data, count: size), as: UTF8.self)
            return 0
        }
        XCTAssertEqual(comet_subscribe_private(c, "to.c", handler, nil, Unmanaged.passUnretained(box).toOpaque(), nil), 0)
        for _ in 0..<100 where box.text.isEmpty {
            _ = comet_wait(c, 50_000)
            _ = comet_process(c)
        }
        XCTAssertEqual(box.text, "hello C")
        await producer.close()
    }
}
