import Comet
import Foundation
import XCTest

/// What a three-node NATS JetStream cluster survives, with real processes: two hosts (cometd +
/// comet-bridge each), an R3 stream, nodes killed, wiped, paused and restarted while a producer
/// on A streams; every reader on B must end with every message once, in order.
final class FederationClusterTests: XCTestCase {
    var cluster: NATSCluster!
    var hosts: [FederationTests.Host] = []

    override func setUpWithError() throws {
        // The partition test reaches the cluster from another network namespace.
        cluster = try NATSCluster(listenAddress: name.contains("Partitioned") ? "0.0.0.0" : "127.0.0.1")
        try cluster.start()
    }

    override func tearDown() {
        for host in hosts {
            host.bridge.stop()
            host.daemon.stop()
        }
        hosts = []
        cluster = nil
    }

    func exporter(_ urls: String) -> String {
        """
        [nats hub]
        url = \(urls)
        timeout = 2
        reconnect-wait = 0.25
        [export feed]
        replicas = 3
        """
    }

    func importer(_ urls: String) -> String {
        """
        [nats hub]
        url = \(urls)
        timeout = 2
        reconnect-wait = 0.25
        [import remote.feed]
        subject = comet.feed
        size = 100000
        stall-after = 5
        """
    }

    func host(_ config: String) throws -> FederationTests.Host {
        let daemon = try Daemon(arguments: ["--log-level", "debug"])
        let host = FederationTests.Host(daemon: daemon, bridge: try BridgeProcess(config: config, socketPath: daemon.socketPath))
        hosts.append(host)
        return host
    }

    /// Pushes batches of 100 to `feed` every 50 ms until stopped; returns how many it pushed.
    final class Producer: @unchecked Sendable {
        let feed: ChannelProducer
        private let lock = NSLock()
        private var stopped = false
        private(set) var pushed = 0
        var task: Task<Int, Error>!

        init(_ feed: ChannelProducer) {
            self.feed = feed
            task = Task {
                var n = 0
                while !self.isStopped {
                    try await feed.push(batch: (n + 1...n + 100).map { Array("m\($0)".utf8) })
                    n += 100
                    try await Task.sleep(nanoseconds: 50_000_000)
                }
                return n
            }
        }

        var isStopped: Bool { lock.withLock { stopped } }

        func stop() async throws -> Int {
            lock.withLock { stopped = true }
            return try await task.value
        }
    }

    func readAll(_ b: FederationTests.Host, total: Int, epoch: UInt64, within seconds: Double = 120) async throws -> [CometMessage] {
        let reader = try await CometClient.connect(to: b.socketPath)
        defer { Task { await reader.close() } }
        return try await FederationTests.readResuming(reader, "remote.feed", from: 1, epoch: epoch, count: total, within: seconds)
    }

    func assertEveryMessageOnceInOrder(_ got: [CometMessage], _ total: Int, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let sequences = got.map(\.sequence)
        XCTAssertEqual(got.count, total, "\(what): \(got.count) of \(total) messages", file: file, line: line)
        XCTAssertTrue(sequences == Array(1...UInt64(total)), "\(what): not 1…\(total) once in order (first \(sequences.first ?? 0), last \(sequences.last ?? 0))", file: file, line: line)
        XCTAssertTrue(got.allSatisfy { $0.string == "m\($0.sequence)" }, "\(what): payloads", file: file, line: line)
    }

    /// Each node killed for 3 s and restarted in turn, then one paused (SIGSTOP: it stops
    /// answering, its connections stay open) for 5 s and resumed, all while A streams.
    func testEveryNodeKilledInTurnAndOnePausedWhileStreaming() async throws {
        let a = try host(exporter(cluster.urls))
        let b = try host(importer(cluster.urls))
        let client = try await CometClient.connect(to: a.socketPath)
        let feed = try await client.create("feed", size: 200_000)
        let producer = Producer(feed)
        try await Task.sleep(nanoseconds: 2_000_000_000)
        for node in cluster.nodes {
            cluster.kill(node)
            try await Task.sleep(nanoseconds: 3_000_000_000)
            try cluster.start(node)
            try await Task.sleep(nanoseconds: 3_000_000_000)
        }
        cluster.pause(cluster.nodes[1])
        try await Task.sleep(nanoseconds: 5_000_000_000)
        cluster.resume(cluster.nodes[1])
        try await Task.sleep(nanoseconds: 2_000_000_000)
        let total = try await producer.stop()
        let got = try await readAll(b, total: total, epoch: feed.epoch)
        assertEveryMessageOnceInOrder(got, total, "nodes killed in turn, one paused")
        let exports = try await client.stats().exports
        XCTAssertEqual(exports.first?.replicas, 3)
        XCTAssertEqual(exports.first?.missed, 0)
        await client.close()
    }

    /// A node of the R3 stream lost for good, its store deleted: the stream goes on with two.
    func testANodeLostForGoodWithItsStoreLosesNothing() async throws {
        let a = try host(exporter(cluster.urls))
        let b = try host(importer(cluster.urls))
        let client = try await CometClient.connect(to: a.socketPath)
        let feed = try await client.create("feed", size: 200_000)
        let producer = Producer(feed)
        try await Task.sleep(nanoseconds: 3_000_000_000)
        cluster.kill(cluster.nodes[0], wipe: true)
        try await Task.sleep(nanoseconds: 6_000_000_000)
        let total = try await producer.stop()
        let got = try await readAll(b, total: total, epoch: feed.epoch)
        assertEveryMessageOnceInOrder(got, total, "a node and its store lost")
        await client.close()
    }

    /// With the first server of `url` (the seed) down, B's bridge and cometd restart and reach
    /// the cluster through the others; `comet listen` on the import resumes across it all.
    func testBridgeAndCometdRestartWithTheSeedServerDown() async throws {
        let a = try host(exporter(cluster.urls))
        let b = try host(importer(cluster.urls))
        let client = try await CometClient.connect(to: a.socketPath)
        let feed = try await client.create("feed", size: 200_000)
        try await feed.push(batch: (1...500).map { Array("m\($0)".utf8) })
        let reader = try await CometClient.connect(to: b.socketPath)
        let first = try await FederationTests.readResuming(reader, "remote.feed", from: 1, epoch: feed.epoch, count: 500)
        XCTAssertEqual(first.count, 500)
        await reader.close()
        let total = 1500
        let listen = Process()
        listen.executableURL = Daemon.executable("comet")
        listen.arguments = ["listen", "-s", b.socketPath, "remote.feed", "--from", "1", "--epoch", "\(feed.epoch)", "--count", "\(total)", "--show-seq"]
        let out = Pipe()
        let err = Pipe()
        listen.standardOutput = out
        listen.standardError = err
        try listen.run()
        try await Task.sleep(nanoseconds: 1_000_000_000)

        cluster.kill(cluster.nodes[0])
        b.bridge.stop()
        b.daemon.stop()
        try await feed.push(batch: (501...1000).map { Array("m\($0)".utf8) })  // while B is away
        try b.restartDaemon()
        try b.bridge.start()
        try await feed.push(batch: (1001...1500).map { Array("m\($0)".utf8) })
        let deadline = Date().addingTimeInterval(90)
        while listen.isRunning, Date() < deadline { try await Task.sleep(nanoseconds: 100_000_000) }
        if listen.isRunning { listen.terminate() }
        listen.waitUntilExit()
        let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let notes = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(listen.terminationStatus, 0, notes + "\n" + b.bridge.log.suffix(2000))
        let sequences = printed.split(separator: "\n").compactMap { UInt64($0.split(separator: "\t")[0]) }
        XCTAssertTrue(sequences == Array(1...UInt64(total)), "comet listen: \(sequences.count) lines, last \(sequences.last ?? 0)")
        XCTAssertTrue(b.bridge.log.contains("connected to NATS"), b.bridge.log.suffix(2000).description)
        await client.close()
    }

    /// Host A's bridge in a network namespace of its own, joined to the NATS cluster by a veth
    /// pair: the link goes down for 6 s while A streams (A is cut off from NATS; its local
    /// channel goes on), then comes back. B's readers end with every message once, in order.
    func testHostAPartitionedAndHealed() async throws {
        let ip = ["/usr/sbin/ip", "/usr/bin/ip", "/sbin/ip", "/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard getuid() == 0, let ip else { throw XCTSkip("network namespaces need root and ip(8)") }
        let n = getpid() % 200 + 20
        let namespace = "comet-a-\(getpid())"
        let outside = "cva\(getpid())", inside = "cvb\(getpid())"
        func run(_ arguments: [String]) throws {
            let result = try runTool(ip, arguments, absolute: true)
            guard result.status == 0 else { throw XCTSkip("ip \(arguments.joined(separator: " ")): \(result.stderr)") }
        }
        try run(["netns", "add", namespace])
        defer { _ = try? runTool(ip, ["netns", "del", namespace], absolute: true) }
        try run(["link", "add", outside, "type", "veth", "peer", "name", inside])
        defer { _ = try? runTool(ip, ["link", "del", outside], absolute: true) }
        try run(["link", "set", inside, "netns", namespace])
        try run(["addr", "add", "10.201.\(n).1/30", "dev", outside])
        try run(["link", "set", outside, "up"])
        try run(["netns", "exec", namespace, ip, "addr", "add", "10.201.\(n).2/30", "dev", inside])
        try run(["netns", "exec", namespace, ip, "link", "set", inside, "up"])
        try run(["netns", "exec", namespace, ip, "link", "set", "lo", "up"])

        let daemon = try Daemon(arguments: ["--log-level", "debug"])
        let bridge = try BridgeProcess(
            config: exporter(cluster.urls(at: "10.201.\(n).1")), socketPath: daemon.socketPath,
            launcher: [ip, "netns", "exec", namespace])
        let a = FederationTests.Host(daemon: daemon, bridge: bridge)
        hosts.append(a)
        let b = try host(importer(cluster.urls))
        let client = try await CometClient.connect(to: a.socketPath)
        let feed = try await client.create("feed", size: 200_000)
        let producer = Producer(feed)
        try await Task.sleep(nanoseconds: 3_000_000_000)
        try run(["link", "set", outside, "down"])
        try await Task.sleep(nanoseconds: 6_000_000_000)
        try run(["link", "set", outside, "up"])
        try await Task.sleep(nanoseconds: 3_000_000_000)
        let total = try await producer.stop()
        let got = try await readAll(b, total: total, epoch: feed.epoch)
        assertEveryMessageOnceInOrder(got, total, "host A partitioned and healed")
        await client.close()
    }
}
