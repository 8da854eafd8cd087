import CometWire
import Foundation
import Glibc
import NIOCore

/// A → B across "hosts": a producer on daemon A, a reader on daemon B reading A's channel
/// through B (SUBSCRIBE_EXTERNAL), either relayed over A's Unix socket or through NATS JetStream
/// (A exports to a local nats-server, B imports from it). Same run, same machine.
struct FederationBench {
    let cometd: String
    let natsServer: String

    struct Result {
        var throughput: Double
        var p50: Double
        var p99: Double
        var samples: Int
    }

    /// Starts nats-server and the two daemons, measures both paths, stops everything by PID.
    func run(messages: Int, rate: Int, seconds: Int) throws -> (unix: Result, nats: Result) {
        let directory = "/tmp/comet-bench-fed-\(getpid())"
        mkdir(directory, 0o700)
        defer { _ = try? FileManager.default.removeItem(atPath: directory) }
        let port = Int.random(in: 20_000...60_000)
        let nats = Process()
        nats.executableURL = URL(fileURLWithPath: natsServer)
        nats.arguments = ["-js", "-sd", directory + "/js", "-a", "127.0.0.1", "-p", "\(port)"]
        nats.standardError = FileHandle.nullDevice
        nats.standardOutput = FileHandle.nullDevice
        try nats.run()
        defer {
            nats.terminate()
            nats.waitUntilExit()
        }
        let url = "nats://127.0.0.1:\(port)"
        try "[nats hub]\nurl = \(url)\n[export bench.nats]\nstorage = memory\n".write(toFile: directory + "/a.conf", atomically: true, encoding: .utf8)
        try "[nats hub]\nurl = \(url)\n".write(toFile: directory + "/b.conf", atomically: true, encoding: .utf8)
        let a = try start(socket: directory + "/a.sock", config: directory + "/a.conf")
        defer { stop(a) }
        let b = try start(socket: directory + "/b.sock", config: directory + "/b.conf")
        defer { stop(b) }
        let unix = try measure(a: directory + "/a.sock", b: directory + "/b.sock", name: "bench.unix", address: "unix:" + directory + "/a.sock", messages: messages, rate: rate, seconds: seconds)
        let viaNATS = try measure(a: directory + "/a.sock", b: directory + "/b.sock", name: "bench.nats", address: "\(url)/comet.bench.nats", messages: messages, rate: rate, seconds: seconds)
        return (unix, viaNATS)
    }

    private func start(socket: String, config: String) throws -> Process {
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: cometd)
        daemon.arguments = ["--socket", socket, "--config", config, "--log-level", "warning"]
        try daemon.run()
        for _ in 0..<400 where (try? BenchSocket(path: socket)) == nil { usleep(25_000) }
        return daemon
    }

    private func stop(_ daemon: Process) {
        daemon.terminate()
        daemon.waitUntilExit()
    }

    /// Throughput of `messages` pushed on A and read on B, then latency at `rate` for `seconds`.
    private func measure(a: String, b: String, name: String, address: String, messages: Int, rate: Int, seconds: Int) throws -> Result {
        let messages = max(256, messages / 256 * 256)  // whole batches: the reader then sees exactly these
        let producer = try BenchSocket(path: a)
        try producer.handshake()
        let channel = try producer.create(name, size: 1_000_000)
        let consumer = try BenchSocket(path: b)
        try consumer.handshake()
        // The export publishes its open marker when the channel appears; the import needs it.
        var subscribed = false
        for _ in 0..<200 {
            let id = consumer.send(.subscribeExternal(address: address, name: name, history: 1_000_000, newest: false))
            if (try? consumer.ok(id)) != nil {
                subscribed = true
                break
            }
            usleep(25_000)
        }
        guard subscribed else { throw BenchFailure("\(address): the reader on B could not subscribe") }
        // Throughput, checked in order with no gap.
        guard let throughput = Scenarios(socket: a).streamRate(channel: channel, producer: producer, consumer: consumer, total: messages, lead: 200_000) else {
            throw BenchFailure("\(address): the reader on B saw a gap or FULL")
        }
        // Latency: paced pushes carrying their send time; the reader takes each as it comes.
        var latencies = try Scenarios.pacedLatencies(producer: producer, consumer: consumer, channel: channel, rate: rate, seconds: seconds, payloadSize: 64)
        latencies.sort()
        func percentile(_ p: Double) -> Double { Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) / 1000 }
        return Result(throughput: throughput, p50: percentile(0.5), p99: percentile(0.99), samples: latencies.count)
    }
}
