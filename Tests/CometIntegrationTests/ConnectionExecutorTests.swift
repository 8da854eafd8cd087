import Comet
import XCTest

/// Tasks that prefer a connection's executor run on its event loop: awaited requests, a producer
/// and a reader (mapped and from the socket) of the same connection in such tasks, nothing stuck.
final class ConnectionExecutorTests: XCTestCase {
    func testTasksOnTheConnectionsExecutorPushAndRead() async throws {
        let daemon = try Daemon(executable: Daemon.releaseDaemon)
        defer { XCTAssertEqual(daemon.stop(), 0, daemon.log) }
        let client = try await CometClient.connect(to: daemon.socketPath)
        let news = try await client.create("news", size: 4096)
        let mapped = try await Task(executorPreference: client.executor) { try await client.subscribe("news") }.value
        let socket = try await Task(executorPreference: client.executor) { try await client.subscribe("news", mapped: false) }.value
        let readers = [mapped, socket].map { subscription in
            Task(executorPreference: client.executor) { () -> [UInt64] in
                var seen: [UInt64] = []
                for try await message in subscription {
                    seen.append(message.sequence)
                    if seen.count == 3000 { break }
                }
                return seen
            }
        }
        let pushed = try await Task(executorPreference: client.executor) { () -> UInt64 in
            var last: UInt64 = 0
            for n in 1...3000 { last = try await news.push(Array("m\(n)".utf8)) }
            return last
        }.value
        XCTAssertEqual(pushed, 3000)
        for (reader, name) in zip(readers, ["mapped", "socket"]) {
            let seen = try await reader.value
            XCTAssertEqual(seen.count, 3000, name)
            XCTAssertEqual(seen.first, 1, name)
            XCTAssertEqual(seen.last, 3000, name)
            XCTAssertTrue(zip(seen, seen.dropFirst()).allSatisfy { $1 == $0 + 1 }, "\(name): in order")
        }
        XCTAssertTrue(mapped.info.mapped, "the ring was read mapped throughout")
        await client.close()
    }
}
