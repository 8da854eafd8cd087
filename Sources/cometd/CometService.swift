import CometServer
import Logging
import ServiceLifecycle
import UnixSignals

/// The daemon as a swift-service-lifecycle service: listen, report READY=1, keep the service
/// manager informed, and on graceful shutdown close every channel and connection.
struct CometService: Service {
    enum Listen {
        case inherited([CInt])
        case path(SocketPath)
    }

    let server: CometServer
    let listen: Listen
    let notifier: SystemdNotifier
    let policyFiles: PolicyFiles
    let logger: Logger

    func run() async throws {
        switch listen {
        case .inherited(let descriptors):
            for fd in descriptors { try await server.adopt(descriptor: fd) }
        case .path(let socket):
            try socket.prepare()
            try await server.bind(unixPath: socket.path)
            socket.openPermissions()
        }
        notifier.ready(status: "serving; \(try await server.status())")
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

        logger.info("shutting down")
        notifier.stopping()
        await server.shutdown()
        if case .path(let socket) = listen {
            unlinkIfSocket(socket.path)
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

    /// SIGHUP: reads the policy files again; a bad file is refused with its line and the old
    /// policy stays. Nobody is disconnected.
    private func reloadOnHangup() async {
        for await _ in await UnixSignalsSequence(trapping: .sighup) {
            do {
                let loaded = try policyFiles.load()
                try await server.reload(policy: loaded.policy)
                logger.notice("policy reloaded", metadata: ["files": "\(loaded.files.joined(separator: ", "))", "rules": "\(loaded.policy.ruleCount)"])
            } catch {
                logger.error("policy not reloaded; keeping the old one", metadata: ["error": "\(error)"])
            }
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
