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

    @Option(help: "Runs of each kind (store off, store on, taking turns) in the store comparison.")
    var storeRounds: Int = 5

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

    @Option(help: "Measure a daemon already serving this socket instead of starting one per scenario.")
    var socket: String?

    @Option(help: "With --socket: the daemon's pid, for the memory run (skipped without it).")
    var pid: Int32?

    @Flag(inversion: .prefixedNo, help: "Pin the daemon to the last core and the benchmark's clients to the others (steadier tails on a small machine).")
    var pin = true

    @Option(help: "Messages for the Swift-client runs.")
    var swiftMessages: Int = 2_000_000

    @Option(help: "Messages each of the 10 Swift readers reads in the Swift fan-out run.")
    var swiftFanOutMessages: Int = 500_000

    @Option(help: "Scenarios to run, comma-separated: 1to1, fanout, latency, isolation, memory, swift, federation, store, upgrade, crash; also awaited (only the Swift client's awaited pushes, which swift includes).")
    var only: String = "1to1,fanout,latency,isolation,memory,swift,federation,store,upgrade,crash"

    @Option(help: "Messages for the isolation runs.")
    var isolationMessages: Int = 500_000

    // The hostile side of the isolation run, started as another user (IsolationBench.stallReaders).
    @Option(help: .hidden) var stallReaders: String?
    @Option(help: .hidden) var stallAlive: Int = 3
    @Option(help: .hidden) var stallEvery: Int = 300
    @Option(help: .hidden) var stallSeconds: Int = 10

    @Option(help: "Messages for the federation run (A → B over a unix: relay and through NATS JetStream).")
    var federationMessages: Int = 200_000

    @Option(help: "The nats-server executable for the federation run (skipped when missing).")
    var natsServer: String = ["/usr/bin/nats-server", "/usr/sbin/nats-server"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "nats-server"

    func run() throws {
        if let name = stallReaders, let socket {
            try IsolationBench.runStallingReaders(socket: socket, name: name, alive: stallAlive, everyMilliseconds: stallEvery, seconds: stallSeconds)
            return
        }
        var limit = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
        let selected = Set(only.split(separator: ",").map(String.init))

        print("cometd benchmark: 64-byte payloads, \(ProcessInfo.processInfo.activeProcessorCount) cores, daemon \(socket ?? cometd)\(pin && socket == nil ? ", daemon pinned to the last core" : "")")
        if selected.contains("1to1") {
            // Without and with producer numbers (PUSH_NUMBERED), alternately, three times each:
            // single runs vary by several percent here.
            var plain: [Double] = []
            var numbered: [Double] = []
            for _ in 0..<3 {
                plain.append(try withDaemon { s, _ in try s.oneToOne(total: messages) })
                numbered.append(try withDaemon { s, _ in try s.oneToOne(total: messages, numbered: true) })
            }
            let runs = { (rates: [Double]) in rates.map { String(format: "%.2f", $0 / 1e6) }.joined(separator: ", ") }
            print(String(format: "1 producer → 1 consumer:        %10.0f msgs/s  (%d messages; best of 3: %@ M)", plain.max()!, messages, runs(plain)))
            print(String(format: "1 → 1, numbered pushes:         %10.0f msgs/s  (%d messages; best of 3: %@ M)", numbered.max()!, messages, runs(numbered)))
        }
        if selected.contains("fanout") {
            let fan = try withDaemon { s, _ in try s.fanOutWithPing(total: fanoutMessages, consumers: consumers) }
            print(String(format: "1 producer → %d consumers:    %10.0f delivered msgs/s  (%d messages each); PING every 10 ms meanwhile: longest %.1f ms",
                         consumers, fan.rate, fanoutMessages, fan.worstPingMilliseconds))
        }
        if selected.contains("latency") {
            let lat = try withDaemon { s, _ in try s.latency(rate: rate, seconds: seconds) }
            print(String(format: "latency at %d msgs/s:         p50 %.1f µs, p99 %.1f µs, p99.9 %.1f µs  (%d samples)", rate, lat.p50, lat.p99, lat.p999, lat.samples))
        }
        if selected.contains("isolation") {
            try isolation()
        }
        if selected.contains("swift") {
            for (onMain, mapped) in [(false, false), (false, true), (true, false), (true, true)] {
                let read = try withDaemon { s, _ in try s.swiftReader(total: swiftMessages, onMainActor: onMain, mapped: mapped) }
                print(String(format: "Swift client, for-try-await reader 1→1, %@: %10.0f msgs/s%@  (%d messages, default ring; %@)",
                             mapped ? "mapped" : "socket", read.rate, read.complete ? "" : " INCOMPLETE", swiftMessages,
                             onMain ? "Task { @MainActor in … } under a run loop" : "a task of the global executor"))
            }
            for mapped in [false, true] {
                let fan = try withDaemon { s, _ in try s.swiftFanOut(total: swiftFanOutMessages, readers: 10, mapped: mapped) }
                print(String(format: "Swift client, 10 for-try-await readers, %@: %10.0f delivered msgs/s%@  (%d messages each; tasks of the global executor)",
                             mapped ? "mapped" : "socket", fan.rate, fan.complete ? "" : " INCOMPLETE", swiftFanOutMessages))
            }
        }
        if selected.contains("swift") || selected.contains("awaited") {
            for (onMain, onConnection) in [(false, false), (true, false), (false, true)] {
                let rate = try withDaemon { s, _ in try s.swiftAwaitedPushes(count: 50_000, onMainActor: onMain, onConnection: onConnection) }
                let where_ = onMain ? "on the main actor" : onConnection ? "a task preferring client.executor" : "a task of the global executor"
                print(String(format: "Swift client, awaited push, one at a time: %9.0f round trips/s  (50000; %@)", rate, where_))
            }
        }
        if selected.contains("swift") {
            let contents = try withDaemon { s, _ in try s.swiftProducer(total: swiftMessages, contentsOf: true) }
            print(String(format: "Swift client, push(contentsOf:):          %10.0f msgs/s  (%d messages, until all are in)", contents, swiftMessages))
            let published = try withDaemon { s, _ in try s.swiftProducer(total: swiftMessages, contentsOf: false) }
            print(String(format: "Swift client, publish + flush:            %10.0f msgs/s  (%d messages, until all are in)", published, swiftMessages))
        }
        if selected.contains("federation") {
            if FileManager.default.isExecutableFile(atPath: natsServer), socket == nil {
                let bench = FederationBench(cometd: cometd, natsServer: natsServer)
                let report = try bench.run(messages: federationMessages, rate: 1000, seconds: 5)
                for (label, r) in [("A → B, unix: relay:            ", report.unix), ("A → bridge → JetStream R1 → B: ", report.r1),
                                   ("A → bridge → JetStream R3 → B: ", report.r3)] {
                    print(String(format: "%@%10.0f msgs/s  (%d messages); latency at 1000 msgs/s p50 %.1f µs, p99 %.1f µs (%d samples); first message of a new channel %.0f ms",
                                 label, r.throughput, federationMessages, r.p50, r.p99, r.samples, r.firstMilliseconds))
                }
                print(String(format: "plain nats.c JetStream publisher:  R1 %10.0f msgs/s, R3 %10.0f msgs/s (64 B, 1024 in flight); comet A → B: %.2f× and %.2f× of it",
                             report.ceilingR1, report.ceilingR3, report.r1.throughput / report.ceilingR1, report.r3.throughput / report.ceilingR3))
            } else {
                print("federation: skipped (needs \(natsServer) and no --socket; scripts/ensure-deps test installs nats-server)")
            }
        }
        if socket == nil {
            let restarts = RestartBench(cometd: cometd, pin: pin)
            if selected.contains("store") {
                // Alternately, five times each: the cost of keeping every ring in a memfd. Medians,
                // and the daemon's CPU time per message beside the rates.
                var without: [RestartBench.StoreRun] = []
                var with: [RestartBench.StoreRun] = []
                for _ in 0..<storeRounds {
                    without.append(try restarts.storeCost(messages: messages, fanoutMessages: fanoutMessages, consumers: consumers, store: false))
                    with.append(try restarts.storeCost(messages: messages, fanoutMessages: fanoutMessages, consumers: consumers, store: true))
                }
                func median(_ values: [Double]) -> Double {
                    let sorted = values.sorted()
                    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
                }
                let (w0, w1) = (median(without.map(\.one)), median(with.map(\.one)))
                let (f0, f1) = (median(without.map(\.fan)), median(with.map(\.fan)))
                let (c0, c1) = (median(without.map(\.cpuPerMessage)), median(with.map(\.cpuPerMessage)))
                print(String(format: "store off → on, 1 → 1:          %10.0f → %10.0f msgs/s (%+.1f %%)  (medians of %d runs each, alternating, under the test supervisor)", w0, w1, (w1 / w0 - 1) * 100, storeRounds))
                print(String(format: "  daemon CPU per message:       %10.0f → %10.0f ns (%+.1f %%)", c0, c1, (c1 / c0 - 1) * 100))
                print(String(format: "store off → on, 1 → %d:       %10.0f → %10.0f delivered msgs/s (%+.1f %%)", consumers, f0, f1, (f1 / f0 - 1) * 100))
            }
            if selected.contains("upgrade") {
                let o = try restarts.run(crash: false)
                print(String(format: "live upgrade (SIGHUP) under load: longest pause at a reader %.1f ms; %d readers, %d messages delivered, %d lost, %d duplicated (1000 connections, 100 channels × 1000 buffered, a producer pushing)", o.pauseMilliseconds, o.readers, o.delivered, o.lost, o.duplicated))
            }
            if selected.contains("crash") {
                let o = try restarts.run(crash: true)
                print(String(format: "crash (kill -9) and start under load: every reader reading again after %.0f ms; %d readers, %d messages delivered, %d lost, %d duplicated", o.recoveryMilliseconds ?? -1, o.readers, o.delivered, o.lost, o.duplicated))
            }
        }
        if selected.contains("memory") {
            let mem = try withDaemon { s, pid -> (Double, Int, Int)? in
                guard let pid else { return nil }
                let m = try s.idleSubscriberMemory(pid: pid, subscribers: idle)
                return (m.bytesPerSubscriber, m.before, m.after)
            }
            let cursors = try withDaemon { s, pid -> Double? in
                guard let pid else { return nil }
                return try s.idleSubscriptionMemory(pid: pid, subscriptions: idle)
            }
            if let (perSubscriber, before, after) = mem, let cursors {
                print(String(format: "daemon RSS per idle subscriber: %.0f bytes each on its own connection (%d subscribers; RSS %d → %d KiB)",
                             perSubscriber, idle, before / 1024, after / 1024))
                print(String(format: "daemon RSS per idle subscription: %.0f bytes when %d subscriptions share one connection", cursors, idle))
            } else {
                print("daemon RSS per idle subscriber: skipped (give --pid with --socket)")
            }
        }
    }

    /// Runs `body` against a fresh daemon (or the one at --socket).
    /// A producer and fast readers beside readers that do not read, of another user and of the
    /// producer's own (each figure in a daemon of its own).
    func isolation() throws {
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let hostile = IsolationBench.hostileUID
        // Alternately, three times each (runs of a few seconds vary by ±15 % here): the best rate
        // of each, and the longest wait of all.
        var aloneRuns: [(rate: Double, worstWaitMilliseconds: Double)] = []
        var attackedRuns: [(rate: Double, worstWaitMilliseconds: Double)] = []
        for _ in 0..<3 {
            aloneRuns.append(try withDaemon { s, _ in try IsolationBench(socket: s.socket).producer(total: isolationMessages, name: "iso.alone") })
            attackedRuns.append(try withDaemon { s, _ -> (rate: Double, worstWaitMilliseconds: Double) in
                chmod((s.socket as NSString).deletingLastPathComponent, 0o755)
                let readers = try IsolationBench.stallReaders(
                    cometBench: me, socket: s.socket, name: "iso.attacked", alive: 3, everyMilliseconds: 300, seconds: 120, uid: hostile)
                defer {
                    readers.terminate()
                    readers.waitUntilExit()
                }
                sleep(1)
                return try IsolationBench(socket: s.socket).producer(total: isolationMessages, name: "iso.attacked")
            })
        }
        let alone = (rate: aloneRuns.map(\.rate).max()!, worstWaitMilliseconds: aloneRuns.map(\.worstWaitMilliseconds).max()!)
        let attacked = (rate: attackedRuns.map(\.rate).max()!, worstWaitMilliseconds: attackedRuns.map(\.worstWaitMilliseconds).max()!)
        print(String(format: "producer alone:                 %10.0f msgs/s, longest push wait %.1f ms  (%d single pushes, default ring, one fast reader; best of 3)",
                     alone.rate, alone.worstWaitMilliseconds, isolationMessages))
        print(String(format: "producer, uid %d stalling:    %10.0f msgs/s (%.0f %%), longest push wait %.1f ms  (3 non-reading subscriptions, a fresh one every 0.3 s)",
                     hostile, attacked.rate, attacked.rate / alone.rate * 100, attacked.worstWaitMilliseconds))
        let fast = isolationMessages
        var rates: [(String, Double)] = []
        for (label, stalled) in [("none", nil), ("uid \(hostile)", hostile), ("same uid", 0)] as [(String, Int?)] {
            let rate = try withDaemon { s, _ -> Double in
                chmod((s.socket as NSString).deletingLastPathComponent, 0o755)
                return try IsolationBench(socket: s.socket).fastBesideStalled(total: fast, readers: 10, stalled: stalled, name: "iso.fast", cometBench: me)
            }
            rates.append((label, rate))
        }
        let base = rates[0].1
        print("10 fast readers beside a stalled one: " + rates.map { String(format: "%@ %.0f delivered msgs/s (%.0f %%)", $0.0, $0.1, $0.1 / base * 100) }.joined(separator: ", ")
            + "  (\(fast) messages each)")
    }

    func withDaemon<T>(_ body: (Scenarios, pid_t?) throws -> T) throws -> T {
        if let socket { return try body(Scenarios(socket: socket), pid) }
        let directory = "/tmp/comet-bench-\(getpid())"
        mkdir(directory, 0o700)
        let path = directory + "/comet.sock"
        let daemon = Process()
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let taskset = "/usr/bin/taskset"
        if pin, cores >= 2, FileManager.default.isExecutableFile(atPath: taskset) {
            daemon.executableURL = URL(fileURLWithPath: taskset)
            daemon.arguments = ["-c", "\(cores - 1)", cometd, "--socket", path, "--log-level", "warning"]
            pinSelf(to: 0..<(cores - 1))
        } else {
            daemon.executableURL = URL(fileURLWithPath: cometd)
            daemon.arguments = ["--socket", path, "--log-level", "warning"]
        }
        try daemon.run()
        defer {
            daemon.terminate()
            daemon.waitUntilExit()
            rmdir(directory)
        }
        for _ in 0..<400 where (try? BenchSocket(path: path)) == nil { usleep(25_000) }
        return try body(Scenarios(socket: path), daemon.processIdentifier)
    }
}

/// Restricts this process (and the threads it starts later) to `cores`.
func pinSelf(to cores: Range<Int>) {
    let taskset = Process()
    taskset.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
    taskset.arguments = ["-a", "-p", "-c", "\(cores.lowerBound)-\(cores.upperBound - 1)", "\(getpid())"]
    taskset.standardOutput = FileHandle.nullDevice
    try? taskset.run()
    taskset.waitUntilExit()
}
