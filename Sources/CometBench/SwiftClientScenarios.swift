import Comet
import CometWire
import Foundation
import Glibc

/// Scenarios through the Swift client library `Comet` (README "Speed"), next to the raw-codec ones.
extension Scenarios {
    /// Runs an async body to completion from the synchronous benchmark.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        try runBlocking(body)
    }
}

/// Runs an async body to completion from synchronous code (the benchmark's scenarios).
func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = LockedResult<T>()
    let done = DispatchSemaphore(value: 0)
    Task {
        do { box.set(.success(try await body())) } catch { box.set(.failure(error)) }
        done.signal()
    }
    done.wait()
    return try box.get()!.get()
}

/// Runs an async body on the main actor to completion, the main thread serving the main queue
/// meanwhile (as an application's run loop does): how `Task {}` in top-level code or a
/// `@MainActor` type runs.
func runOnMainActor<T: Sendable>(_ body: @escaping @MainActor @Sendable () async throws -> T) throws -> T {
    precondition(Thread.isMainThread, "the main actor's scenarios run from the main thread")
    let box = LockedResult<T>()
    Task { @MainActor in
        do { box.set(.success(try await body())) } catch { box.set(.failure(error)) }
    }
    while true {
        if let result = box.get() { return try result.get() }
        _ = RunLoop.main.run(mode: .default, before: Date(timeIntervalSinceNow: 0.01))
    }
}

extension Scenarios {
    /// A `for try await` reader (Swift) of `total` messages pushed in batches by the raw-codec
    /// producer, at the default ring: messages per second, and whether it got them all in order.
    /// `onMainActor`: the loop runs on the main actor (else in a task of the global executor);
    /// `mapped`: it reads the ring mapped (the default) or from the socket.
    func swiftReader(total: Int, onMainActor: Bool = false, mapped: Bool = true) throws -> (rate: Double, complete: Bool) {
        let socket = self.socket
        let producer = try BenchSocket(path: socket)
        try producer.handshake()
        let channel = try producer.create("bench.swift.read", size: 0)
        let start = { @Sendable in
            Thread {
                self.produce(channel: channel, producer: producer, total: total, batch: 256, consumed: AtomicCounter(), lead: Int.max)
            }.start()
        }
        if onMainActor {
            return try runOnMainActor { try await Self.read(socket: socket, total: total, mapped: mapped, start: start) }
        }
        return try blocking { try await Self.read(socket: socket, total: total, mapped: mapped, start: start) }
    }

    /// The reader's loop, in the caller's isolation (the main actor's, or none).
    static func read(
        socket: String, total: Int, mapped: Bool, start: @Sendable () -> Void, isolation: isolated (any Actor)? = #isolation
    ) async throws -> (rate: Double, complete: Bool) {
        let client = try await CometClient.connect(to: socket)
        let subscription = try await client.subscribe("bench.swift.read", mapped: mapped)
        let began = DispatchTime.now().uptimeNanoseconds
        start()
        var expected: UInt64 = 1
        var complete = true
        do {
            for try await message in subscription {
                if message.sequence != expected { complete = false }
                expected += 1
                if expected > UInt64(total) { break }
            }
        } catch {
            complete = false
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - began) / 1e9
        await client.close()
        return (Double(expected - 1) / seconds, complete && expected == UInt64(total) + 1)
    }

    /// `readers` Swift clients, each a `for try await` reader in a task of its own, read the same
    /// `total` messages pushed by the raw-codec producer into a ring that keeps them all:
    /// delivered messages per second, and whether every reader got every message in order.
    func swiftFanOut(total: Int, readers: Int, mapped: Bool) throws -> (rate: Double, complete: Bool) {
        let socket = self.socket
        let producer = try BenchSocket(path: socket)
        try producer.handshake()
        let channel = try producer.create("bench.swift.fanout", size: 1_000_000)
        let start = { @Sendable in
            Thread {
                self.produce(channel: channel, producer: producer, total: total, batch: 256, consumed: AtomicCounter(), lead: Int.max)
            }.start()
        }
        return try blocking {
            var clients: [CometClient] = []
            var subscriptions: [CometSubscription] = []
            for _ in 0..<readers {
                let client = try await CometClient.connect(to: socket)
                clients.append(client)
                subscriptions.append(try await client.subscribe("bench.swift.fanout", mapped: mapped))
            }
            let began = DispatchTime.now().uptimeNanoseconds
            start()
            let complete = try await withThrowingTaskGroup(of: Bool.self) { group in
                for subscription in subscriptions {
                    group.addTask {
                        var expected: UInt64 = 1
                        for try await message in subscription {
                            guard message.sequence == expected else { return false }
                            expected += 1
                            if expected > UInt64(total) { break }
                        }
                        return expected == UInt64(total) + 1
                    }
                }
                var all = true
                for try await done in group { all = all && done }
                return all
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - began) / 1e9
            for client in clients { await client.close() }
            return (Double(total * readers) / seconds, complete)
        }
    }

    /// A Swift producer pushing `total` messages, timed until every one is in (a raw-codec reader
    /// drains them): `push(contentsOf:)` when `contentsOf`, else `publish` then `flush`.
    func swiftProducer(total: Int, contentsOf: Bool) throws -> Double {
        let socket = self.socket
        let payload = [UInt8](repeating: 0x6D, count: payloadSize)
        let name = contentsOf ? "bench.swift.contents" : "bench.swift.publish"
        return try blocking {
            let client = try await CometClient.connect(to: socket)
            let producer = try await client.create(name)
            let reader = try BenchSocket(path: socket)
            try reader.handshake()
            _ = try reader.subscribe(name)
            let drained = Thread { _ = Scenarios.consume(reader, total: total, progress: nil) }
            drained.start()
            let start = DispatchTime.now().uptimeNanoseconds
            if contentsOf {
                try await producer.push(contentsOf: Repeated(element: payload, count: total))
            } else {
                for _ in 0..<total { await producer.publish(payload) }
                try await producer.flush()
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            await client.close()
            return Double(total) / seconds
        }
    }

    /// Awaited round trips: `count` single `push`es, each awaited before the next (an app's
    /// "send and wait for the answer"), from the main actor or a task of the global executor.
    /// `onConnection`: the loop runs in a task that prefers the connection's executor.
    func swiftAwaitedPushes(count: Int, onMainActor: Bool, onConnection: Bool = false) throws -> Double {
        let socket = self.socket
        if onMainActor { return try runOnMainActor { try await Self.awaitedPushes(socket: socket, count: count) } }
        return try blocking { try await Self.awaitedPushes(socket: socket, count: count, onConnection: onConnection) }
    }

    static func awaitedPushes(
        socket: String, count: Int, onConnection: Bool = false, isolation: isolated (any Actor)? = #isolation
    ) async throws -> Double {
        let client = try await CometClient.connect(to: socket)
        let producer = try await client.create("bench.swift.awaited", size: 1000)
        let payload = [UInt8](repeating: 0x6D, count: 64)
        let push = { @Sendable () async throws -> Double in
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<count { _ = try await producer.push(payload) }
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        let seconds = onConnection ? try await Task(executorPreference: client.executor) { try await push() }.value : try await push()
        await client.close()
        return Double(count) / seconds
    }
}

/// A result handed from a task to the thread that waits or polls for it.
final class LockedResult<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<T, Error>?
    func set(_ value: Result<T, Error>) { lock.withLock { result = value } }
    func get() -> Result<T, Error>? { lock.withLock { result } }
}

/// `count` times the same element, as an async sequence.
struct Repeated<Element: Sendable>: AsyncSequence, Sendable {
    let element: Element
    let count: Int

    struct AsyncIterator: AsyncIteratorProtocol {
        let element: Element
        var left: Int
        mutating func next() async -> Element? {
            guard left > 0 else { return nil }
            left -= 1
            return element
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(element: element, left: count) }
}
