import ArgumentParser
import Comet
import Foundation

struct Push: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a channel and push messages into it.",
        discussion: """
            Messages come from the arguments, else one per line from standard input (pushed as they \
            arrive). The channel lives as long as this command: it closes when the command ends, and \
            its readers then get what is buffered followed by `closed`.
            """)

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "Channel name.")
    var channel: String

    @Argument(help: "Messages; if none, read lines from standard input.")
    var messages: [String] = []

    @Option(name: .long, help: "Ring size of the channel, in messages (default 1000).")
    var size: Int?

    @Option(name: .long, help: "Create a private channel for this session id (hex, as `comet listen --private` prints it).")
    var session: String?

    @Flag(name: .long, help: "With --session: create an unlimited channel that answers each pull of its reader with the output of --command (or, without it, the next line of standard input).")
    var unlimited = false

    @Option(name: .long, help: "With --unlimited: a shell command run at each pull; its standard output (less a final newline) is the message.")
    var command: String?

    @Flag(name: .long, help: "Create a newest channel: only the latest message is kept and readers skip to it.")
    var newest = false

    @Option(name: .long, help: "Seconds to keep the channel open after the last message.")
    var linger: Double = 0

    @Flag(name: .long, help: "Print the sequence number each message got.")
    var showSeq = false

    @Flag(inversion: .prefixedNo, help: "When the connection to cometd is lost (a crash of the daemon), connect again, take the channel back and push what did not land, each message once, for up to a minute (docs/RESTARTS.md).")
    var reconnect = true

    func run() async throws {
        try await running {
            let client = try await connection.connect(reconnect: reconnect && !unlimited)
            let producer: ChannelProducer
            if unlimited {
                guard let session, let id = UInt64(session, radix: 16) else {
                    throw ValidationError("--unlimited needs --session ID: unlimited channels are private")
                }
                let done = AsyncStream<Void>.makeStream()
                let source = PulledMessages(command: command, finished: done.continuation)
                let producer = try await client.createUnlimited(channel, for: id, from: source)
                // Serve pulls until the source ends or the channel ends (its session ended).
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { for await _ in done.stream { break } }
                    group.addTask {
                        for await event in client.events {
                            if case .ended(producer.id, _, _) = event { break }
                        }
                    }
                    await group.next()
                    group.cancelAll()
                }
                await client.close()
                return
            }
            if let session {
                guard let id = UInt64(session, radix: 16) else { throw ValidationError("--session takes a hex session id") }
                producer = try await client.createPrivate(channel, for: id, size: size)
            } else if newest {
                producer = try await client.createNewest(channel)
            } else {
                producer = try await client.create(channel, size: size)
            }
            // With automatic reconnection, pushes without an answer are sent again once the
            // daemon is back, with their producer numbers: each line lands once, in order.
            let sender = producer
            if messages.isEmpty, showSeq {
                while let line = StandardInput.shared.nextLine() { print(try await sender.push(line)) }
            } else if messages.isEmpty {
                // As fast as the library goes: lines are published (coalesced, pipelined), then
                // flushed; a refusal ends the command with its error.
                while let line = StandardInput.shared.nextLine() { await sender.publish(line) }
                try await sender.flush()
            } else if showSeq {
                for message in messages { print(try await sender.push(Array(message.utf8))) }
            } else {
                for message in messages { await sender.publish(Array(message.utf8)) }
                try await sender.flush()
            }
            if linger > 0 { try await Task.sleep(for: .seconds(linger)) }
            try await producer.close()
            await client.close()
        }
    }
}

/// Lines of standard input as bytes (whatever their encoding), without their newline. Reads
/// block the calling thread: the CLI reads stdin from one task at a time.
final class StandardInput: @unchecked Sendable {
    static let shared = StandardInput()
    private var buffer: [UInt8] = []
    private var start = 0
    private var atEnd = false

    func nextLine() -> [UInt8]? {
        while true {
            if let newline = buffer[start...].firstIndex(of: 0x0A) {
                defer { start = newline + 1 }
                return Array(buffer[start..<newline])
            }
            if atEnd {
                guard start < buffer.count else { return nil }
                defer { start = buffer.count }
                return Array(buffer[start...])
            }
            buffer.removeFirst(start)
            start = 0
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
            if n <= 0 { atEnd = true } else { buffer += chunk[0..<n] }
        }
    }
}

/// What an unlimited channel answers its pulls with: the output of a command run at each pull,
/// or the next line of standard input. Nothing is read before a pull asks for it.
struct PulledMessages: AsyncSequence, Sendable {
    typealias Element = [UInt8]
    let command: String?
    let finished: AsyncStream<Void>.Continuation

    struct AsyncIterator: AsyncIteratorProtocol {
        let command: String?
        let finished: AsyncStream<Void>.Continuation

        mutating func next() async throws -> [UInt8]? {
            let result = command.map(Self.run) ?? StandardInput.shared.nextLine()
            if result == nil { finished.yield(()) }
            return result
        }

        static func run(_ command: String) -> [UInt8]? {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", command]
            let out = Pipe()
            process.standardOutput = out
            guard (try? process.run()) != nil else { return nil }
            var data = Array(out.fileHandleForReading.readDataToEndOfFile())
            process.waitUntilExit()
            if data.last == 0x0A { data.removeLast() }
            return data
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(command: command, finished: finished) }
}
