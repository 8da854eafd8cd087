import CNATSBridge
import CometWire
import Foundation
import Glibc
import NIOCore

/// A → B across "hosts", same run, same machine: a producer on cometd A, a reader on cometd B.
/// Three paths: a `unix:` relay (B reads A's socket), and NATS JetStream through comet-bridge on
/// each side (A's bridge exports, B's imports) with an R1 stream on one nats-server and an R3
/// stream on a three-node cluster. Beside them, the ceiling: a plain nats.c program publishing
/// the same 64-byte messages asynchronously to a stream of each kind.
struct FederationBench {
    let cometd: String
    let natsServer: String

    struct Result {
        /// Messages per second once the path carries messages (after the first one).
        var throughput: Double
        var p50: Double
        var p99: Double
        var samples: Int
        /// From the first push of a new channel until B read it.
        var firstMilliseconds: Double
    }

    struct Report {
        var unix: Result
        var r1: Result
        var r3: Result
        /// Messages per second of the plain nats.c publisher, R1 and R3.
        var ceilingR1: Double
        var ceilingR3: Double
    }

    /// comet-bridge beside cometd.
    var bridge: String { URL(fileURLWithPath: cometd).deletingLastPathComponent().appendingPathComponent("comet-bridge").path }

    /// Starts nats-server (one, and a cluster of three), the two daemons and their bridges,
    /// measures every path, stops everything by PID.
    func run(messages: Int, rate: Int, seconds: Int) throws -> Report {
        let directory = "/tmp/comet-bench-fed-\(getpid())"
        mkdir(directory, 0o700)
        defer { _ = try? FileManager.default.removeItem(atPath: directory) }
        var processes: [Process] = []
        defer {
            for p in processes.reversed() where p.isRunning {
                p.terminate()
                p.waitUntilExit()
            }
        }
        func spawn(_ path: String, _ arguments: [String]) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: path)
            p.arguments = arguments
            p.standardError = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            processes.append(p)
            return p
        }
        var ports = Set<Int>()
        while ports.count < 7 { ports.insert(Int.random(in: 20_000...60_000)) }
        let port = Array(ports)
        _ = try spawn(natsServer, ["-js", "-sd", directory + "/js", "-a", "127.0.0.1", "-p", "\(port[0])"])
        let one = "nats://127.0.0.1:\(port[0])"
        var three: [String] = []
        for i in 0..<3 {
            let routes = (0..<3).filter { $0 != i }.map { "nats-route://127.0.0.1:\(port[4 + $0])" }.joined(separator: ", ")
            let config = """
                server_name: n\(i)
                listen: 127.0.0.1:\(port[1 + i])
                jetstream { store_dir: "\(directory)/n\(i)" }
                cluster { name: bench, listen: 127.0.0.1:\(port[4 + i]), routes: [\(routes)] }
                """
            try config.write(toFile: "\(directory)/n\(i).conf", atomically: true, encoding: .utf8)
            _ = try spawn(natsServer, ["-c", "\(directory)/n\(i).conf"])
            three.append("nats://127.0.0.1:\(port[1 + i])")
        }
        // The bridges' user may feed imports named remote.*, whoever runs the bench.
        try "mirror remote.* user:\(getuid())\n".write(toFile: directory + "/policy.conf", atomically: true, encoding: .utf8)
        try """
            [nats one]
            url = \(one)
            [nats three]
            url = \(three.joined(separator: ", "))
            [export bench.r1]
            server = one
            [export bench.r3]
            server = three
            replicas = 3
            """.write(toFile: directory + "/a.conf", atomically: true, encoding: .utf8)
        try """
            [nats one]
            url = \(one)
            [nats three]
            url = \(three.joined(separator: ", "))
            [import remote.bench.r1]
            server = one
            subject = comet.bench.r1
            size = 1000000
            [import remote.bench.r3]
            server = three
            subject = comet.bench.r3
            size = 1000000
            """.write(toFile: directory + "/b.conf", atomically: true, encoding: .utf8)
        for host in ["a", "b"] {
            let socket = "\(directory)/\(host).sock"
            _ = try spawn(cometd, ["--socket", socket, "--policy", directory + "/policy.conf", "--log-level", "warning"])
            for _ in 0..<400 where (try? BenchSocket(path: socket)) == nil { usleep(25_000) }
            _ = try spawn(bridge, ["--config", "\(directory)/\(host).conf", "--socket", socket, "--log-level", "warning", "--scan-interval", "0.1"])
        }
        let a = directory + "/a.sock"
        let b = directory + "/b.sock"
        let unix = try measure(a: a, b: b, name: "bench.unix", read: .subscribeExternal(address: "unix:" + a, name: "bench.unix", history: 1_000_000, newest: false), messages: messages, rate: rate, seconds: seconds)
        let r1 = try measure(a: a, b: b, name: "bench.r1", read: .subscribe(name: "remote.bench.r1", position: .oldest, epoch: 0, wait: true), messages: messages, rate: rate, seconds: seconds)
        let r3 = try measure(a: a, b: b, name: "bench.r3", read: .subscribe(name: "remote.bench.r3", position: .oldest, epoch: 0, wait: true), messages: messages, rate: rate, seconds: seconds)
        return Report(
            unix: unix, r1: r1, r3: r3, ceilingR1: try ceiling([one], replicas: 1, messages: messages),
            ceilingR3: try ceiling(three, replicas: 3, messages: messages))
    }

    /// The plain nats.c publisher: `messages` of 64 bytes, 1024 in flight (as the bridge).
    private func ceiling(_ servers: [String], replicas: Int32, messages: Int) throws -> Double {
        var error = [CChar](repeating: 0, count: 512)
        let copies = servers.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        let list = copies.map { UnsafePointer($0) }
        let rate = list.withUnsafeBufferPointer { buffer in
            cn_bench_publish(buffer.baseAddress, Int32(buffer.count), "BENCH_CEILING", "bench.ceiling", replicas, Int32(messages), 64, 1024, &error, error.count)
        }
        guard rate > 0 else { throw BenchFailure("the plain JetStream publisher failed: \(String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))") }
        return rate
    }

    /// Throughput of `messages` pushed on A and read on B (in order, no gap), then latency at
    /// `rate` for `seconds`.
    private func measure(a: String, b: String, name: String, read: Request.Operation, messages: Int, rate: Int, seconds: Int) throws -> Result {
        let messages = max(256, messages / 256 * 256)  // whole batches: the reader then sees exactly these
        let producer = try BenchSocket(path: a)
        try producer.handshake()
        let channel = try producer.create(name, size: 1_000_000)
        let consumer = try BenchSocket(path: b)
        try consumer.handshake()
        // An import waits for the channel's first epoch; a relay needs the channel to exist.
        var subscribed = false
        for _ in 0..<400 {
            if (try? consumer.ok(consumer.send(read))) != nil {
                subscribed = true
                break
            }
            usleep(25_000)
        }
        guard subscribed else { throw BenchFailure("\(name): the reader on B could not subscribe") }
        // The first message after the channel was created, timed on its own: it includes making
        // the stream and B finding it (looked for every 2 s at most while it does not exist).
        let began = DispatchTime.now().uptimeNanoseconds
        Scenarios(socket: a).produce(channel: channel, producer: producer, total: 1, batch: 1, consumed: AtomicCounter(), lead: Int.max)
        guard Scenarios.consume(consumer, total: 1, progress: nil) else { throw BenchFailure("\(name): the first message did not reach B") }
        let first = Double(DispatchTime.now().uptimeNanoseconds - began) / 1e6
        usleep(20_000)  // the producer's answer reader (a thread of its own) is done with its one OK
        guard let throughput = Scenarios(socket: a).streamRate(
            channel: channel, producer: producer, consumer: consumer, total: messages, lead: 200_000, from: 2) else {
            throw BenchFailure("\(name): the reader on B saw a gap or FULL")
        }
        var latencies = try Scenarios.pacedLatencies(producer: producer, consumer: consumer, channel: channel, rate: rate, seconds: seconds, payloadSize: 64)
        latencies.sort()
        func percentile(_ p: Double) -> Double { Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) / 1000 }
        return Result(throughput: throughput, p50: percentile(0.5), p99: percentile(0.99), samples: latencies.count, firstMilliseconds: first)
    }
}
