import CNATSBridge
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A connection to one NATS server, shared by every export and import that names it.
///
/// The daemon's event loop only queues events here (a lock and an append); one worker thread
/// owns the nats.c connection and makes every blocking call (stream creation, lookups,
/// subscriptions) and every publish. Acknowledgements and subscription messages arrive on
/// nats.c's threads and are queued the same way.
///
/// Its exports are in `NATSLink+Export.swift`, its imports in `NATSLink+Import.swift`.
public final class NATSLink: @unchecked Sendable {  // `events`/`scheduled`/`table`/`connectedFlag` under `lock`; the rest on the worker only
    public let server: NATSServer
    /// Configured servers connect in the background and reconnect forever; a server only a
    /// reader named fails at once when it cannot be reached.
    public let keepTrying: Bool
    let logger: Logger
    let timers: EventLoop
    let pool = NIOThreadPool(numberOfThreads: 1)

    enum Event {
        case start
        case state(Int32)
        case open(ExportTarget, epoch: UInt64, next: UInt64)
        case pushed(name: String, epoch: UInt64, first: UInt64, [ByteBuffer])
        case closed(name: String, epoch: UInt64, last: UInt64)
        case ack(event: Int32, epoch: UInt64, sequence: UInt64, status: Int32, jsError: Int32, text: String, streamSequence: UInt64)
        case addFeed(ImportFeed)
        case removeFeed(ImportFeed)
        case resubscribe(ImportFeed)
        case tick
        case refreshTable
        case stop(EventLoopPromise<Void>?)
    }

    let lock = NIOLock()
    var events: [Event] = []
    var scheduled = false
    var table: [String: ExportStats] = [:]
    var connectedFlag = false

    var link: OpaquePointer?
    var connected = false
    var stopped = false
    /// Why the first connection failed (links that do not keep trying).
    var failure: String?
    var exports: [ExportState] = []
    var feeds: [ObjectIdentifier: ImportFeed] = [:]
    var tickScheduled = false
    var missedLogged: [String: (count: UInt64, at: NIODeadline)] = [:]
    var tableRefreshedAt = NIODeadline.uptimeNanoseconds(0)
    var tableRefreshScheduled = false

    /// - Parameters:
    ///   - timers: an event loop for the worker's delayed retries.
    public init(server: NATSServer, keepTrying: Bool, timers: EventLoop, logger: Logger) {
        self.server = server
        self.keepTrying = keepTrying
        self.timers = timers
        self.logger = logger
        pool.start()
        post(.start)
    }

    // MARK: From the daemon

    /// A channel epoch starts being exported; its first message will be `next`.
    public func open(_ target: ExportTarget, epoch: UInt64, next: UInt64) { post(.open(target, epoch: epoch, next: next)) }

    /// Messages were pushed to an exported channel, numbered from `first`.
    public func pushed(name: String, epoch: UInt64, first: UInt64, _ payloads: [ByteBuffer]) {
        post(.pushed(name: name, epoch: epoch, first: first, payloads))
    }

    /// An exported channel epoch closed after message `last`.
    public func closed(name: String, epoch: UInt64, last: UInt64) { post(.closed(name: name, epoch: epoch, last: last)) }

    /// Starts reading `feed.subject`.
    public func add(_ feed: ImportFeed) { post(.addFeed(feed)) }

    /// Stops reading `feed.subject` (its consumer is deleted).
    public func remove(_ feed: ImportFeed) { post(.removeFeed(feed)) }

    /// Reads `feed.subject` again from its start with a new subscription (`FeedEvent.restarted`
    /// marks where its events begin).
    public func resubscribe(_ feed: ImportFeed) { post(.resubscribe(feed)) }

    /// Counters of every channel exported through this link.
    public var exportStats: [ExportStats] { lock.withLock { Array(table.values) } }

    public var isConnected: Bool { lock.withLock { connectedFlag } }

    /// Bytes the exports of closed channels may still hold (their channels' rings are gone, so
    /// nobody is charged for them) while NATS has not taken them; past it the oldest are dropped.
    public static let closedBacklogLimit = 64 << 20

    /// Publishes what is queued (waiting up to half a second for acknowledgements), ends every
    /// subscription and closes the connection.
    public func stop(promise: EventLoopPromise<Void>?) { post(.stop(promise)) }

    // MARK: Worker

    func post(_ event: Event) {
        let submit = lock.withLock {
            events.append(event)
            defer { scheduled = true }
            return !scheduled
        }
        if submit { pool.submit { [self] _ in drain() } }
    }

    func drain() {
        while true {
            let batch: [Event]? = lock.withLock {
                if events.isEmpty {
                    scheduled = false
                    return nil
                }
                defer { events = [] }
                return events
            }
            guard let batch else { return }
            for event in batch where !stopped { apply(event) }
            if !stopped {
                pump()
                refreshTable()
            }
        }
    }

    func apply(_ event: Event) {
        switch event {
        case .start:
            connect()
        case .state(let state):
            switch Int(state) {
            case CN_CONNECTED where connected:
                break  // connect() saw the first connection already
            case CN_CONNECTED, CN_RECONNECTED:
                if !connected { logger.notice("connected to NATS", metadata: ["nats": "\(server.url)"]) }
                setConnected(true)
                for export in exports { export.reconnected() }
                for feed in feeds.values { subscribe(feed) }
            case CN_DISCONNECTED:
                if connected { logger.warning("lost the connection to NATS; reconnecting", metadata: ["nats": "\(server.url)"]) }
                setConnected(false)
                for feed in feeds.values { feed.post(.trouble("lost the connection to NATS (\(server.urls.joined(separator: ",")))")) }
            default:
                setConnected(false)
            }
        case .open(let target, let epoch, let next):
            exports.removeAll { $0.target.name == target.name }
            exports.append(ExportState(target: target, epoch: epoch, next: next))
        case .pushed(let name, let epoch, let first, let payloads):
            export(name, epoch)?.append(first: first, payloads)
        case .closed(let name, let epoch, let last):
            export(name, epoch)?.closedAt = last
            boundClosedBacklog()
        case .ack(let event, let epoch, let sequence, let status, let jsError, let text, let streamSequence):
            acknowledged(
                InFlight(event: event, sequence: sequence), epoch: epoch, status: status, jsError: jsError, text: text,
                streamSequence: streamSequence)
        case .addFeed(let feed):
            feeds[ObjectIdentifier(feed)] = feed
            subscribe(feed)
        case .removeFeed(let feed):
            feed.removed = true
            feeds[ObjectIdentifier(feed)] = nil
            unsubscribe(feed)
        case .resubscribe(let feed):
            if !feed.removed { subscribe(feed) }
        case .tick:
            tickScheduled = false
        case .refreshTable:
            tableRefreshScheduled = false
            tableRefreshedAt = .uptimeNanoseconds(0)
        case .stop(let promise):
            stopped = true
            if let link, connected { _ = cn_publish_complete(link, 500) }
            for feed in feeds.values { unsubscribe(feed) }
            feeds = [:]
            if let link { cn_close(link) }
            link = nil
            setConnected(false)
            // The pool ends after this item; a thread cannot join itself.
            let pool = self.pool
            timers.execute { pool.shutdownGracefully { _ in promise?.succeed() } }
        }
    }

    /// The worker's view, and at once the daemon's (`isConnected`).
    func setConnected(_ value: Bool) {
        connected = value
        lock.withLock { connectedFlag = value }
    }

    func connect() {
        var options = cn_options()
        var owned: [UnsafeMutablePointer<CChar>] = []
        func c(_ string: String?) -> UnsafePointer<CChar>? {
            guard let string, let copy = strdup(string) else { return nil }
            owned.append(copy)
            return UnsafePointer(copy)
        }
        defer { owned.forEach { free($0) } }
        options.url = c(server.url)
        let servers = server.urls.map { c($0) }
        options.servers_len = Int32(servers.count)
        options.user = c(server.user)
        options.password = c(server.password)
        options.token = c(server.token)
        options.creds = c(server.credentialsFile)
        options.tls_ca = c(server.tlsCA)
        options.tls_cert = c(server.tlsCertificate)
        options.tls_key = c(server.tlsKey)
        options.name = c("comet-bridge")
        options.timeout_ms = server.timeoutMilliseconds
        options.keep_trying = keepTrying
        options.reconnect_wait_ms = server.reconnectWaitMilliseconds
        var error = [CChar](repeating: 0, count: 512)
        let me = Unmanaged.passUnretained(self).toOpaque()
        link = servers.withUnsafeBufferPointer { list in
            options.servers = list.baseAddress
            return cn_connect(&options, { ctx, state in
            Unmanaged<NATSLink>.fromOpaque(ctx!).takeUnretainedValue().post(.state(state))
        }, { ctx, event, epoch, sequence, status, jsError, text, streamSequence in
            // Text only for refusals: an acknowledgement of a stored message allocates nothing.
            Unmanaged<NATSLink>.fromOpaque(ctx!).takeUnretainedValue().post(.ack(
                event: event, epoch: epoch, sequence: sequence, status: status, jsError: jsError,
                text: status == 0 ? "" : String(cString: text!), streamSequence: streamSequence))
        }, { ctx, subCtx, status, text in
            let token = Unmanaged<FeedToken>.fromOpaque(subCtx!).takeUnretainedValue()
            let link = Unmanaged<NATSLink>.fromOpaque(ctx!).takeUnretainedValue()
            if let feed = token.feed {
                let why = String(cString: text!)
                link.logger.notice("JetStream subscription in trouble; subscribing again", metadata: [
                    "nats": "\(link.server.url)", "subject": "\(feed.subject)", "status": "\(why)",
                ])
                feed.post(.trouble("the JetStream subscription is in trouble (\(why))"))
                link.post(.resubscribe(feed))
            }
        }, me, &error, error.count)
        }
        if let link, cn_is_connected(link) {
            // Connected at once: what is queued behind this event may use the link now.
            setConnected(true)
            logger.notice("connected to NATS", metadata: ["nats": "\(server.url)"])
        }
        if link == nil {
            failure = Self.text(error)
            logger.warning("cannot connect to NATS", metadata: ["nats": "\(server.url)", "error": "\(failure!)"])
        } else if keepTrying, !cn_is_connected(link) {
            logger.warning("NATS is not reachable; exports wait and retry in the background", metadata: [
                "nats": "\(server.url)", "retry_ms": "\(server.reconnectWaitMilliseconds)",
            ])
        }
        // A first connection reports CN_CONNECTED through the callback (queued behind this event).
    }
}

extension NATSLink {
    /// JetStream's de-duplication window for exported streams: longer than an acknowledgement
    /// can take (a republish after a timeout is then dropped), short enough that the server's
    /// table of recent ids stays small at full speed (2 minutes, the default, cost it a third of
    /// its throughput here). Importers drop duplicates by sequence number in any case.
    static func duplicateWindow(_ server: NATSServer) -> Int64 { max(10_000, 5 * server.timeoutMilliseconds) }

    /// The NUL-terminated text nats.c wrote into `buffer`.
    static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
