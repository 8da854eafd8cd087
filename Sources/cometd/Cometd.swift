import ArgumentParser
import CometServer
import Logging
import NIOPosix
import ServiceLifecycle

/// `cometd`: the comet daemon.
@main
struct Cometd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cometd",
        abstract: "Serve comet channels to local processes over a Unix socket.",
        discussion: """
            Under systemd socket activation cometd serves the sockets it is passed. Standalone it binds \
            --socket, else $COMET_SOCKET, else /run/comet/comet.sock (root) or \
            $XDG_RUNTIME_DIR/comet/comet.sock. SIGTERM or SIGINT stop it gracefully.
            """)

    @Option(name: .long, help: "Socket path to bind when not socket-activated.")
    var socket: String?

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(name: .long, help: "Largest frame body accepted, in bytes.")
    var maxFrameSize: UInt32 = 1 << 20

    @Option(name: .long, help: "Seconds a session outlives its last connection (resume window).")
    var sessionGrace: Double = 30

    func validate() throws {
        guard sessionGrace >= 0 else { throw ValidationError("--session-grace must not be negative") }
        guard maxFrameSize >= 4096 else { throw ValidationError("--max-frame-size must be at least 4096") }
    }

    func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = JournalLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "cometd")

        let inherited = SocketActivation.listeningSockets(logger: logger)
        let listen: CometService.Listen
        if inherited.isEmpty {
            listen = .path(try SocketPath.resolve(option: socket))
        } else {
            listen = .inherited(inherited)
        }

        var configuration = ServerConfiguration()
        configuration.maxFrameSize = maxFrameSize
        configuration.sessionGrace = .nanoseconds(Int64(sessionGrace * 1e9))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = CometServer(configuration: configuration, eventLoop: group.next(), logger: logger)
        let service = CometService(server: server, listen: listen, notifier: SystemdNotifier(), logger: logger)
        let serviceGroup = ServiceGroup(
            configuration: .init(
                services: [.init(service: service)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await serviceGroup.run()
        } catch {
            logger.error("cometd failed", metadata: ["error": "\(error)"])
            try? await group.shutdownGracefully()
            throw ExitCode(1)
        }
        try await group.shutdownGracefully()
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
