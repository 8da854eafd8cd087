import Comet
import CometSupervision
import Foundation
import Glibc
import NIOConcurrencyHelpers

/// The figures of docs/RESTARTS.md: a live upgrade and a crash under load — 1,000 connections,
/// 100 channels with 1,000 buffered messages each, a producer pushing throughout — and what
/// keeping rings in the file-descriptor store costs the write path.
struct RestartBench {
    let cometd: String
    let pin: Bool

    struct Outcome {
        /// The longest time a reader of a channel pushed every millisecond went without a message.
        var pauseMilliseconds: Double
        /// From SIGKILL until every reader had a message pushed after the restart.
        var recoveryMilliseconds: Double?
        var readers: Int
        var delivered: Int
        var lost: Int
        var duplicated: Int
    }

    /// Everything a reader saw: per channel, sequence numbers in order or not.
    final class Reader: @unchecked Sendable {
        let lock = NIOLock()
        var last: UInt64 = 0
        var count = 0
        var duplicates = 0
        var gaps = 0
        var lastArrival: UInt64 = 0
        var longestGap: UInt64 = 0
        var errors: [String] = []

        func saw(_ sequence: UInt64, at now: UInt64, measureGaps: Bool) {
            lock.withLock {
                if sequence <= last { duplicates += 1 } else {
                    if sequence != last + 1 { gaps += Int(sequence - last - 1) }
                    last = sequence
                    count += 1
                }
                if measureGaps, lastArrival > 0 { longestGap = max(longestGap, now - lastArrival) }
                lastArrival = now
            }
        }
    }

    private func launcher() -> [String] {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        guard pin, cores >= 2, FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset") else { return [] }
        pinSelf(to: 0..<(cores - 1))
        return ["/usr/bin/taskset", "-c", "\(cores - 1)"]
    }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// - Parameter crash: SIGKILL and a start through the store (clients reconnect by
    ///   themselves) instead of SIGHUP (a live upgrade).
    func run(crash: Bool, connections: Int = 1000, channels: Int = 100, buffered: Int = 1000) throws -> Outcome {
        let supervisor = try Supervisor(arguments: ["--log-level", "notice"], executable: URL(fileURLWithPath: cometd), launcher: launcher())
        try supervisor.start()
        defer { supervisor.stop(SIGTERM) }
        let socket = supervisor.socketPath
        let policy = ReconnectPolicy(initialDelay: .milliseconds(5), maxDelay: .milliseconds(100), giveUpAfter: .seconds(30))
        return try runBlocking {
            let producerClient = try await CometClient.connect(to: socket, reconnect: policy)
            var producers: [ChannelProducer] = []
            for c in 0..<channels {
                let producer = try await producerClient.create("restart.\(c)", size: buffered * 4)
                try await producer.push(batch: (1...buffered).map { Array("m\($0)".utf8) })
                producers.append(producer)
            }
            let probe = try await producerClient.create("restart.probe", size: 10_000)
            // Readers: one of them on the probe (the pause), the rest spread over the channels.
            var clients: [CometClient] = []
            var readers: [(Reader, Int)] = []
            var tasks: [Task<Void, Never>] = []
            for r in 0..<(connections - 1) {
                let client = try await CometClient.connect(to: socket, reconnect: policy)
                clients.append(client)
                let channel = r == 0 ? channels : r % channels
                let subscription = try await client.subscribe(channel == channels ? "restart.probe" : "restart.\(channel)", from: .oldest)
                let reader = Reader()
                readers.append((reader, channel))
                let isProbe = channel == channels
                tasks.append(Task {
                    do {
                        for try await message in subscription { reader.saw(message.sequence, at: Self.now(), measureGaps: isProbe) }
                    } catch {
                        reader.lock.withLock { reader.errors.append("\(error)") }
                    }
                })
            }
            // The producer: the probe every millisecond, one channel of the hundred in turn.
            let stop = NIOLockedValueBox(false)
            let pushing = Task { () -> [UInt64] in
                var lasts = [UInt64](repeating: UInt64(buffered), count: channels + 1)
                lasts[channels] = 0
                var turn = 0
                while !stop.withLockedValue({ $0 }) {
                    for target in [channels, turn % channels] {
                        let producer = target == channels ? probe : producers[target]
                        do {
                            lasts[target] = try await producer.push(Array("p\(lasts[target] + 1)".utf8))
                        } catch {
                            // Lost in a crash: the channel says whether it landed; either way go on after it.
                            if let last = try? await producer.lastSequence() { lasts[target] = last }
                        }
                    }
                    turn += 1
                    try? await Task.sleep(for: .milliseconds(1))
                }
                return lasts
            }
            try await Task.sleep(for: .seconds(1))
            let probeReader = readers[0].0
            probeReader.lock.withLock { probeReader.longestGap = 0 }
            var recovery: Double?
            if crash {
                let before = readers.map { r in r.0.lock.withLock { r.0.last } }
                let killed = Self.now()
                supervisor.stop(SIGKILL)
                try supervisor.start()
                // Every reader reading again: a message newer than what it had before the crash.
                let deadline = killed + 30_000_000_000
                while Self.now() < deadline {
                    let behind = zip(readers, before).filter { r, b in r.0.lock.withLock { r.0.last } <= b }.count
                    if behind == 0 { break }
                    try await Task.sleep(for: .milliseconds(1))
                }
                recovery = Double(Self.now() - killed) / 1e6
            } else {
                let pid = supervisor.pid
                kill(pid, SIGHUP)
                let deadline = Self.now() + 30_000_000_000
                while !supervisor.log.contains("state taken over"), Self.now() < deadline { try await Task.sleep(for: .milliseconds(1)) }
                guard supervisor.pid == pid else { throw Supervisor.Failure("the pid changed") }
            }
            try await Task.sleep(for: .seconds(1))
            stop.withLockedValue { $0 = true }
            let lasts = await pushing.value
            // Let every reader drain, then count.
            let drained = Self.now() + 10_000_000_000
            while Self.now() < drained {
                if readers.allSatisfy({ r in r.0.lock.withLock { r.0.last } >= lasts[r.1] }) { break }
                try await Task.sleep(for: .milliseconds(5))
            }
            var outcome = Outcome(
                pauseMilliseconds: Double(probeReader.lock.withLock { probeReader.longestGap }) / 1e6, recoveryMilliseconds: recovery,
                readers: readers.count, delivered: 0, lost: 0, duplicated: 0)
            for (reader, channel) in readers {
                reader.lock.withLock {
                    outcome.delivered += reader.count
                    outcome.duplicated += reader.duplicates
                    outcome.lost += reader.gaps + Int(lasts[channel] > reader.last ? lasts[channel] - reader.last : 0)
                }
            }
            for client in clients { await client.close() }
            await producerClient.close()
            for task in tasks { task.cancel() }
            return outcome
        }
    }

    /// One run of `storeCost`: rates, and the daemon's CPU time per message of the 1 → 1 run
    /// (every thread of it, from /proc: steadier than a rate on a small, shared machine).
    struct StoreRun {
        var one: Double
        var fan: Double
        var cpuPerMessage: Double
    }

    /// 1 → 1 and 1 → N through a daemon started by the test supervisor, with its
    /// file-descriptor store on (rings kept in memfds) or off.
    func storeCost(messages: Int, fanoutMessages: Int, consumers: Int, store: Bool) throws -> StoreRun {
        let supervisor = try Supervisor(
            arguments: ["--log-level", "warning", "--fd-store", store ? "on" : "off"], executable: URL(fileURLWithPath: cometd),
            launcher: launcher())
        try supervisor.start()
        defer { supervisor.stop(SIGTERM) }
        let scenarios = Scenarios(socket: supervisor.socketPath)
        let before = Self.cpuNanoseconds(supervisor.pid)
        let one = try scenarios.oneToOne(total: messages)
        let cpu = Self.cpuNanoseconds(supervisor.pid) - before
        let fan = try scenarios.fanOut(total: fanoutMessages, consumers: consumers)
        return StoreRun(one: one, fan: fan, cpuPerMessage: Double(cpu) / Double(messages))
    }

    /// A process's user and system time so far, every thread of it (0 when unreadable).
    static func cpuNanoseconds(_ pid: pid_t) -> Int {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let end = stat.lastIndex(of: ")")
        else { return 0 }
        // Fields after the command's closing parenthesis start at the third (state); utime and
        // stime are the 14th and 15th.
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return 0 }
        return (user + system) * 1_000_000_000 / sysconf(Int32(_SC_CLK_TCK))
    }
}
