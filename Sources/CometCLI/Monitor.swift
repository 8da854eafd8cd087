import ArgumentParser
import Comet
import Foundation

struct Monitor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the live traffic of channels, like busctl monitor.",
        discussion: """
            Prints a line per message: channel, sequence number and the payload (escaped as listen \
            prints it), for the channels named, or every site channel this user may read when none \
            is (the ones existing when it starts). Runs until interrupted or until every channel \
            watched has ended.
            """)

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "Channels to watch (default: every site channel you may read).")
    var channels: [String] = []

    func run() async throws {
        try await running {
            let client = try await connection.connect()
            var names = channels
            if names.isEmpty {
                names = try await client.channels().filter { $0.scope == 0 }.map(\.name)
            }
            OutputWatch.exitWhenStandardOutputCloses()
            await withTaskGroup(of: Void.self) { group in
                for name in names {
                    group.addTask {
                        do {
                            let subscription = try await client.subscribe(name)
                            var messages = subscription.makeAsyncIterator()
                            while let message = try await messages.next() {
                                var line = Array("\(name)\t\(message.sequence)\t".utf8)
                                line += Escaping.escape(message.payload)
                                line.append(0x0A)
                                Monitor.write(line, flush: messages.buffered == 0)
                            }
                            Monitor.write(Array("\(name)\t-\tclosed\n".utf8), flush: true)
                        } catch let error as CometError where error.code == .permissionDenied || error.code == .noSuchChannel {
                            printError("comet: \(name): \(error.message)")
                        } catch {
                            Monitor.write(Array("\(name)\t-\t\(error)\n".utf8), flush: true)
                        }
                    }
                }
            }
            await client.close()
        }
    }

    private static let lock = NSLock()

    /// One whole line at a time from any of the watching tasks.
    static func write(_ line: [UInt8], flush: Bool) {
        lock.lock()
        defer { lock.unlock() }
        line.withUnsafeBytes { _ = fwrite($0.baseAddress, 1, $0.count, output) }
        if flush { fflush(output) }
    }
}
