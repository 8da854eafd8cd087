import ArgumentParser
import CometChannels
import CometServer
import CometState
import CometWire
import Logging
import NIOCore
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
            """,
        version: "cometd \(CometProtocol.softwareVersion) (protocol \(CometProtocol.version))")

    @Option(name: .long, help: "Socket path to bind when not socket-activated.")
    var socket: String?

    @Option(name: .long, help: "Least important log records written.")
    var logLevel: Logger.Level = .info

    @Option(name: .long, help: "Largest frame body accepted, in bytes.")
    var maxFrameSize: UInt32 = 1 << 20

    @Option(name: .long, help: "Seconds a session outlives its last connection (resume window).")
    var sessionGrace: Double = 30

    @Option(name: .long, help: "Policy file or directory of *.conf files (default: /etc/comet/policy.conf and /etc/comet/policy.d/, if present). Reloaded on SIGHUP.")
    var policy: String?

    @Option(name: .long, help: "Older configuration file (default /etc/comet/cometd.conf): its NATS sections are comet-bridge's since 0.7 (docs/FEDERATION.md); cometd only reports them.")
    var config: String?

    @Option(name: .long, help: "Memory ceiling (e.g. 512M, 2G): past it new work is refused. Default: 3/4 of the unit's MemoryMax, else 1/4 of the machine's memory.")
    var maxMemory: String?

    @Option(name: .long, help: "Per-user quota, RESOURCE=N (repeatable): \(QuotaOption.names). Default: a quarter of the daemon-wide limit.")
    var userQuota: [QuotaOption] = []

    @Option(name: .long, help: "Daemon-wide limit, RESOURCE=N (repeatable); per-user quotas default to a quarter of it.")
    var limit: [QuotaOption] = []

    @Option(name: .long, help: "Seconds a new connection has to complete HELLO.")
    var handshakeTimeout: Double = 5

    @Option(name: .long, help: "Seconds after which a connection that holds nothing and sends nothing is closed.")
    var idleTimeout: Double = 300

    @Option(name: .long, help: "Seconds readers get on shutdown to receive what is buffered.")
    var shutdownDrain: Double = 5

    @Option(name: .long, help: "Bytes (at least 512K) a reader's connection may have queued when it is handed messages a push is about to evict; a reader whose queue is full then gets FULL.")
    var readerQueue: String = "1M"

    @Option(name: .long, help: "Seconds a producer's push waits for a reader whose queue is full before that reader loses messages (FULL).")
    var readerGrace: Double = 1

    @Option(name: .long, help: "Seconds an import (fed by comet-bridge) may go without its bridge before its readers are told it is stalled.")
    var importGrace: Double = 10

    @Option(name: .long, help: "systemd's file-descriptor store: auto (when a service manager is there), on or off. Keeps connections across a restart (docs/RESTARTS.md).")
    var fdStore: String = "auto"

    @Flag(name: .long, help: .hidden)
    var handoverProbe = false

    /// Crash tests: kill the process at an exact point of a push (`CrashPoint`).
    @Option(name: .long, help: .hidden)
    var crashAt: String?

    func validate() throws {
        guard sessionGrace >= 0 else { throw ValidationError("--session-grace must not be negative") }
        guard maxFrameSize >= 4096 else { throw ValidationError("--max-frame-size must be at least 4096") }
        guard handshakeTimeout > 0, idleTimeout > 0, shutdownDrain >= 0 else {
            throw ValidationError("--handshake-timeout and --idle-timeout must be positive, --shutdown-drain not negative")
        }
        guard ["auto", "on", "off"].contains(fdStore) else { throw ValidationError("--fd-store is auto, on or off") }
        guard readerGrace >= 0 else { throw ValidationError("--reader-grace must not be negative") }
        guard importGrace >= 0 else { throw ValidationError("--import-grace must not be negative") }
        if let crashAt, CrashPoint(crashAt) == nil { throw ValidationError("--crash-at is stored:N or applied:N") }
        // Above twice the socket's high watermark (256 KiB), so that a reader at its bound is
        // unwritable and its draining is noticed.
        guard (ByteSize(readerQueue)?.bytes ?? 0) >= 512 * 1024 else {
            throw ValidationError("--reader-queue: '\(readerQueue)' is not a size of at least 512K")
        }
        if let maxMemory, ByteSize(maxMemory) == nil { throw ValidationError("--max-memory: '\(maxMemory)' is not a size like 512M or 2G") }
    }

    func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = JournalLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "cometd")

        // A live upgrade: the previous process's state and sockets (docs/RESTARTS.md).
        let carried: DaemonImage?
        do {
            carried = handoverProbe ? nil : try LiveUpgrade.takeImage()
        } catch {
            logger.critical("cannot read the state handed over by the previous process", metadata: ["error": "\(error)"])
            throw ExitCode(70)
        }
        let store = FileDescriptorStore(mode: fdStore)
        let listen: CometService.Listen
        var recovered: StateStore.Recovered?
        if let carried {
            listen = .carried(Handed(carried), ownedPath: LiveUpgrade.takeOwnedSocketPath())
        } else if handoverProbe {
            listen = .inherited([])
        } else {
            let inherited = SocketActivation.inherited(logger: logger)
            let ownPath = inherited.listeners.isEmpty ? try SocketPath.resolve(option: socket) : nil
            if let restart = RestartFromStore.take(inherited, store: store, logger: logger) {
                // The image holds everything; the storage files it names are forgotten once
                // fresh ones are written.
                inherited.state.forEach { close($0.fd) }
                listen = .restarted(Handed(restart), ownedPath: ownPath?.path)
            } else if let ownPath {
                listen = .path(ownPath)
            } else {
                listen = .inherited(inherited.listeners)
            }
            if case .restarted = listen {
            } else if !inherited.state.isEmpty {
                // A crash (or kill -9): what the storage files kept.
                recovered = StateStore.recover(inherited.state.map { ($0.fd, $0.name) })
                if !store.enabled {
                    logger.warning("storage files were passed but the file-descriptor store is off: they are not used")
                    recovered = nil
                }
            }
        }

        let policyFiles = PolicyFiles(explicit: policy)
        let loaded: (policy: Policy, files: [String])
        do {
            loaded = try policyFiles.load()
        } catch {
            logger.critical("cannot load the policy", metadata: ["error": "\(error)"])
            throw ExitCode(78)
        }
        if !loaded.files.isEmpty {
            logger.log(level: carried == nil ? .info : .notice, carried == nil ? "policy loaded" : "policy reloaded (live upgrade)", metadata: ["files": "\(loaded.files.joined(separator: ", "))", "rules": "\(loaded.policy.ruleCount)"])
        }

        do {
            if let (file, lines) = try ConfigFile.federationSections(explicit: config), !lines.isEmpty {
                logger.notice("federation is comet-bridge's since 0.7: cometd ignores these sections (comet-bridge reads them; docs/FEDERATION.md)", metadata: [
                    "file": "\(file)", "lines": "\(lines.map(String.init).joined(separator: ","))",
                ])
            }
        } catch {
            logger.critical("cannot load the configuration", metadata: ["error": "\(error)"])
            throw ExitCode(78)
        }

        if handoverProbe {
            // Asked by a running cometd before it executes this binary: the configuration and
            // policy load, and these are the image formats this binary reads.
            print(LiveUpgrade.probeAnswer)
            return
        }

        let descriptors = ResourceLimits.raiseDescriptorLimit(logger: logger)
        let ceiling = maxMemory.flatMap { ByteSize($0)?.bytes } ?? ResourceLimits.defaultMemoryCeiling()
        var quotas = Quotas(memoryCeiling: ceiling, maxConnections: max(4, descriptors - ResourceLimits.reservedDescriptors))
        for option in limit {
            quotas.total[option.resource] = option.value
            quotas.perUser[option.resource] = max(1, option.value / Quotas.userShare)
        }
        for option in userQuota { quotas.perUser[option.resource] = option.value }

        var configuration = ServerConfiguration()
        configuration.maxFrameSize = maxFrameSize
        configuration.sessionGrace = .nanoseconds(Int64(sessionGrace * 1e9))
        configuration.policy = loaded.policy
        configuration.quotas = quotas
        configuration.handshakeTimeout = .nanoseconds(Int64(handshakeTimeout * 1e9))
        configuration.idleTimeout = .nanoseconds(Int64(idleTimeout * 1e9))
        configuration.shutdownDrain = .nanoseconds(Int64(shutdownDrain * 1e9))
        configuration.readerQueueBound = ByteSize(readerQueue)?.bytes ?? configuration.readerQueueBound
        configuration.readerGrace = .nanoseconds(Int64(readerGrace * 1e9))
        configuration.mirrorOrphanGrace = .nanoseconds(Int64(importGrace * 1e9))
        configuration.crashPoint = crashAt.flatMap(CrashPoint.init)
        logger.info("limits", metadata: [
            "max_memory": "\(ceiling >> 20) MiB", "descriptors": "\(descriptors)",
            "connections": "\(quotas.total(.connections)) (per user \(quotas.perUser(.connections)))",
        ])
        let ticks = LoopTicks()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1, metricsDelegate: ticks)
        let server = CometServer(configuration: configuration, eventLoop: group.next(), logger: logger, ticks: ticks)
        let stateStore = store.enabled ? StateStore(
            keep: { fd, name in store.add([fd], name: name) }, forget: { store.remove($0) },
            clock: { NIODeadline.now().uptimeNanoseconds }) : nil
        let service = CometService(
            server: server, listen: listen, notifier: SystemdNotifier(), store: store, stateStore: stateStore, recovered: recovered.map(Handed.init),
            policyFiles: policyFiles, logger: logger)
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

/// `RESOURCE=N` for `--user-quota` and `--limit`; byte resources take K, M, G suffixes.
struct QuotaOption: ExpressibleByArgument {
    let resource: Resource
    let value: Int

    static let byName: [String: Resource] = [
        "connections": .connections, "channels": .channels, "subscriptions": .subscriptions, "sessions": .sessions,
        "waits": .timeoutWaits, "buffered-bytes": .bufferedBytes, "output-bytes": .queuedOutputBytes,
        "unfinished-bytes": .unfinishedFrameBytes,
    ]
    static var names: String { byName.keys.sorted().joined(separator: ", ") }

    init?(argument: String) {
        let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, let resource = Self.byName[parts[0]], let size = ByteSize(parts[1]) else { return nil }
        self.resource = resource
        self.value = size.bytes
    }
}
