import CometWire
import Foundation
import Glibc
import NIOCore
import Synchronization

/// The benchmark scenarios of README "Speed". Each returns a line of results.
struct Scenarios {
    let socket: String
    let payloadSize = 64

    /// A PUSH_BATCH frame of `count` payloads of `payloadSize` bytes; with `numbered`, a
    /// PUSH_NUMBERED from number 1 (`numberAt` is where its number goes).
    func batchFrame(channel: UInt64, count: Int, numbered: Bool = false) -> ByteBuffer {
        var out = ByteBuffer()
        let payload = ByteBuffer(bytes: [UInt8](repeating: 0x6D, count: payloadSize))
        let payloads = Array(repeating: payload, count: count)
        Request(id: 1_000_000, numbered ? .pushNumbered(channel: channel, number: 1, payloads: MessageBatch(payloads)) : .pushBatch(channel: channel, payloads: MessageBatch(payloads)))
            .encode(into: &out)
        return out
    }

    /// Offset of a PUSH_NUMBERED frame's number: length, opcode, request id, channel.
    static let numberAt = 4 + 1 + 4 + 8

    /// Producer pushes `total` messages in batches while a reader thread drains the OKs, staying at
    /// most `lead` messages ahead of the slowest consumer so that nobody overflows the ring.
    func produce(channel: UInt64, producer: BenchSocket, total: Int, batch: Int, consumed: AtomicCounter, lead: Int, numbered: Bool = false) {
        var frame = batchFrame(channel: channel, count: batch, numbered: numbered)
        let okReader = Thread {
            var answered = 0
            while answered < total / batch, let (op, _) = producer.nextFrame() {
                if op == Opcode.ok.rawValue { answered += 1 }
            }
        }
        okReader.start()
        var pushed = 0
        while pushed < total {
            while pushed - consumed.load() > lead { sched_yield() }
            if numbered { frame.setInteger(UInt64(pushed + 1), at: Self.numberAt) }
            producer.write(frame)
            pushed += batch
        }
    }

    /// Counts MESSAGE frames on `socket` until `total`, checking they arrive in sequence order.
    static func consume(_ socket: BenchSocket, total: Int, progress: AtomicCounter?, from first: UInt64 = 1) -> Bool {
        var received = 0
        var expected = first
        while received < total, let (op, body) = socket.nextFrame() {
            if op == Opcode.message.rawValue {
                let seq = socket.u64(at: body.lowerBound + 5)
                if seq != expected { return false }
                expected += 1
                received += 1
                if received & 1023 == 0 { progress?.add(1024) }
            } else if op == Opcode.full.rawValue {
                return false
            }
        }
        return received == total
    }

    /// 1 → 1; `numbered`: the producer's pushes carry producer numbers (PUSH_NUMBERED).
    func oneToOne(total: Int, numbered: Bool = false) throws -> Double {
        let producer = try BenchSocket(path: socket)
        try producer.handshake()
        let channel = try producer.create("bench.1to1", size: 1_000_000)
        let consumer = try BenchSocket(path: socket)
        try consumer.handshake()
        _ = try consumer.subscribe("bench.1to1")
        guard let rate = streamRate(channel: channel, producer: producer, consumer: consumer, total: total, lead: 500_000, numbered: numbered) else {
            throw BenchFailure("1→1: a consumer saw a gap or FULL")
        }
        return rate
    }

    /// Pushes `total` messages in batches while another thread reads them on `consumer`, checked
    /// in order; messages per second from the first push to the last read, nil on a gap or FULL.
    func streamRate(
        channel: UInt64, producer: BenchSocket, consumer: BenchSocket, total: Int, lead: Int, numbered: Bool = false, from first: UInt64 = 1
    ) -> Double? {
        let consumed = AtomicCounter()
        let ok = AtomicCounter()
        let done = DispatchSemaphore(value: 0)
        let start = now()
        let reader = Thread {
            ok.store(Scenarios.consume(consumer, total: total, progress: consumed, from: first) ? 1 : 0)
            done.signal()
        }
        reader.start()
        produce(channel: channel, producer: producer, total: total, batch: 256, consumed: consumed, lead: lead, numbered: numbered)
        done.wait()
        guard ok.load() == 1 else { return nil }
        return Double(total) / (Double(now() - start) / 1e9)
    }

    func fanOut(total: Int, consumers: Int) throws -> Double {
        let producer = try BenchSocket(path: socket)
        try producer.handshake()
        let channel = try producer.create("bench.fanout", size: 1_000_000)
        var sockets: [BenchSocket] = []
        for _ in 0..<consumers {
            let s = try BenchSocket(path: socket)
            try s.handshake()
            _ = try s.subscribe("bench.fanout")
            sockets.append(s)
        }
        // The slowest reader's progress bounds the producer's lead.
        let slowest = AtomicCounter()
        let failures = AtomicCounter()
        let group = DispatchGroup()
        let threads = 2
        let start = now()
        for t in 0..<threads {
            let mine = stride(from: t, to: consumers, by: threads).map { sockets[$0] }
            group.enter()
            let thread = Thread {
                if !Scenarios.consumeMany(mine, total: total, slowest: t == 0 ? slowest : nil) { failures.add(1) }
                group.leave()
            }
            thread.start()
        }
        produce(channel: channel, producer: producer, total: total, batch: 256, consumed: slowest, lead: 400_000)
        group.wait()
        let seconds = Double(now() - start) / 1e9
        guard failures.load() == 0 else { throw BenchFailure("1→\(consumers): a consumer saw a gap or FULL") }
        return Double(total * consumers) / seconds
    }

    /// The 1→N run, with another connection sending PING every 10 ms meanwhile: the delivered
    /// rate and the longest PING round trip (ms) — what a fan-out costs everyone else.
    func fanOutWithPing(total: Int, consumers: Int) throws -> (rate: Double, worstPingMilliseconds: Double) {
        let pinger = try BenchSocket(path: socket)
        try pinger.handshake()
        let stop = AtomicCounter()
        let worst = AtomicCounter()
        let done = DispatchSemaphore(value: 0)
        Thread {
            var longest: UInt64 = 0
            while stop.load() == 0 {
                let start = now()
                guard (try? pinger.ok(pinger.send(.ping))) != nil else { break }
                longest = max(longest, now() - start)
                usleep(10_000)
            }
            worst.store(Int(longest))
            done.signal()
        }.start()
        let rate = try fanOut(total: total, consumers: consumers)
        stop.store(1)
        done.wait()
        return (rate, Double(worst.load()) / 1e6)
    }

    /// One thread serving many consumer sockets with poll(2).
    static func consumeMany(_ sockets: [BenchSocket], total: Int, slowest: AtomicCounter?) -> Bool {
        var received = [Int](repeating: 0, count: sockets.count)
        var expected = [UInt64](repeating: 1, count: sockets.count)
        var fds = sockets.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        var remaining = sockets.count
        while remaining > 0 {
            guard poll(&fds, nfds_t(fds.count), 30_000) > 0 else { return false }
            for i in fds.indices where fds[i].revents != 0 && received[i] < total {
                let s = sockets[i]
                guard s.fill() else { return false }
                while s.buffer.count - s.start >= 4 {
                    let length = Int(s.u32(at: s.start))
                    guard s.buffer.count - s.start >= 4 + length else { break }
                    let body = s.start + 4
                    s.start += 4 + length
                    let op = s.buffer[body]
                    if op == Opcode.message.rawValue {
                        if s.u64(at: body + 5) != expected[i] { return false }
                        expected[i] += 1
                        received[i] += 1
                    } else if op == Opcode.full.rawValue {
                        return false
                    }
                }
                if received[i] >= total {
                    remaining -= 1
                    fds[i].events = 0
                }
            }
            slowest?.store(received.min()!)
        }
        return true
    }

    /// Pushes one message every `1/rate` s for `seconds`, each carrying its send time, and measures
    /// when it arrives. One thread does both with poll(2), so the figures hold no thread hand-offs
    /// of the benchmark's own: only the daemon's hop.
    func latency(rate: Int, seconds: Int) throws -> (p50: Double, p99: Double, p999: Double, samples: Int) {
        let producer = try BenchSocket(path: socket)
        try producer.handshake()
        let channel = try producer.create("bench.latency", size: 1000)
        let consumer = try BenchSocket(path: socket)
        try consumer.handshake()
        _ = try consumer.subscribe("bench.latency")
        var latencies = try Self.pacedLatencies(producer: producer, consumer: consumer, channel: channel, rate: rate, seconds: seconds, payloadSize: payloadSize)
        latencies.sort()
        func percentile(_ p: Double) -> Double { Double(latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))]) / 1000 }
        return (percentile(0.50), percentile(0.99), percentile(0.999), latencies.count)
    }

    /// Pushes `rate` messages a second for `seconds` on `producer`, each carrying its send time,
    /// and returns how long each took to reach `consumer` (nanoseconds, in arrival order). Sends
    /// at the scheduled time, then blocks until the message comes back; OKs are drained without
    /// blocking. Sleeping, not spinning, leaves the other core to the daemons.
    static func pacedLatencies(producer: BenchSocket, consumer: BenchSocket, channel: UInt64, rate: Int, seconds: Int, payloadSize: Int) throws -> [UInt64] {
        let total = rate * seconds
        var latencies = [UInt64]()
        latencies.reserveCapacity(total)
        let interval = UInt64(1_000_000_000 / rate)
        var frame = ByteBuffer()
        var next = now()
        var consumerReady = pollfd(fd: consumer.fd, events: Int16(POLLIN), revents: 0)
        var pending: UInt64 = 0
        for i in 0..<total {
            var wake = timespec(tv_sec: Int(next / 1_000_000_000), tv_nsec: Int(next % 1_000_000_000))
            while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, nil) == EINTR {}
            next += interval
            frame.clear()
            // PUSH: opcode, request id, channel, payload = send time + padding to 64 bytes.
            frame.writeMultipleIntegers(UInt32(1 + 4 + 8 + payloadSize), Opcode.push.rawValue, UInt32(i + 10), channel, now())
            frame.writeRepeatingByte(0x6C, count: payloadSize - 8)
            producer.write(frame)
            pending += 1
            while pending > 0 {
                guard poll(&consumerReady, 1, 5000) == 1, consumer.fill() else { throw BenchFailure("no message within 5 s") }
                let arrived = now()
                while consumer.buffer.count - consumer.start >= 4 {
                    let length = Int(consumer.u32(at: consumer.start))
                    guard consumer.buffer.count - consumer.start >= 4 + length else { break }
                    let body = consumer.start + 4
                    consumer.start += 4 + length
                    if consumer.buffer[body] == Opcode.message.rawValue {
                        latencies.append(arrived - consumer.u64(at: body + 13))
                        pending -= 1
                    }
                }
            }
            if i % 64 == 0 { producer.drainWithoutBlocking() }
        }
        return latencies
    }

    /// Daemon RSS growth per idle subscription when `subscribers` subscriptions share one connection.
    func idleSubscriptionMemory(pid: pid_t, subscriptions: Int) throws -> Double {
        let producer = try BenchSocket(path: socket)
        try producer.handshake()
        _ = try producer.create("bench.cursors", size: 1000)
        let reader = try BenchSocket(path: socket)
        try reader.handshake()
        for _ in 0..<100 { _ = try reader.subscribe("bench.cursors") }
        usleep(300_000)
        let before = try rss(pid)
        for _ in 0..<subscriptions { _ = try reader.subscribe("bench.cursors") }
        usleep(500_000)
        return Double(try rss(pid) - before) / Double(subscriptions)
    }

    /// Daemon RSS growth per idle subscriber, each on a connection of its own.
    func idleSubscriberMemory(pid: pid_t, subscribers: Int) throws -> (bytesPerSubscriber: Double, before: Int, after: Int) {
        let producer = try BenchSocket(path: socket)
        try producer.handshake()
        _ = try producer.create("bench.idle", size: 1000)
        // Warm up allocator pools with a first batch, then measure a second one.
        var warm: [BenchSocket] = []
        for _ in 0..<100 {
            let s = try BenchSocket(path: socket)
            try s.handshake()
            _ = try s.subscribe("bench.idle")
            warm.append(s)
        }
        usleep(300_000)
        let before = try rss(pid)
        var idle: [BenchSocket] = []
        for _ in 0..<subscribers {
            let s = try BenchSocket(path: socket)
            try s.handshake()
            _ = try s.subscribe("bench.idle")
            idle.append(s)
        }
        usleep(500_000)
        let after = try rss(pid)
        _ = (warm, idle)
        return (Double(after - before) / Double(subscribers), before, after)
    }

    func rss(_ pid: pid_t) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
        else { throw BenchFailure("no VmRSS for \(pid)") }
        return kb * 1024
    }
}

/// An integer shared between benchmark threads.
final class AtomicCounter: Sendable {
    private let value = Atomic<Int>(0)
    func load() -> Int { value.load(ordering: .relaxed) }
    func store(_ v: Int) { value.store(v, ordering: .relaxed) }
    func add(_ v: Int) { value.add(v, ordering: .relaxed) }
}
