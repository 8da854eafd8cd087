import Comet
import CometSupervision
import Foundation
import XCTest

/// Restarts through the service manager's file-descriptor store, with the test supervisor
/// standing in for systemd (docs/RESTARTS.md).
final class RestartTests: XCTestCase {
    /// SIGTERM (`systemctl restart`): the state and every connection go into the store; the next
    /// process takes them over. Clients see a pause, nothing else.
    func testPlannedRestartKeepsConnectionsAndMessages() async throws {
        let supervisor = try Supervisor(executable: Daemon.releaseDaemon)
        try supervisor.start()
        let total = 20_000
        let producerClient = try await CometClient.connect(to: supervisor.socketPath)
        let producer = try await producerClient.create("steady", size: 1000)
        var clients: [CometClient] = []
        var tasks: [Task<OrderedReading, Never>] = []
        for _ in 0..<50 {
            let client = try await CometClient.connect(to: supervisor.socketPath)
            clients.append(client)
            tasks.append(readInOrder(try await client.subscribe("steady", from: .oldest), total: total))
        }
        let firstPID = supervisor.pid
        let restarts = Task.detached { [supervisor] in
            usleep(200_000)
            try supervisor.restart(SIGTERM)
            usleep(200_000)
            try supervisor.restart(SIGTERM)
        }
        for i in 1...total {
            await producer.publish(Array("m\(i)".utf8))
            if i % 500 == 0 { try await Task.sleep(for: .milliseconds(5)) }
        }
        let last = try await producer.flush()
        XCTAssertEqual(last, UInt64(total))
        try await restarts.value
        XCTAssertEqual(supervisor.starts, 3)
        XCTAssertNotEqual(supervisor.pid, firstPID)
        for task in tasks {
            let reading = await task.value
            XCTAssertNil(reading.error, supervisor.log)
            XCTAssertEqual(reading.received, UInt64(total))
            XCTAssertTrue(reading.inOrder)
        }
        // The new process took its connections out of the store (else they would never close).
        XCTAssertNil(supervisor.stored["comet-conn"], "\(supervisor.stored)")
        XCTAssertNil(supervisor.stored["comet-image"], "\(supervisor.stored)")
        let after = try await producer.push("after")
        XCTAssertEqual(after, UInt64(total) + 1)
        for client in clients { await client.close() }
        await producerClient.close()
        XCTAssertEqual(supervisor.stop(SIGTERM), 0)
    }

    /// Without a store (a plain start, no service manager), a restart is a new daemon: the
    /// channel is gone, and once re-created it has a new epoch (docs/SEMANTICS.md, "Restarts").
    func testPlainRestartWithoutStoreStartsAfresh() async throws {
        let daemon = try Daemon()
        let client = try await CometClient.connect(to: daemon.socketPath)
        let producer = try await client.create("plain")
        _ = try await producer.push("one")
        let epoch = producer.epoch
        await client.close()
        XCTAssertEqual(daemon.stop(), 0)
        let again = try Daemon(arguments: [], environment: [:])
        let second = try await CometClient.connect(to: again.socketPath)
        do {
            _ = try await second.subscribe("plain", from: .from(1), epoch: epoch)
            XCTFail("the channel did not survive a plain restart")
        } catch let error as CometError {
            XCTAssertEqual(error.code, .noSuchChannel)
        }
        let recreated = try await second.create("plain")
        XCTAssertNotEqual(recreated.epoch, epoch)
        await second.close()
        again.stop()
    }
}
