import CometServer
import NIOCore
import CometState
import Logging
import ServiceLifecycle
import UnixSignals

/// The daemon as a swift-service-lifecycle service: listen, report READY=1, keep the service
/// manager informed, and on graceful shutdown close every channel and connection.
struct CometService: Service {
    enum Listen {
        case inherited([CInt])
        case path(SocketPath)
        /// Handed over by the previous process of a live upgrade; `ownedPath` is the socket file
        /// it bound itself (removed at exit), if any.
        case carried(Handed<DaemonImage>, ownedPath: String?)
        /// A planned restart through the file-descriptor store.
        case restarted(Handed<RestartFromStore>, ownedPath: String?)
    }

    /// The socket file this process bound and removes at exit.
    var ownedPath: String? {
        switch listen {
        case .path(let socket): return socket.path
        case .carried(_, ownedPath: let path), .restarted(_, ownedPath: let path): return path
        case .inherited: return nil
        }
    }

    let server: CometServer
    let listen: Listen
    let notifier: SystemdNotifier
    let store: FileDescriptorStore
    /// Storage of channels and sessions that outlives a crash, and what a crash left in it.
    let stateStore: StateStore?
    let recovered: Handed<StateStore.Recovered>?
    let policyFiles: PolicyFiles
    let logger: Logger

    func run() async throws {
        if let stateStore { try await server.useStorage(stateStore) }
        if let recovered = recovered?.take() { try await server.recover(recovered) }
        switch listen {
        case .inherited(let descriptors):
            for fd in descriptors { try await server.adopt(descriptor: fd) }
        case .path(let socket):
            try socket.prepare()
            try await server.bind(unixPath: socket.path)
            socket.openPermissions()
        case .carried(let image, ownedPath: _):
            if let image = image.take() { try await server.restore(image) }
        case .restarted(let restart, ownedPath: _):
            if let restart = restart.take() {
                try await server.restore(restart.image, sockets: restart.sockets, listeners: restart.listeners)
            }
        }
        notifier.ready(status: "serving; \(try await server.status())")
        if let started = getenv("COMET_HANDOVER_STARTED").flatMap({ UInt64(String(cString: $0)) }) {
            unsetenv("COMET_HANDOVER_STARTED")
            let now = NIODeadline.now().uptimeNanoseconds
            if now > started { logger.notice("handed over", metadata: ["pause_ms": "\((now - started) / 1_000_000)"]) }
        }
        logger.info("ready")

        await withTaskGroup(of: Void.self) { group in
            group.addTask { await reportStatus() }
            group.addTask { await reloadOnHangup() }
            if let interval = notifier.watchdogInterval {
                group.addTask { await pingWatchdog(every: interval / 2) }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }

        if store.enabled {
            await restartThroughStore()
        }
        logger.info("shutting down")
        notifier.stopping()
        await server.shutdown()
        if let path = ownedPath {
            unlinkIfSocket(path)
        }
        logger.info("stopped")
    }

    /// Sends STATUS= whenever the summary changes, checked every second.
    private func reportStatus() async {
        var last = ""
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            guard let status = try? await server.status() else { continue }
            let text = "serving; \(status)"
            if text != last {
                notifier.status(text)
                last = text
            }
        }
    }

    /// SIGHUP: a live upgrade (the binary on disk takes over in this process, with every
    /// connection; it reads the configuration and policy again). If the new binary cannot take
    /// over, this process stays and reads the policy files again; a bad file is refused with its
    /// line and the old policy stays. Nobody is disconnected either way.
    private func reloadOnHangup() async {
        for await _ in await UnixSignalsSequence(trapping: .sighup) {
            do {
                try await upgrade()
            } catch {
                logger.error("live upgrade refused; this process goes on and reloads the policy", metadata: ["reason": "\(error)"])
                notifier.ready(status: "serving; live upgrade refused: \(error)")
            }
            do {
                let loaded = try policyFiles.load()
                try await server.reload(policy: loaded.policy)
                logger.notice("policy reloaded", metadata: ["files": "\(loaded.files.joined(separator: ", "))", "rules": "\(loaded.policy.ruleCount)"])
            } catch {
                logger.error("policy not reloaded; keeping the old one", metadata: ["error": "\(error)"])
            }
        }
    }

    /// SIGTERM with a file-descriptor store: the whole state and every connection go into the
    /// store and the process ends at once, on the event loop, so nothing happens after the
    /// image; the next process takes them over (a crash or `systemctl stop` closes them).
    /// Returns only if the store did not take them (then the ordinary shutdown follows).
    private func restartThroughStore() async {
        let store = self.store
        let own = ownedPath != nil
        let logger = self.logger
        let notifier = self.notifier
        do {
            try await server.withImage { image in
                try store.save(image, ownListeners: own)
                logger.notice("stopping: state and connections left in the file-descriptor store for the next start", metadata: [
                    "connections": "\(image.connections.count)", "channels": "\(image.channels.count)",
                    "sessions": "\(image.sessions.count)",
                ])
                notifier.notify("STOPPING=1\nSTATUS=restarting: state in the file-descriptor store")
                fflush(nil)
                _exit(0)
            }
        } catch {
            logger.error("state not left in the file-descriptor store; stopping as usual", metadata: ["error": "\(error)"])
        }
    }

    /// Probes the binary on disk, tells the service manager, and executes it with the state.
    /// Returns only if it did not happen.
    private func upgrade() async throws {
        guard let path = LiveUpgrade.executablePath() else { throw LiveUpgrade.Refused(description: "cannot tell which binary to execute") }
        let format = try LiveUpgrade.probe(path)
        logger.notice("live upgrade: handing over to \(path)", metadata: ["image-format": "\(format)"])
        notifier.reloading()
        // From here the next process's "handed over" log line counts the pause.
        setenv("COMET_HANDOVER_STARTED", "\(NIODeadline.now().uptimeNanoseconds)", 1)
        defer { unsetenv("COMET_HANDOVER_STARTED") }
        let owned = ownedPath
        try await server.withImage { image in
            if let owned { setenv(LiveUpgrade.ownedSocketVariable, owned, 1) }
            defer { unsetenv(LiveUpgrade.ownedSocketVariable) }
            try LiveUpgrade.execute(path, image: image, format: format)
        }
    }

    private func pingWatchdog(every interval: Duration) async {
        while !Task.isCancelled {
            notifier.watchdogPing()
            try? await Task.sleep(for: interval)
        }
    }
}

import Glibc

private func unlinkIfSocket(_ path: String) {
    var info = stat()
    if lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK { unlink(path) }
}

extension CometService: CustomStringConvertible {
    /// What swift-service-lifecycle logs: a name, never the state being handed over.
    var description: String { "cometd" }
}

/// State handed over by a previous process, taken once: the service does not keep it (all the
/// messages it holds) once it is restored.
final class Handed<Value>: @unchecked Sendable {  // taken once, by the service's task
    private var value: Value?

    init(_ value: Value) { self.value = value }

    func take() -> Value? {
        defer { value = nil }
        return value
    }
}
