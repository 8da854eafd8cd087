import ArgumentParser
import Comet
import CometWire

@main
struct CometCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "comet",
        abstract: "Push to and listen on cometd channels.",
        discussion: """
            Exit status: 0 success; 1 the daemon refused the request; 2 listen fell behind (channel full); \
            3 listen ended because the channel closed; 4 listen ended because the channel was re-created \
            (new epoch); 5 listen --timeout ran out before --count messages; 64 usage; 69 no daemon \
            answers; 74 connection lost; 76 protocol version mismatch.
            """,
        version: "comet \(CometProtocol.softwareVersion) (protocol \(CometProtocol.version))",
        subcommands: [Push.self, Listen.self, Channels.self, Sessions.self, Stats.self, Monitor.self])

    /// `comet -s PATH listen ...` works as `comet listen -s PATH ...`: the socket option may come
    /// before the subcommand too.
    static func main() async {
        await main(Self.socketOptionAfterSubcommand(Array(CommandLine.arguments.dropFirst())))
    }

    static func socketOptionAfterSubcommand(_ arguments: [String]) -> [String] {
        var leading: [String] = []
        var rest = arguments[...]
        while let first = rest.first, first.hasPrefix("-") {
            if first == "-s" || first == "--socket", rest.count >= 2 {
                leading += rest.prefix(2)
                rest = rest.dropFirst(2)
            } else if first.hasPrefix("--socket=") {
                leading.append(first)
                rest = rest.dropFirst()
            } else {
                break
            }
        }
        guard !leading.isEmpty, let subcommand = rest.first else { return arguments }
        return [subcommand] + leading + rest.dropFirst()
    }
}

struct ConnectionOptions: ParsableArguments {
    @Option(name: [.short, .long], help: "cometd socket (default: $COMET_SOCKET, /run/comet/comet.sock as root, else $XDG_RUNTIME_DIR/comet/comet.sock).")
    var socket: String?

    func connect(resuming: SessionCredentials? = nil, reconnect: Bool = false) async throws -> CometClient {
        try await CometClient.connect(to: socket, resuming: resuming, reconnect: reconnect ? .default : nil)
    }
}

/// Runs `body`, turning every error into the documented exit status.
func running(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch {
        throw exitStatus(for: error)
    }
}
