import CometChannels
import CometServer
import CometWire
import Logging
import NIOCore
import NIOEmbedded
import XCTest

@testable import CometSimulation

/// Requests sent at once and read by the daemon in small pieces: frames cut by the end of a
/// read, and reads holding the end of one frame and the start of others, are each handled once
/// and in order (the path where a cut frame takes only the bytes it lacks).
final class CutFrameTests: XCTestCase {
    func testPipelinedFramesCutAnywhereAreAllAnsweredInOrder() throws {
        // Also with a socket that takes a few answers at a time: input stops (output blocked)
        // with a cut frame completed and not handled yet, and the rest of the read waits behind it.
        for (readSize, slowPeer) in [1, 7, 37, 100, 150, 333, 4096].flatMap({ [($0, false), ($0, true)] }) {
            let answers = try answersToPipelinedPushes(readSize: readSize, slowPeer: slowPeer, pushes: 40)
            XCTAssertEqual(answers.map(\.id), Array(1...42), "reads of \(readSize) bytes, slow peer: \(slowPeer)")
            // Push i holds i % 3 + 1 messages: each answer gives the first of its own.
            var firsts: [UInt64] = []
            var next: UInt64 = 1
            for i in 0..<40 {
                firsts.append(next)
                next += UInt64(i % 3 + 1)
            }
            XCTAssertEqual(answers.dropFirst(2).map(\.sequence), firsts, "reads of \(readSize) bytes")
        }
    }

    /// HELLO, CREATE and `pushes` PUSH_BATCH frames of different sizes, all sent before the
    /// daemon reads; it reads `readSize` bytes at a time. Returns each answer's request id and,
    /// for pushes, the first sequence number.
    private func answersToPipelinedPushes(readSize: Int, slowPeer: Bool, pushes: Int) throws -> [(id: UInt32, sequence: UInt64)] {
        let loop = EmbeddedEventLoop()
        let broker = Broker(
            eventLoop: loop, configuration: ServerConfiguration(), logger: Logger(label: "cut") { _ in SwiftLogNoOpLogHandler() })
        broker.wakeForNextTurn = { [loop] in loop.execute($0) }
        broker.start()
        loop.run()
        let configuration = ServerConfiguration()
        let socket = SimulatedSocket(
            kernelCapacity: slowPeer ? 8 : 1 << 20, highWatermark: slowPeer ? 48 : configuration.outboundHighWatermark,
            lowWatermark: slowPeer ? 16 : configuration.outboundLowWatermark, readSize: readSize)
        let handler = ConnectionHandler(broker: broker, identity: Identity(pid: 1, uid: 1000, gid: 1000), socketQueue: { socket.queued })
        let channel = EmbeddedChannel(handlers: [], loop: loop)
        try channel.pipeline.syncOperations.addHandlers([socket, handler])
        channel.connect(to: try SocketAddress(unixDomainSocketPath: "/sim/comet.sock"), promise: nil)
        channel.pipeline.read()

        var out = ByteBuffer()
        Request(id: 1, .hello(versions: [CometProtocol.version])).encode(into: &out)
        Request(id: 2, .create(name: "cut", kind: .buffered, size: 1000)).encode(into: &out)
        for i in 0..<pushes {
            // 1 to 3 messages of 1 to 120 bytes: frame ends fall everywhere.
            let batch = MessageBatch((0...(i % 3)).map { j in ByteBuffer(repeating: UInt8(65 + j), count: 1 + (i * 37 + j * 11) % 120) })
            Request(id: UInt32(3 + i), .pushBatch(channel: 1, payloads: batch)).encode(into: &out)
        }
        socket.peerSends(out)
        var received = ByteBuffer()
        var idle = 0
        while socket.daemonHasInput {
            if socket.deliverToDaemon() {
                idle = 0
            } else {
                // Input waits for output: the peer reads what it was sent.
                idle += 1
                guard idle < 3 else {
                    XCTFail("reads of \(readSize) bytes: the daemon stopped reading with input left")
                    break
                }
                socket.peerReads(upTo: .max, into: &received)
            }
            loop.run()
            _ = broker.tickEnded()
            loop.run()
        }
        // All read: the peer reads until no more answers come (requests that waited for output).
        var before = -1
        while received.readableBytes != before {
            before = received.readableBytes
            socket.peerReads(upTo: .max, into: &received)
            loop.run()
            _ = broker.tickEnded()
            loop.run()
        }
        var answers: [(id: UInt32, sequence: UInt64)] = []
        let decoder = FrameDecoder(maxFrameSize: .max)
        while let body = try decoder.nextFrame(from: &received) {
            guard case .ok(let id, var reply) = try ServerFrame.decode(body: body) else {
                XCTFail("not an OK: \(try ServerFrame.decode(body: body))")
                continue
            }
            answers.append((id, id > 2 ? try PushReply(from: &reply).firstSequence : 0))
        }
        return answers
    }
}
