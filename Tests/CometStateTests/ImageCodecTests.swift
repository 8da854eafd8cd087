@testable import CometState
import NIOCore
import XCTest

final class ImageCodecTests: XCTestCase {
    private func bytes(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    private func sample() -> DaemonImage {
        let peer = PeerImage(pid: 42, uid: 1000, gid: 100)
        return DaemonImage(
            softwareVersion: "0.5.0", instance: 0xfeed, nextConnectionID: 9, nextChannelID: 4, nextPrivateID: 3,
            listeners: [3, 4],
            channels: [
                SiteChannelImage(
                    id: 1, name: "news", epoch: 77, owner: 5, newestOnly: false, size: 10, creator: peer, closed: false,
                    registered: true, replacedByEpoch: nil, firstSequence: 8, messages: [bytes("eight"), bytes(""), bytes("ten")],
                    pushedCount: 10, pushedBytes: 30, deliveredCount: 4, fullCount: 1),
                SiteChannelImage(
                    id: 2, name: "old", epoch: 78, owner: 6, newestOnly: true, size: 1, creator: peer, closed: true,
                    registered: false, replacedByEpoch: 99, firstSequence: 1, messages: []),
            ],
            privateChannels: [
                PrivateChannelImage(
                    id: 1 << 63 | 1, name: "inbox", epoch: 5, session: 0xabc, owner: 5, size: 4, unlimited: false, creator: peer,
                    acknowledged: 2, closed: false, full: false, reader: 7, outstandingPull: nil, nextPull: 1, firstSequence: 3,
                    messages: [bytes("3"), bytes("4")])
            ],
            sessions: [
                SessionImage(
                    id: 0xabc, tokenHigh: 1, tokenLow: 2, uid: 1000, connections: [7], detachedAt: nil, lastActivity: 123,
                    channels: [PrivateChannelEntry(name: "inbox", handle: 1 << 63 | 1)], charged: true),
                SessionImage(
                    id: 0xdef, tokenHigh: 3, tokenLow: 4, uid: 0, connections: [], detachedAt: 555, lastActivity: 500, channels: [],
                    charged: false),
            ],
            connections: [
                ConnectionImage(
                    id: 7, descriptor: 12, peer: peer, openedAt: 1, lastRequest: 2, handshaken: true, counted: true,
                    inputClosed: false, session: 0xabc, ownedChannels: 1, nextSubscriptionID: 3,
                    subscriptions: [
                        SubscriptionImage(id: 1, name: "news", source: .site, channel: 1, cursor: 9, pinnedOwner: 1000),
                        SubscriptionImage(id: 2, name: "later", source: .waiting, channel: 0, cursor: 0, pinnedOwner: nil),
                    ],
                    timeoutWaits: [TimeoutWaitImage(session: 0xabc, requestID: 17, timeout: 5_000_000)],
                    input: bytes("\u{0}\u{0}\u{0}\u{9}partial"), output: bytes("owed"))
            ], storedNames: ["comet-state-1", "comet-state-2"])
    }

    func testRoundTrip() throws {
        var image = sample()
        image.channels[0].tokenHigh = 11
        image.privateChannels[0].tokenLow = 12
        image.channels[0].numberedFrom = 3
        image.privateChannels[0].numberedFrom = 1
        XCTAssertEqual(try ImageCodec.decode(ImageCodec.encode(image)), image)
        let empty = DaemonImage(softwareVersion: "", instance: 1, nextConnectionID: 1, nextChannelID: 1, nextPrivateID: 1)
        XCTAssertEqual(try ImageCodec.decode(ImageCodec.encode(empty)), empty)
    }

    /// An image of a cometd before producer numbers (format 1) is read, its channels unnumbered.
    func testReadsFormatOne() throws {
        var image = sample()
        image.channels[0].numberedFrom = 3
        var expected = image
        expected.channels[0].numberedFrom = 0
        let old = ImageCodec.encode(image, format: 1)
        XCTAssertEqual(old.getInteger(at: 8, as: UInt16.self), 1)
        XCTAssertEqual(try ImageCodec.decode(old), expected)
        XCTAssertEqual(ImageCodec.encode(image, format: 2).readableBytes, old.readableBytes + 3 * 8)
    }

    /// Format 3 keeps which mapped readers take their ring back (RETURN); written for a binary
    /// that reads only format 2 (a roll-back), it leaves that out and the rest is whole.
    func testFormatThreeKeepsRingReturnsAndFormatTwoLeavesThemOut() throws {
        var image = sample()
        image.connections[0].subscriptions[0].returnsToRing = true
        XCTAssertEqual(try ImageCodec.decode(ImageCodec.encode(image)).connections[0].subscriptions[0].returnsToRing, true)
        let older = ImageCodec.encode(image, format: 2)
        XCTAssertEqual(older.getInteger(at: 8, as: UInt16.self), 2)
        var expected = image
        expected.connections[0].subscriptions[0].returnsToRing = false
        XCTAssertEqual(try ImageCodec.decode(older), expected)
        XCTAssertEqual(ImageCodec.encode(image).readableBytes, older.readableBytes + 2, "a byte per subscription")
    }

    func testRefusesOtherFormatsAndDamage() {
        var encoded = ImageCodec.encode(sample())
        func code(_ bytes: ByteBuffer) -> StateError.Code? {
            do {
                _ = try ImageCodec.decode(bytes)
                return nil
            } catch { return error.code }
        }
        XCTAssertEqual(code(ByteBuffer(string: "not an image at all, really")), .notAnImage)
        var future = encoded
        future.setInteger(UInt16(9), at: 8)
        XCTAssertEqual(code(future), .unsupportedFormat)
        var flipped = encoded
        let last = flipped.writerIndex - 1
        flipped.setInteger(flipped.getInteger(at: last, as: UInt8.self)! ^ 1, at: last)
        XCTAssertEqual(code(flipped), .damaged)
        encoded.moveWriterIndex(to: encoded.writerIndex - 3)
        XCTAssertEqual(code(encoded), .damaged)
        // Every prefix of an image is refused, none crashes.
        let whole = ImageCodec.encode(sample())
        for length in stride(from: 0, to: whole.readableBytes, by: 7) {
            XCTAssertNotNil(code(whole.getSlice(at: 0, length: length)!))
        }
    }
}
