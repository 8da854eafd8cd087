import CNATSBridge
import NIOCore

/// Exports on the link's worker: resynchronising with the stream, publishing in order,
/// acknowledgements, counters (docs/FEDERATION.md, "Export, step by step").
extension NATSLink {
    /// Drops the oldest exports of closed channels while they hold more than `closedBacklogLimit`.
    func boundClosedBacklog() {
        var held = exports.reduce(0) { $0 + ($1.closedAt == nil ? 0 : $1.bytes) }
        while held > Self.closedBacklogLimit, let index = exports.firstIndex(where: { $0.closedAt != nil }) {
            let dropped = exports.remove(at: index)
            held -= dropped.bytes
            logger.warning("dropped the unpublished end of a closed channel's export: NATS has not taken it and it holds too much", metadata: [
                "channel": "\(dropped.target.name)", "messages": "\(dropped.endSequence - dropped.nextToPublish)", "nats": "\(server.url)",
            ])
        }
    }

    func export(_ name: String, _ epoch: UInt64) -> ExportState? {
        exports.first { $0.target.name == name && $0.epoch == epoch }
    }

    func pump() {
        guard let link, connected else { return }
        let now = NIODeadline.now()
        for export in exports {
            if export.needsResync {
                guard now >= export.retryAt else { continue }
                if !resync(export, link) { continue }
            }
            publish(export, link)
        }
        exports.removeAll { $0.isFinished }
        if let next = exports.filter({ $0.needsResync }).map(\.retryAt).min(), !tickScheduled {
            tickScheduled = true
            timers.scheduleTask(deadline: max(next, now + .milliseconds(50))) { [weak self] in self?.post(.tick) }
        }
    }

    /// An export's attempt made no progress: logged with its reason and when it is tried again
    /// (250 ms doubling to 30 s, so a stream that refuses everything never makes a busy loop).
    func attemptFailed(_ export: ExportState, _ reason: String) {
        let delay = export.attemptFailed(reason)
        logger.warning("export makes no progress; trying again later", metadata: [
            "channel": "\(export.target.name)", "stream": "\(export.target.stream)", "reason": "\(reason)",
            "attempts": "\(export.fruitless)", "retry_ms": "\(delay.nanoseconds / 1_000_000)",
        ])
    }

    /// Finds where the stream stands for this epoch and goes on after it. False on failure.
    func resync(_ export: ExportState, _ link: OpaquePointer) -> Bool {
        let target = export.target
        var error = [CChar](repeating: 0, count: 512)
        guard cn_ensure_stream(
                link, target.stream, target.subject, Int64(max(1, target.size) + 2), target.storage == .memory, Int32(target.replicas),
                Self.duplicateWindow(server), &error, error.count) == CN_OK else {
            attemptFailed(export, "cannot prepare the JetStream stream: \(Self.text(error))")
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
            case Int32(CN_CLOSE):
                stored = last.seq
                export.closePublished = true
                export.closeAcknowledged = true
            default:
                stored = last.seq + max(1, last.count) - 1
            }
            export.lastStreamSequence = last.stream_seq
            export.resume(after: stored)
        case Int32(CN_OK), Int32(CN_NONE):
            if found == CN_OK {
                // Another epoch of the channel (or someone else's messages): this epoch replaces it.
                guard cn_purge(link, target.stream, &error, error.count) == CN_OK else {
                    attemptFailed(export, "cannot purge the JetStream stream: \(Self.text(error))")
                    return false
                }
            }
            export.openPublished = false
            export.closePublished = false
            export.lastStreamSequence = nil
            export.resume(after: nil)
        default:
            attemptFailed(export, "cannot read the JetStream stream: \(Self.text(error))")
            return false
        }
        if !export.openPublished {
            guard send(export, .open, export.nextToPublish, nil, link) else { return false }
            export.openPublished = true
        }
        return true
    }

    func publish(_ export: ExportState, _ link: OpaquePointer) {
        // Without the stream's last sequence (an empty or purged stream) one message goes alone.
        let limit = export.probing || export.lastStreamSequence == nil ? 1 : max(1, export.target.maxInFlight)
        while !export.needsResync, export.inFlight.count < limit, export.nextToPublish < export.endSequence {
            let seq = export.nextToPublish
            guard let (count, payload) = run(export, from: seq), send(export, .message, seq, payload, link, count: count) else { return }
            export.nextToPublish += count
            export.stats.published += count
        }
        if !export.needsResync, let last = export.closedAt, !export.closePublished, export.nextToPublish > last,
            export.inFlight.count < limit
        {
            if send(export, .close, last, nil, link) { export.closePublished = true }
        }
    }

    /// What the next publish from `seq` carries: the one message alone, or (when more wait and
    /// they are small) a run of the messages that wait (`MessageRun`). One NATS message per run
    /// spares JetStream a stored message, an acknowledgement and headers per comet message.
    func run(_ export: ExportState, from seq: UInt64) -> (count: UInt64, payload: ByteBuffer)? {
        guard let first = export[seq] else { return nil }
        let waiting = min(UInt64(MessageRun.maxMessages), export.endSequence - seq)
        guard waiting > 1 else { return (1, first) }
        var messages: [ByteBuffer] = []
        var size = 0
        while UInt64(messages.count) < waiting, let next = export[seq + UInt64(messages.count)],
            size + 4 + next.readableBytes <= MessageRun.maxBytes
        {
            size += 4 + next.readableBytes
            messages.append(next)
        }
        guard messages.count > 1 else { return (1, first) }
        return (UInt64(messages.count), MessageRun.encode(messages))
    }

    enum Kind { case message, open, close }

    static func id(_ kind: Kind, _ epoch: UInt64, _ seq: UInt64) -> String {
        switch kind {
        case .message: return "\(epoch)-\(seq)"
        case .open: return "\(epoch)-open"
        case .close: return "\(epoch)-close"
        }
    }

    /// Publishes one message or marker after the stream's last (`export.lastStreamSequence`,
    /// when known), with the id `Self.id` gives it (`Nats-Msg-Id`; acknowledgements are matched by
    /// it). False (and a resynchronisation pending) when nats.c refused it.
    func send(_ export: ExportState, _ kind: Kind, _ seq: UInt64, _ payload: ByteBuffer?, _ link: OpaquePointer, count: UInt64 = 1) -> Bool {
        let event: Int32
        switch kind {
        case .message: event = Int32(CN_MESSAGE)
        case .open: event = Int32(CN_OPEN)
        case .close: event = Int32(CN_CLOSE)
        }
        if !export.inFlight.isEmpty, export.lastStreamSequence == nil { return false }
        var error = [CChar](repeating: 0, count: 256)
        let expect = export.lastStreamSequence ?? 0
        // Markers keep a Nats-Msg-Id (a republished marker is dropped as a duplicate); messages
        // do not need one: Nats-Expected-Last-Sequence already refuses a resend.
        let result: Int32 = (payload ?? ByteBuffer()).withUnsafeReadableBytes { bytes in
            guard kind != .message else {
                return cn_publish(
                    link, export.target.subject, event, export.epoch, seq, count, nil, expect, bytes.baseAddress, bytes.count, &error, error.count)
            }
            return Self.id(kind, export.epoch, seq).withCString { msgID in
                cn_publish(link, export.target.subject, event, export.epoch, seq, 1, msgID, expect, bytes.baseAddress, bytes.count, &error, error.count)
            }
        }
        guard result == CN_OK else {
            export.needsResync = true
            attemptFailed(export, "publishing failed: \(Self.text(error))")
            return false
        }
        export.inFlight[InFlight(event: event, sequence: seq)] = Sent(generation: export.generation, count: count)
        export.lastStreamSequence = export.lastStreamSequence.map { $0 + 1 }
        return true
    }

    func acknowledged(_ key: InFlight, epoch: UInt64, status: Int32, jsError: Int32, text: String, streamSequence: UInt64) {
        guard let export = exports.first(where: { $0.epoch == epoch }),
            let sent = export.inFlight.removeValue(forKey: key), sent.generation == export.generation
        else { return }
        guard status == 0 else {
            let id = key.event == Int32(CN_MESSAGE) ? "\(epoch)-\(key.sequence)" : "\(epoch)-\(key.event == Int32(CN_OPEN) ? "open" : "close")"
            if !export.needsResync {
                export.needsResync = true
                if export.probing {
                    // The first message after a resynchronisation was refused: no progress.
                    attemptFailed(export, "JetStream refused message \(id): \(text) (js_error \(jsError))")
                } else {
                    logger.notice("JetStream refused a message; resynchronising", metadata: [
                        "channel": "\(export.target.name)", "id": "\(id)", "error": "\(text)", "js_error": "\(jsError)",
                    ])
                }
            }
            return
        }
        export.progressed()
        // The first message into an empty stream tells where the stream stands.
        if export.lastStreamSequence == nil, export.inFlight.isEmpty, streamSequence > 0 { export.lastStreamSequence = streamSequence }
        switch key.event {
        case Int32(CN_CLOSE):
            export.closeAcknowledged = true
        case Int32(CN_MESSAGE):
            export.stats.acknowledged += sent.count
            export.acknowledgedThrough = max(export.acknowledgedThrough, key.sequence + sent.count - 1)
        default:
            break
        }
    }

    /// Publishes the counters at most every 50 ms (a drain per batch of messages would otherwise
    /// rebuild them per batch), and once more after the last change.
    func refreshTable() {
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

    func publishTable() {
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
}
