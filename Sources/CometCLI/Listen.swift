import ArgumentParser
import Comet
import CometWire
import Foundation

struct Listen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the messages of a channel, one per line.",
        discussion: """
            Text is printed with backslash, newline and other control bytes escaped (\\\\, \\n, \\xNN) so that \
            each message is one line; --raw prints the bytes as they are. Ends with status 3 when the \
            channel closes and 2 when this reader falls behind the ring.
            """)

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "Channel name.")
    var channel: String

    @Option(name: .long, parsing: .unconditional, help: "Where to start: next, oldest, SEQ (resume at that sequence number) or -K (the K most recent).")
    var from: StartOption = StartOption(position: .next)

    @Option(name: .long, help: "When resuming with --from SEQ, the epoch last seen (decimal, as `comet channels` prints it; 0x… hex is read too); a re-created channel is then refused.")
    var epoch: EpochOption?

    @Flag(name: .long, help: "If the channel does not exist yet, wait for it to be created.")
    var wait = false

    @Flag(name: .long, help: "Print each payload's bytes unchanged, followed by a newline.")
    var raw = false

    @Flag(name: .long, help: "Prefix each line with the message's sequence number and a tab.")
    var showSeq = false

    @Flag(name: .long, help: "Read the private channel of that name addressed to this session; prints `session ID` on stderr and waits for a producer to create it.")
    var `private` = false

    @Option(name: .long, help: "With --private: keep the session in this file (ID:TOKEN, mode 0600) and resume it on the next run.")
    var sessionFile: String?

    @Option(name: .long, help: "Read CHANNEL of the cometd at this address (unix:/PATH or /PATH), relayed by the local daemon. (Channels of other hosts come through NATS as imports comet-bridge declares: read them by their local name.)")
    var external: String?

    @Option(name: .long, help: "With --external: how many of the most recent messages to start with.")
    var history: Int = 1

    @Flag(name: .long, help: "With --external: a latest-value channel.")
    var newest = false

    @Option(name: .long, help: "Only read the channel if this user (name or uid) created it; any other producer is refused (exit 1), also one that creates the channel while --wait waits. By default a name user.NAME.… is read only from user NAME; 'any' turns that off.")
    var owner: OwnerOption?

    @Option(name: .long, help: "Exit with status 0 after this many messages.")
    var count: Int?

    @Option(name: .long, help: "Stop after this many seconds: status 0, or 5 when --count messages did not come in time.")
    var timeout: Double?

    @Flag(inversion: .prefixedNo, help: "Read the channel's ring from shared memory when cometd offers it (a site or newest channel; docs/PROTOCOL.md, mapped readers): the same messages and endings; --no-mapped reads every message from the socket.")
    var mapped = true

    @Flag(inversion: .prefixedNo, help: "When the connection to cometd is lost (a crash of the daemon), connect again and go on from the last message, for up to a minute (docs/RESTARTS.md).")
    var reconnect = true

    func run() async throws {
        try await running {
            let file = sessionFile.map(SessionFile.init)
            let client = try await connection.connect(resuming: file?.load(), reconnect: reconnect)
            let subscription: CometSubscription
            if let external {
                subscription = try await client.subscribeExternal(address: external, channel: channel, history: history, newest: newest)
            } else if self.private {
                try file?.save(client.session)
                printError("session \(String(client.session.id, radix: 16))")
                subscription = try await privateSubscription(client)
            } else {
                subscription = try await client.subscribe(
                    channel, from: from.position, epoch: epoch?.value, wait: wait, owner: owner?.pin ?? .implied, mapped: mapped)
            }
            // An import (fed by comet-bridge) may stall or be rebuilt after a restart: then the
            // reader waits and goes on from its last message instead of ending.
            let imported = external == nil && !self.private
                ? (try? await client.channels())?.first { $0.name == channel && $0.imported && $0.scope == 0 } : nil
            let isImport = imported != nil
            // A latest-value import skips values by nature: a jump is not a loss there.
            let gapsAreLoss = imported?.kind != .newest
            var received = 0
            if count == 0 { return }
            OutputWatch.exitWhenStandardOutputCloses()
            // --timeout: closing the connection ends the iteration below.
            let expired = Expiry()
            let timer = timeout.map { seconds in
                Task {
                    try await Task.sleep(for: .seconds(seconds))
                    expired.fire()
                    await client.close()
                }
            }
            defer { timer?.cancel() }
            var current = subscription
            var messages = current.makeAsyncIterator()
            // The last message printed, and the epoch it belongs to (resuming an import).
            var last: UInt64 = 0
            var lastEpoch: UInt64 = 0
            var told = false
            reading: while true {
                do {
                    while let message = try await messages.next() {
                        if isImport {
                            let epochNow = current.info.epoch
                            if lastEpoch != 0, epochNow != lastEpoch { throw EpochChanged(channel: channel, epoch: epochNow) }
                            // A resumed import restarts at what it holds: what was printed is skipped,
                            // a hole is FULL, never silent.
                            if last != 0, message.sequence <= last { continue }
                            if gapsAreLoss, last != 0, message.sequence > last + 1 {
                                throw ChannelFull(channel: channel, firstAvailable: message.sequence)
                            }
                            lastEpoch = epochNow
                            if told { printError("comet: the import '\(channel)' is fed again; going on after \(last)") }
                            told = false
                        }
                        last = message.sequence
                        var line: [UInt8] = []
                        if showSeq { line += Array("\(message.sequence)\t".utf8) }
                        line += raw ? message.payload : Escaping.escape(message.payload)
                        line.append(0x0A)
                        line.withUnsafeBytes { _ = fwrite($0.baseAddress, 1, $0.count, output) }
                        // One write per chunk that arrived, not per message.
                        if messages.buffered == 0 { fflush(output) }
                        if ferror(output) != 0 {
                            // The reader of our output went away (`| head -1`): stop quietly.
                            await client.close()
                            return
                        }
                        received += 1
                        if let count, received >= count {
                            current.acknowledge(through: message.sequence)
                            try await client.ping()
                            break reading
                        }
                    }
                    break reading
                } catch where expired.fired {
                    fflush(output)
                    if count != nil { throw Status.timedOut }
                    return
                } catch let error as CometError where isImport && Self.importPauses(error.code) {
                    // Stalled, or not there yet after a restart of cometd or its bridge: wait and
                    // subscribe again after the last message printed.
                    if !told { printError("comet: \(error.message) [\(error.code.name)]; waiting for it") }
                    told = true
                    let position: SubscribePosition = last == 0 ? from.position : .from(last + 1)
                    let epochToKeep = lastEpoch != 0 ? lastEpoch : epoch?.value
                    while true {
                        do {
                            try await Task.sleep(for: .seconds(1))
                            current = try await client.subscribe(
                                channel, from: position, epoch: epochToKeep, wait: true, owner: owner?.pin ?? .implied, mapped: mapped)
                            messages = current.makeAsyncIterator()
                            break
                        } catch let again as CometError where Self.importPauses(again.code) {
                            continue
                        } catch where expired.fired {
                            fflush(output)
                            if count != nil { throw Status.timedOut }
                            return
                        }
                    }
                }
            }
            await client.close()
            // The loop ended without --count: the channel closed (status 3).
            if let closedAfter = current.info.closedAfter, count.map({ received < $0 }) ?? true {
                throw ChannelClosed(channel: channel, lastSequence: closedAfter)
            }
        }
    }
}

extension Listen {
    /// Errors after which a reader of an import waits and subscribes again: the import is
    /// stalled, or missing while cometd or its bridge restarts.
    static func importPauses(_ code: ErrorCode) -> Bool {
        code == .upstreamUnreachable || code == .noSuchChannel || code == .shuttingDown
    }

    /// Subscribes to the private channel as soon as it is offered (it may exist already).
    func privateSubscription(_ client: CometClient) async throws -> CometSubscription {
        do {
            return try await client.subscribePrivate(channel, owner: owner?.uid)
        } catch let error as CometError where error.code == .noSuchChannel {
            for await event in client.events {
                if case .offer(_, channel, _, _, _) = event { return try await client.subscribePrivate(channel, owner: owner?.uid) }
            }
            throw ConnectionError(.lost, "the connection to cometd closed")
        }
    }
}

/// `--from` values: `next`, `oldest`, `SEQ`, `-K`.
struct StartOption: ExpressibleByArgument, CustomStringConvertible {
    var position: SubscribePosition

    var description: String {
        switch position {
        case .next: return "next"
        case .oldest: return "oldest"
        case .from(let n): return "\(n)"
        case .last(let k): return "-\(k)"
        }
    }

    var defaultValueDescription: String { description }

    init(position: SubscribePosition) { self.position = position }

    init?(argument: String) {
        switch argument {
        case "next": position = .next
        case "oldest": position = .oldest
        default:
            if argument.hasPrefix("-"), let k = UInt64(argument.dropFirst()) {
                position = .last(k)
            } else if let n = UInt64(argument), n >= 1 {
                position = .from(n)
            } else {
                return nil
            }
        }
    }
}

/// One message, one line: escapes `\`, control bytes and DEL; leaves other bytes (UTF-8) as they are.
enum Escaping {
    static func escape(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        for b in bytes {
            switch b {
            case UInt8(ascii: "\\"): out += [0x5C, 0x5C]
            case 0x0A: out += Array("\\n".utf8)
            case 0x09: out += Array("\\t".utf8)
            case 0x0D: out += Array("\\r".utf8)
            case 0..<0x20, 0x7F:
                let hex = Array("0123456789abcdef".utf8)
                out += [0x5C, UInt8(ascii: "x"), hex[Int(b >> 4)], hex[Int(b & 0xF)]]
            default: out.append(b)
            }
        }
        return out
    }
}

/// Whether `listen --timeout` ran out (set from the timer task, read by the loop).
final class Expiry: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var fired: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func fire() { lock.lock(); value = true; lock.unlock() }
}

/// `comet listen ch | head -1`: when the reader of our standard output goes away, exit quietly
/// at once, not at the next message (SIGPIPE is ignored in this process).
enum OutputWatch {
    static func exitWhenStandardOutputCloses() {
        var info = stat()
        guard fstat(1, &info) == 0, (info.st_mode & S_IFMT) == S_IFIFO || (info.st_mode & S_IFMT) == S_IFSOCK else { return }
        let watcher = Thread {
            // No events asked: poll(2) reports only POLLERR/POLLHUP, i.e. the reading end closed.
            var fd = pollfd(fd: 1, events: 0, revents: 0)
            while poll(&fd, 1, -1) < 0, errno == EINTR {}
            if fd.revents & Int16(POLLERR | POLLHUP) != 0 { exit(0) }
        }
        watcher.start()
    }
}

/// Standard output as a stdio stream of this file's own (the C global `stdout` is shared mutable
/// state to Swift 6); listen writes nothing else there.
nonisolated(unsafe) let output: UnsafeMutablePointer<FILE> = fdopen(1, "w")

/// `--epoch`: decimal, as every command prints epochs; `0x…` hex is read too.
struct EpochOption: ExpressibleByArgument {
    var value: UInt64

    init?(argument: String) {
        if argument.hasPrefix("0x"), let hex = UInt64(argument.dropFirst(2), radix: 16) {
            value = hex
        } else if let decimal = UInt64(argument) {
            value = decimal
        } else {
            return nil
        }
    }
}
