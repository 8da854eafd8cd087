import ArgumentParser
import Foundation
import Glibc

/// `comet-bench`: starts a cometd on a temporary socket and measures it (README, "Speed").
@main
struct CometBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "comet-bench",
        abstract: "Measure cometd: 1→1 and 1→N throughput, latency at a fixed rate, memory per idle subscriber.")

    @Option(help: "The cometd executable to start (a release build).")
    var cometd: String = ".build/release/cometd"

    @Option(help: "Messages for the 1→1 run.")
    var messages: Int = 4_000_000

    @Option(help: "Messages for the 1→N run (each delivered to every consumer).")
    var fanoutMessages: Int = 200_000

    @Option(help: "Consumers for the 1→N run.")
    var consumers: Int = 100

    @Option(help: "Messages per second for the latency run.")
    var rate: Int = 10_000

    @Option(help: "Seconds of the latency run.")
    var seconds: Int = 5

    @Option(help: "Idle subscribers for the memory run.")
    var idle: Int = 1000

    func run() throws {
        let directory = "/tmp/comet-bench-\(getpid())"
        mkdir(directory, 0o700)
        let socket = directory + "/comet.sock"
        let daemon = Process()
        daemon.executableURL = URL(fileURLWithPath: cometd)
        daemon.arguments = ["--socket", socket, "--log-level", "warning"]
        try daemon.run()
        defer {
            daemon.terminate()
            daemon.waitUntilExit()
            rmdir(directory)
        }
        for _ in 0..<200 where (try? BenchSocket(path: socket)) == nil { usleep(25_000) }
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)

        let scenarios = Scenarios(socket: socket)
        print("cometd benchmark: 64-byte payloads, daemon \(cometd), \(ProcessInfo.processInfo.activeProcessorCount) cores")
        let one = try scenarios.oneToOne(total: messages)
        print(String(format: "1 producer → 1 consumer:      %10.0f msgs/s  (%d messages)", one, messages))
        let fan = try scenarios.fanOut(total: fanoutMessages, consumers: consumers)
        print(String(format: "1 producer → %d consumers:  %10.0f delivered msgs/s  (%d messages each)", consumers, fan, fanoutMessages))
        let lat = try scenarios.latency(rate: rate, seconds: seconds)
        print(String(format: "latency at %d msgs/s:       p50 %.1f µs, p99 %.1f µs, p99.9 %.1f µs  (%d samples)", rate, lat.p50, lat.p99, lat.p999, lat.samples))
        let mem = try scenarios.idleSubscriberMemory(pid: daemon.processIdentifier, subscribers: idle)
        print(String(format: "daemon RSS per idle subscriber: %.0f bytes  (%d subscribers, each its own connection; RSS %d → %d KiB)",
                     mem.bytesPerSubscriber, idle, mem.before / 1024, mem.after / 1024))
    }
}
