import CometWire
import Foundation
import Glibc
import NIOCore

/// What readers that do not keep up cost the others: a producer's rate and its longest wait for
/// one push with subscriptions of another user that never read; ten fast readers beside one
/// stalled reader, of another user and of the producer's own (docs/SEMANTICS.md, "When a reader
/// gets FULL").
struct IsolationBench {
    let socket: String
    /// The uid the hostile readers run as (through setpriv).
    static let hostileUID = 4242

    /// A producer (root) pushing `total` single PUSHes, up to `window` unanswered, to a channel
    /// with the default ring, read by one fast reader of its own. Returns its rate and its
    /// longest wait for an answer.
    func producer(total: Int, name: String, window: Int = 64) throws -> (rate: Double, worstWaitMilliseconds: Double) {
        let producer = try BenchSocket(path: socket)
        try producer.handshake()
        let channel = try producer.create(name, size: 0)
        let reader = try BenchSocket(path: socket)
        try reader.handshake()
        _ = try reader.subscribe(name)
        let consumed = AtomicCounter()
        let readerOK = AtomicCounter()
        let done = DispatchSemaphore(value: 0)
        Thread {
            readerOK.store(Scenarios.consume(reader, total: total, progress: consumed) ? 1 : 0)
            done.signal()
        }.start()
        let sentAt = Timestamps(count: total + 3)
        let answered = AtomicCounter()
        let worst = AtomicCounter()
        let okReader = Thread {
            var count = 0
            var longest: UInt64 = 0
            while count < total, let (op, body) = producer.nextFrame() {
                guard op == Opcode.ok.rawValue else { continue }
                let id = Int(producer.u32(at: body.lowerBound + 1))
                if id >= 3, id < sentAt.count { longest = max(longest, now() - sentAt[id]) }
                count += 1
                answered.store(count)
            }
            worst.store(Int(longest))
            done.signal()
        }
        let payload = ByteBuffer(repeating: 0x61, count: 64)
        let start = now()
        okReader.start()
        for i in 0..<total {
            while i - answered.load() >= window { sched_yield() }
            // Request ids: HELLO 1, CREATE 2, then the pushes from 3 on.
            sentAt[i + 3] = now()
            producer.send(.push(channel: channel, payload: payload))
        }
        done.wait()
        done.wait()
        let seconds = Double(now() - start) / 1e9
        guard readerOK.load() == 1 else { throw BenchFailure("isolation: the producer's own reader saw a gap or FULL") }
        return (Double(total) / seconds, Double(worst.load()) / 1e6)
    }

    /// `readers` fast readers of a channel fed in batches by a root producer, beside one reader
    /// that subscribes and never reads (`stalled`: nil none, or the uid it runs as). Returns the
    /// delivered rate over the fast readers.
    func fastBesideStalled(total: Int, readers: Int, stalled: Int?, name: String, cometBench: String) throws -> Double {
        let producer = try BenchSocket(path: socket)
        try producer.handshake()
        let channel = try producer.create(name, size: 0)
        var hostile: Process?
        if let uid = stalled {
            if uid == 0 {
                let stall = try BenchSocket(path: socket, receiveBuffer: 4096)
                try stall.handshake()
                _ = try stall.subscribe(name)
                Self.keep.append(stall)
            } else {
                hostile = try Self.stallReaders(cometBench: cometBench, socket: socket, name: name, alive: 1, everyMilliseconds: 0, seconds: 60, uid: uid)
                sleep(1)
            }
        }
        defer {
            hostile?.terminate()
            hostile?.waitUntilExit()
            Self.keep.removeAll()
        }
        var sockets: [BenchSocket] = []
        for _ in 0..<readers {
            let s = try BenchSocket(path: socket)
            try s.handshake()
            _ = try s.subscribe(name)
            sockets.append(s)
        }
        let slowest = AtomicCounter()
        let failures = AtomicCounter()
        let group = DispatchGroup()
        let start = now()
        for t in 0..<2 {
            let mine = stride(from: t, to: readers, by: 2).map { sockets[$0] }
            group.enter()
            Thread {
                if !Scenarios.consumeMany(mine, total: total, slowest: t == 0 ? slowest : nil) { failures.add(1) }
                group.leave()
            }.start()
        }
        Scenarios(socket: socket).produce(channel: channel, producer: producer, total: total, batch: 64, consumed: slowest, lead: 100_000)
        group.wait()
        guard failures.load() == 0 else { throw BenchFailure("isolation: a fast reader saw a gap or FULL") }
        return Double(total * readers) / (Double(now() - start) / 1e9)
    }

    /// Stalled readers made in this process (root), kept open for a run.
    nonisolated(unsafe) static var keep: [BenchSocket] = []

    /// Starts this program as `uid` (setpriv) opening subscriptions to `name` that never read:
    /// `alive` at a time, a fresh one every `everyMilliseconds` (0: never renewed).
    static func stallReaders(
        cometBench: String, socket: String, name: String, alive: Int, everyMilliseconds: Int, seconds: Int, uid: Int
    ) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = [
            "--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", cometBench, "--socket", socket, "--stall-readers", name,
            "--stall-alive", "\(alive)", "--stall-every", "\(everyMilliseconds)", "--stall-seconds", "\(seconds)",
        ]
        try process.run()
        return process
    }

    /// The hostile side (run as another user): subscriptions with a small receive buffer that
    /// never read, `alive` at a time, renewed every `everyMilliseconds`, for `seconds`.
    static func runStallingReaders(socket: String, name: String, alive: Int, everyMilliseconds: Int, seconds: Int) throws {
        var open: [BenchSocket] = []
        let end = now() + UInt64(seconds) * 1_000_000_000
        repeat {
            let s = try BenchSocket(path: socket, receiveBuffer: 4096)
            try s.handshake()
            // Waiting for the channel if it is not there yet.
            _ = try s.ok(s.send(.subscribe(name: name, position: .next, epoch: 0, wait: true)))
            open.append(s)
            if open.count > alive { open.removeFirst() }
            if everyMilliseconds == 0 {
                while now() < end { usleep(100_000) }
            } else {
                usleep(UInt32(everyMilliseconds * 1000))
            }
        } while now() < end
    }
}

/// Send times by request id, written by the sending thread before a request leaves and read by
/// the answering thread after its answer came (the socket orders the two).
final class Timestamps: @unchecked Sendable {
    private let times: UnsafeMutableBufferPointer<UInt64>

    init(count: Int) {
        times = .allocate(capacity: count)
        times.initialize(repeating: 0)
    }

    deinit { times.deallocate() }

    var count: Int { times.count }

    subscript(index: Int) -> UInt64 {
        get { times[index] }
        set { times[index] = newValue }
    }
}
