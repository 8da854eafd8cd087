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
public final class NATSLink: @unchecked Sendable {  // `events`/`scheduled`/`table` under `lock`; the rest on the worker only
    public let server: NATSServer
    /// Configured servers connect in the background and reconnect forever; a server only a
    /// reader named fails at once when it cannot be reached.
    public let keepTrying: Bool
    let logger: Logger
    private let timers: EventLoop
    private let pool = NIOThreadPool(numberOfThreads: 1)

    enum Event {
        case start
        case state(Int32)
        case open(ExportTarget, epoch: UInt64, next: UInt64)
        case pushed(name: String, epoch: UInt64, first: UInt64, [ByteBuffer])
        case closed(name: String, epoch: UInt64, last: UInt64)
        case ack(subject: String, id: String, status: Int32, jsError: Int32, text: String)
        case addFeed(ImportFeed)
        case removeFeed(ImportFeed)
        case resubscribe(ImportFeed)
        case tick
        case refreshTable
        case stop(EventLoopPromise<Void>?)
    }

    private let lock = NIOLock()
    private var events: [Event] = []
    private var scheduled = false
    private var table: [String: ExportStats] = [:]
    private var connectedFlag = false

    private var link: OpaquePointer?
    private var connected = false
    private var stopped = false
    /// Why the first connection failed (links that do not keep trying).
    private var failure: String?
    private var exports: [ExportState] = []
    private var feeds: [ObjectIdentifier: ImportFeed] = [:]
    private var resyncBackoff: TimeAmount = .milliseconds(250)
    private var resyncAfter = NIODeadline.uptimeNanoseconds(0)
    private var tickScheduled = false
    private var missedLogged: [String: (count: UInt64, at: NIODeadline)] = [:]
    private var tableRefreshedAt = NIODeadline.uptimeNanoseconds(0)
    private var tableRefreshScheduled = false

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

    private func post(_ event: Event) {
        let submit = lock.withLock {
            events.append(event)
            defer { scheduled = true }
            return !scheduled
        }
        if submit { pool.submit { [self] _ in drain() } }
    }

    private func drain() {
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

    private func apply(_ event: Event) {
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
                for export in exports { export.needsResync = true }
                resyncAfter = .uptimeNanoseconds(0)
                for feed in feeds.values { subscribe(feed) }
            case CN_DISCONNECTED:
                if connected { logger.warning("lost the connection to NATS; reconnecting", metadata: ["nats": "\(server.url)"]) }
                setConnected(false)
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
        case .ack(let subject, let id, let status, let jsError, let text):
            acknowledged(subject: subject, id: id, status: status, jsError: jsError, text: text)
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

    /// Drops the oldest exports of closed channels while they hold more than `closedBacklogLimit`.
    private func boundClosedBacklog() {
        var held = exports.reduce(0) { $0 + ($1.closedAt == nil ? 0 : $1.bytes) }
        while held > Self.closedBacklogLimit, let index = exports.firstIndex(where: { $0.closedAt != nil }) {
            let dropped = exports.remove(at: index)
            held -= dropped.bytes
            logger.warning("dropped the unpublished end of a closed channel's export: NATS has not taken it and it holds too much", metadata: [
                "channel": "\(dropped.target.name)", "messages": "\(dropped.endSequence - dropped.nextToPublish)", "nats": "\(server.url)",
            ])
        }
    }

    /// The worker's view, and at once the daemon's (`isConnected`).
    private func setConnected(_ value: Bool) {
        connected = value
        lock.withLock { connectedFlag = value }
    }

    private func export(_ name: String, _ epoch: UInt64) -> ExportState? {
        exports.first { $0.target.name == name && $0.epoch == epoch }
    }

    private func connect() {
        var options = cn_options()
        var owned: [UnsafeMutablePointer<CChar>] = []
        func c(_ string: String?) -> UnsafePointer<CChar>? {
            guard let string, let copy = strdup(string) else { return nil }
            owned.append(copy)
            return UnsafePointer(copy)
        }
        defer { owned.forEach { free($0) } }
        options.url = c(server.url)
        options.user = c(server.user)
        options.password = c(server.password)
        options.token = c(server.token)
        options.creds = c(server.credentialsFile)
        options.tls_ca = c(server.tlsCA)
        options.tls_cert = c(server.tlsCertificate)
        options.tls_key = c(server.tlsKey)
        options.name = c("cometd")
        options.timeout_ms = server.timeoutMilliseconds
        options.keep_trying = keepTrying
        options.reconnect_wait_ms = server.reconnectWaitMilliseconds
        var error = [CChar](repeating: 0, count: 512)
        let me = Unmanaged.passUnretained(self).toOpaque()
        link = cn_connect(&options, { ctx, state in
            Unmanaged<NATSLink>.fromOpaque(ctx!).takeUnretainedValue().post(.state(state))
        }, { ctx, subject, id, status, jsError, text in
            Unmanaged<NATSLink>.fromOpaque(ctx!).takeUnretainedValue().post(.ack(
                subject: String(cString: subject!), id: String(cString: id!), status: status, jsError: jsError,
                text: String(cString: text!)))
        }, { ctx, subCtx, status, text in
            let token = Unmanaged<FeedToken>.fromOpaque(subCtx!).takeUnretainedValue()
            let link = Unmanaged<NATSLink>.fromOpaque(ctx!).takeUnretainedValue()
            if let feed = token.feed {
                link.logger.notice("JetStream subscription in trouble; subscribing again", metadata: [
                    "nats": "\(link.server.url)", "subject": "\(feed.subject)", "status": "\(String(cString: text!))",
                ])
                link.post(.resubscribe(feed))
            }
        }, me, &error, error.count)
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

    // MARK: Exports

    private func pump() {
        guard let link, connected else { return }
        let now = NIODeadline.now()
        var failed = false
        for export in exports {
            if export.needsResync {
                guard now >= resyncAfter else { continue }
                if !resync(export, link) {
                    failed = true
                    continue
                }
            }
            publish(export, link)
        }
        exports.removeAll { $0.isFinished }
        if failed {
            resyncAfter = now + resyncBackoff
            resyncBackoff = min(resyncBackoff * 2, .seconds(30))
        } else if exports.allSatisfy({ !$0.needsResync }) {
            resyncBackoff = .milliseconds(250)
        }
        if exports.contains(where: { $0.needsResync }), !tickScheduled {
            tickScheduled = true
            timers.scheduleTask(deadline: max(resyncAfter, now + .milliseconds(50))) { [weak self] in self?.post(.tick) }
        }
    }

    /// Finds where the stream stands for this epoch and goes on after it. False on failure.
    private func resync(_ export: ExportState, _ link: OpaquePointer) -> Bool {
        let target = export.target
        var error = [CChar](repeating: 0, count: 512)
        guard cn_ensure_stream(link, target.stream, target.subject, Int64(max(1, target.size) + 2), target.storage == .memory, Self.duplicateWindow(server), &error, error.count) == CN_OK else {
            logger.warning("cannot prepare the JetStream stream; retrying", metadata: [
                "channel": "\(target.name)", "stream": "\(target.stream)", "error": "\(Self.text(error))",
            ])
            return false
        }
        var last = cn_delivery()
        let found = cn_last(link, target.stream, target.subject, &last, &error, error.count)
        switch found {
        case Int32(CN_OK) where last.epoch == export.epoch && last.event != CN_FOREIGN:
            export.openPublished = true
            var stored: UInt64?
            switch last.event {
            case Int32(CN_OPEN):
                stored = last.seq > 1 ? last.seq - 1 : nil
                export.lastID = Self.id(.open, export.epoch, 0)
            case Int32(CN_CLOSE):
                stored = last.seq
                export.closePublished = true
                export.closeAcknowledged = true
                export.lastID = Self.id(.close, export.epoch, 0)
            default:
                stored = last.seq
                export.lastID = Self.id(.message, export.epoch, last.seq)
            }
            export.resume(after: stored)
        case Int32(CN_OK), Int32(CN_NONE):
            if found == CN_OK {
                // Another epoch of the channel (or someone else's messages): this epoch replaces it.
                guard cn_purge(link, target.stream, &error, error.count) == CN_OK else {
                    logger.warning("cannot purge the JetStream stream; retrying", metadata: [
                        "channel": "\(target.name)", "stream": "\(target.stream)", "error": "\(Self.text(error))",
                    ])
                    return false
                }
            }
            export.openPublished = false
            export.closePublished = false
            export.lastID = nil
            export.resume(after: nil)
        default:
            logger.warning("cannot read the JetStream stream; retrying", metadata: [
                "channel": "\(target.name)", "stream": "\(target.stream)", "error": "\(Self.text(error))",
            ])
            return false
        }
        if !export.openPublished {
            guard send(export, .open, export.nextToPublish, nil, link) else { return false }
            export.openPublished = true
        }
        return true
    }

    private func publish(_ export: ExportState, _ link: OpaquePointer) {
        let limit = max(1, export.target.maxInFlight)
        while !export.needsResync, export.inFlight.count < limit, export.nextToPublish < export.endSequence {
            let seq = export.nextToPublish
            guard let payload = export[seq], send(export, .message, seq, payload, link) else { return }
            export.nextToPublish += 1
            export.stats.published += 1
        }
        if !export.needsResync, let last = export.closedAt, !export.closePublished, export.nextToPublish > last,
            export.inFlight.count < limit
        {
            if send(export, .close, last, nil, link) { export.closePublished = true }
        }
    }

    private enum Kind { case message, open, close }

    private static func id(_ kind: Kind, _ epoch: UInt64, _ seq: UInt64) -> String {
        switch kind {
        case .message: return "\(epoch)-\(seq)"
        case .open: return "\(epoch)-open"
        case .close: return "\(epoch)-close"
        }
    }

    /// Publishes one message or marker after `export.lastID`. False (and a resynchronisation
    /// pending) when nats.c refused it.
    private func send(_ export: ExportState, _ kind: Kind, _ seq: UInt64, _ payload: ByteBuffer?, _ link: OpaquePointer) -> Bool {
        let event: Int32
        switch kind {
        case .message: event = Int32(CN_MESSAGE)
        case .open: event = Int32(CN_OPEN)
        case .close: event = Int32(CN_CLOSE)
        }
        var error = [CChar](repeating: 0, count: 256)
        let expect = export.lastID
        let result: Int32 = (payload ?? ByteBuffer()).withUnsafeReadableBytes { bytes in
            func go(_ expected: UnsafePointer<CChar>?) -> Int32 {
                cn_publish(link, export.target.subject, event, export.epoch, seq, expected, bytes.baseAddress, bytes.count, &error, error.count)
            }
            guard let expect else { return go(nil) }
            return expect.withCString { go($0) }
        }
        guard result == CN_OK else {
            logger.notice("publishing to JetStream failed; resynchronising", metadata: [
                "channel": "\(export.target.name)", "error": "\(Self.text(error))",
            ])
            export.needsResync = true
            return false
        }
        let id = Self.id(kind, export.epoch, seq)
        export.inFlight[id] = export.generation
        export.lastID = id
        return true
    }

    private func acknowledged(subject: String, id: String, status: Int32, jsError: Int32, text: String) {
        guard let dash = id.firstIndex(of: "-"), let epoch = UInt64(id[..<dash]),
            let export = exports.first(where: { $0.target.subject == subject && $0.epoch == epoch }),
            let generation = export.inFlight.removeValue(forKey: id), generation == export.generation
        else { return }
        let rest = id[id.index(after: dash)...]
        guard status == 0 else {
            if !export.needsResync {
                logger.notice("JetStream refused a message; resynchronising", metadata: [
                    "channel": "\(export.target.name)", "id": "\(id)", "error": "\(text)", "js_error": "\(jsError)",
                ])
            }
            export.needsResync = true
            return
        }
        if rest == "close" {
            export.closeAcknowledged = true
        } else if let seq = UInt64(rest) {
            export.stats.acknowledged += 1
            export.acknowledgedThrough = max(export.acknowledgedThrough, seq)
        }
    }

    /// Publishes the counters at most every 50 ms (a drain per batch of messages would otherwise
    /// rebuild them per batch), and once more after the last change.
    private func refreshTable() {
        let now = NIODeadline.now()
        guard now - tableRefreshedAt >= .milliseconds(50) else {
            if !tableRefreshScheduled {
                tableRefreshScheduled = true
                timers.scheduleTask(in: .milliseconds(50)) { [weak self] in self?.post(.refreshTable) }
            }
            return
        }
        tableRefreshedAt = now
        publishTable()
    }

    private func publishTable() {
        var fresh: [String: ExportStats] = [:]
        let now = NIODeadline.now()
        for export in exports {
            fresh[export.target.name] = export.snapshot(connected: connected)
            let missed = export.stats.missed
            let logged = missedLogged[export.target.name]
            if missed > (logged?.count ?? 0), logged.map({ now - $0.at >= .seconds(10) }) ?? true {
                logger.warning("messages left the channel's ring before they reached NATS: remote readers that need them get FULL", metadata: [
                    "channel": "\(export.target.name)", "missed_total": "\(missed)", "nats": "\(server.url)",
                ])
                missedLogged[export.target.name] = (missed, now)
            }
        }
        let connected = self.connected
        lock.withLock {
            table = fresh
            connectedFlag = connected
        }
    }

    // MARK: Imports

    private func subscribe(_ feed: ImportFeed) {
        unsubscribe(feed)
        guard let link, connected else {
            if !feed.permanent, !feed.everSubscribed {
                feed.post(.failed(.unreachable, failure ?? "NATS at \(server.url) is not reachable"))
                feeds[ObjectIdentifier(feed)] = nil
            }
            return
        }
        let token = Unmanaged.passRetained(FeedToken(feed: feed))
        var empty = false
        var noStream = false
        var error = [CChar](repeating: 0, count: 512)
        let sub = cn_subscribe(link, feed.subject, { ctx, delivery in
            let token = Unmanaged<FeedToken>.fromOpaque(ctx!).takeUnretainedValue()
            guard let feed = token.feed, let d = delivery?.pointee else { return }
            switch d.event {
            case Int32(CN_MESSAGE):
                let payload = d.len > 0
                    ? token.allocator.buffer(bytes: UnsafeRawBufferPointer(start: d.data, count: Int(d.len)))
                    : token.allocator.buffer(capacity: 0)
                feed.post(.message(epoch: d.epoch, sequence: d.seq, payload: payload))
            case Int32(CN_OPEN):
                feed.post(.open(epoch: d.epoch, next: d.seq))
            case Int32(CN_CLOSE):
                feed.post(.close(epoch: d.epoch, last: d.seq))
            default:
                feed.post(.foreign)
            }
            if !token.caughtUp, d.pending == 0 {
                token.caughtUp = true
                feed.post(.caughtUp)
            }
        }, token.toOpaque(), 2000, &empty, &noStream, &error, error.count)
        guard let sub else {
            token.release()
            let why = Self.text(error)
            if !feed.permanent, !feed.everSubscribed {
                feed.post(.failed(noStream ? .noSuchChannel : .unreachable, noStream ? "no JetStream stream holds subject \(feed.subject)" : why))
                feeds[ObjectIdentifier(feed)] = nil
            } else {
                // A configured import of a subject nothing was exported to yet: its readers are
                // answered (the channel does not exist yet) instead of waiting for it.
                if noStream, feed.permanent { feed.post(.caughtUp) }
                // A stream that does not exist yet is looked for every 2 s at most; other failures
                // back off to 10 s.
                let delay = feed.retryDelay
                feed.retryDelay = min(feed.retryDelay * 2, noStream ? .seconds(2) : .seconds(10))
                logger.notice("cannot read the JetStream subject yet; retrying", metadata: [
                    "subject": "\(feed.subject)", "error": "\(why)", "in_ms": "\(delay.nanoseconds / 1_000_000)",
                ])
                timers.scheduleTask(in: delay) { [weak self] in self?.post(.resubscribe(feed)) }
            }
            return
        }
        feed.sub = sub
        feed.token = token
        if empty {
            if !feed.permanent, !feed.everSubscribed {
                unsubscribe(feed)
                feed.post(.failed(.noSuchChannel, "nothing was exported to subject \(feed.subject)"))
                feeds[ObjectIdentifier(feed)] = nil
                return
            }
            token.takeUnretainedValue().caughtUp = true
            feed.post(.caughtUp)
        }
        feed.everSubscribed = true
        feed.retryDelay = .seconds(1)
    }

    private func unsubscribe(_ feed: ImportFeed) {
        guard let sub = feed.sub else { return }
        cn_unsubscribe(sub)
        feed.sub = nil
        feed.token?.release()
        feed.token = nil
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
