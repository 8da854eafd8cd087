import Comet
import CometFederation
import CometWire
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// comet-bridge: the local cometd's channels to and from NATS JetStream (docs/FEDERATION.md).
///
/// One link per `[nats]` section for the bridge's lifetime (JetStream state survives a lost
/// connection to cometd); everything that talks to cometd lives in one session per connection.
/// When cometd goes (a restart, an upgrade, a crash) the session ends and the next connection
/// starts over: imports are declared again and their subjects read from the start of what the
/// streams keep (cometd skips what it has), exports subscribe again from the oldest message
/// their ring holds (the links skip what the streams have).
final class Bridge: Sendable {
    let configuration: FederationConfiguration
    let socketPath: String
    let logger: Logger
    let links: [String: NATSLink]
    let loop: EventLoop
    /// How often the channel list is read to find channels that export rules name.
    let scanInterval: TimeAmount

    init(configuration: FederationConfiguration, socketPath: String, scanInterval: TimeAmount = .seconds(1), logger: Logger) {
        self.configuration = configuration
        self.socketPath = socketPath
        self.logger = logger
        self.scanInterval = scanInterval
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        self.loop = loop
        var links: [String: NATSLink] = [:]
        let used = Set(configuration.exports.map(\.server) + configuration.imports.map(\.server))
        for name in used {
            guard let server = configuration.servers[name] else { continue }
            links[name] = NATSLink(server: server, keepTrying: true, timers: loop, logger: logger)
        }
        self.links = links
    }

    /// Connects to cometd and bridges, connecting again whenever the connection ends.
    func run() async {
        var delay = 0.1
        var told = false
        while !Task.isCancelled {
            let client: CometClient
            do {
                client = try await CometClient.connect(to: socketPath)
            } catch {
                if !told { logger.warning("cometd is not reachable; trying again", metadata: ["socket": "\(socketPath)", "error": "\(error)"]) }
                told = true
                try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                delay = min(delay * 2, 2)
                continue
            }
            guard client.servesMirrors || configuration.imports.isEmpty else {
                logger.critical("this cometd does not serve imports (MIRROR); it is older than comet-bridge", metadata: ["socket": "\(socketPath)"])
                await client.close()
                try? await Task.sleep(nanoseconds: 10_000_000_000)
                continue
            }
            logger.notice("connected to cometd", metadata: ["socket": "\(socketPath)"])
            told = false
            delay = 0.1
            await session(client)
            logger.notice("the connection to cometd ended; connecting again", metadata: ["socket": "\(socketPath)"])
        }
    }

    /// Everything one connection to cometd carries, until it ends.
    private func session(_ client: CometClient) async {
        let importers = configuration.imports.compactMap { rule -> Importer? in
            guard let link = links[rule.server] else { return nil }
            return Importer(rule: rule, client: client, link: link, loop: loop, logger: logger)
        }
        await withTaskGroup(of: Void.self) { group in
            for importer in importers {
                group.addTask { [logger] in
                    do {
                        try await importer.run()
                    } catch let error as CometError where error.code == .permissionDenied || error.code == .channelExists {
                        // A mistake in the setup: said once per connection, not retried in a loop.
                        logger.error("import refused by cometd", metadata: ["channel": "\(importer.rule.localName)", "error": "\(error)"])
                        return
                    } catch {
                        logger.warning("import ended", metadata: ["channel": "\(importer.rule.localName)", "error": "\(error)"])
                    }
                    await client.close()
                }
            }
            group.addTask { [links] in
                // Every second: stalls, and the counters STATS shows (BRIDGE_REPORT).
                var reported = true
                while !Task.isCancelled {
                    try? await Task.sleep(nanoseconds: 1_000_000_000)
                    for importer in importers { await importer.checkStall() }
                    guard reported else { continue }
                    var imports: [ImportCounters] = []
                    for importer in importers { imports.append(await importer.counters()) }
                    let exports = links.values.flatMap { link in
                        link.exportStats.map { e in
                            ExportCounters(
                                name: e.name, subject: e.subject, epoch: e.epoch, published: e.published, acknowledged: e.acknowledged,
                                missed: e.missed, backlog: e.backlog, connected: e.connected, server: link.server.urls.joined(separator: ","),
                                stream: e.stream, replicas: UInt8(clamping: e.replicas), failure: e.failure ?? "")
                        }
                    }
                    do {
                        try await client.report(BridgeReport(exports: exports, imports: imports))
                    } catch let error as CometError where error.code == .permissionDenied {
                        // Counters are for operators; without a right to report, bridging goes on.
                        reported = false
                    } catch {}
                }
            }
            if !configuration.exports.isEmpty {
                group.addTask { await self.exports(client) }
            }
            group.addTask { try? await client.closeFuture.get() }
            // The first to end is the connection (or a task that closed it): end the rest.
            _ = await group.next()
            await client.close()
            for importer in importers { await importer.stop() }
            group.cancelAll()
        }
    }

    /// Exports every channel the rules name: an exact name is waited for (a subscription that
    /// starts when the channel is created, so nothing it holds is missed however short its life);
    /// names under a prefix are found by LIST every `scanInterval`.
    private func exports(_ client: CometClient) async {
        let exact = configuration.exports.filter { !$0.pattern.hasSuffix("*") }
        let running = NIOLockedValueBox<Set<String>>(Set(exact.map(\.pattern)))
        await withDiscardingTaskGroup { group in
            for rule in exact {
                guard let link = links[rule.server] else { continue }
                let exporter = Exporter(name: rule.pattern, rule: rule, link: link, logger: logger)
                group.addTask { [logger] in
                    while !Task.isCancelled {
                        do {
                            try await exporter.run(client: client, wait: true)
                        } catch {
                            logger.debug("export ended", metadata: ["channel": "\(rule.pattern)", "error": "\(error)"])
                            return
                        }
                    }
                }
            }
            guard exact.count < configuration.exports.count else { return }
            while !Task.isCancelled {
                let channels: [ChannelInfo]
                do {
                    channels = try await client.channels()
                } catch {
                    await client.close()
                    return
                }
                for channel in channels where channel.scope == 0 {
                    guard let rule = configuration.export(for: channel.name), let link = links[rule.server],
                        running.withLockedValue({ $0.insert(channel.name).inserted })
                    else { continue }
                    let exporter = Exporter(name: channel.name, rule: rule, link: link, logger: logger)
                    group.addTask { [logger] in
                        do {
                            try await exporter.run(client: client, wait: false)
                        } catch {
                            logger.debug("export ended", metadata: ["channel": "\(channel.name)", "error": "\(error)"])
                        }
                        // Its channel closed: a channel of that name made later is exported anew.
                        running.withLockedValue { _ = $0.remove(channel.name) }
                    }
                }
                try? await Task.sleep(nanoseconds: UInt64(scanInterval.nanoseconds))
            }
        }
    }

    /// Publishes what the exports hold (up to half a second) and closes every link.
    func stop() async {
        for link in links.values {
            let promise = loop.makePromise(of: Void.self)
            link.stop(promise: promise)
            try? await promise.futureResult.get()
        }
    }
}
