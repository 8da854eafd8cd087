import ArgumentParser
import Comet
import CometFederation
import FoundationEssentials
import Logging
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// `comet-bridge`: exports local channels to NATS JetStream and imports JetStream subjects as
/// local channels, as a client of the local cometd (docs/FEDERATION.md).
@main
struct BridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "comet-bridge",
        abstract: "Carry comet channels across hosts through NATS JetStream.",
        discussion: """
            Reads FILE ([nats NAME], [export NAME-OR-PREFIX*] and [import LOCAL-NAME] sections; \
            docs/FEDERATION.md) and connects to the local cometd as a client. Imports need a \
            'mirror' rule for the bridge's user in cometd's policy (or root).
            """)

    static let defaultPaths = ["/etc/comet/bridge.conf", "/etc/comet/cometd.conf"]

    @Option(name: .long, help: "Configuration file (default: /etc/comet/bridge.conf, else the [nats]/[export]/[import] sections of /etc/comet/cometd.conf).")
    var config: String?

    @Option(name: .long, help: "cometd's socket (default: COMET_SOCKET, else the system or user socket).")
    var socket: String?

    @Option(name: .long, help: "Seconds between two looks for new channels to export.")
    var scanInterval: Double = 1

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Flag(name: .long, help: "Check the configuration file and exit (0: valid, 78: a mistake, named with its line).")
    var check = false

    func run() async throws {
        // Trapped first: a SIGTERM during start-up stops the bridge cleanly too.
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        let level = logLevel
        let timestamps = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] == nil
        LoggingSystem.bootstrap { _ in
            var handler = LineLogHandler(timestamps: timestamps)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "comet-bridge")
        let federation: FederationConfiguration
        let file: String
        do {
            (federation, file) = try load()
        } catch {
            logger.critical("cannot load the configuration", metadata: ["error": "\(error)"])
            throw ExitCode(78)
        }
        if check {
            print("\(file): \(federation.servers.count) NATS servers, \(federation.exports.count) exports, \(federation.imports.count) imports")
            return
        }
        guard let socketPath = socket ?? CometClient.defaultSocketPath else {
            logger.critical("no socket path: set COMET_SOCKET or give --socket")
            throw ExitCode(78)
        }
        logger.info("starting", metadata: [
            "file": "\(file)", "nats_servers": "\(federation.servers.count)", "exports": "\(federation.exports.count)",
            "imports": "\(federation.imports.count)", "socket": "\(socketPath)",
        ])
        let bridge = Bridge(
            configuration: federation, socketPath: socketPath, scanInterval: .nanoseconds(Int64(max(0.05, scanInterval) * 1e9)),
            logger: logger)
        let work = Task { await bridge.run() }
        for await _ in signals { break }
        logger.notice("stopping")
        work.cancel()
        await bridge.stop()
    }

    /// The configuration and the file it came from.
    func load() throws -> (FederationConfiguration, String) {
        let candidates = config.map { [$0] } ?? Self.defaultPaths
        for path in candidates {
            guard let text = FederationConfiguration.read(path) else {
                if config != nil { throw ConfigurationMistake(file: path, line: 0, reason: "cannot read the file (\(String(cString: strerror(errno))))") }
                continue
            }
            return (try FederationConfiguration.parse(text, file: path), path)
        }
        throw ConfigurationMistake(file: Self.defaultPaths[0], line: 0, reason: "no configuration file (nothing to bridge)")
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
