import Comet
import CometFederation
import CometWire
import Logging
import NIOCore

/// One `[import]` rule during one connection to cometd: reads the JetStream subject (an
/// `ImportFeed` of the server's link) and feeds the local import with MIRROR, MIRROR_PUSH and
/// MIRROR_STATE, in the order the subject delivers.
///
/// The subject's state decides what local readers see: a new epoch → MIRROR (readers of the old
/// one get RESET); messages → MIRROR_PUSH with their origin's numbers (cometd skips those it has
/// and turns a jump into FULL for readers that needed the gap — a jump is passed on only once a
/// fresh read of the subject shows it again, `ImportOrder`); a close marker → CLOSED after
/// the last message; everything the stream held read → live. When the subject cannot be read
/// for `stallAfter` (connection lost, stream gone, subscription in trouble, or never read since
/// this connection began), the import is declared stalled: readers that have every message are
/// told (FAILED `UPSTREAM_UNREACHABLE`) instead of waiting silently, and go on once it is back.
actor Importer {
    let rule: ImportRule
    private let client: CometClient
    private let link: NATSLink
    private let logger: Logger
    private let loop: EventLoop
    private let stallAfter: TimeAmount
    private var feed: ImportFeed?
    private var events: AsyncStream<[FeedEvent]>.Continuation?

    private var handle: UInt64?
    private var epoch: UInt64 = 0
    /// The last sequence cometd has (or was sent) of `epoch`.
    private var last: UInt64 = 0
    private var batch: [ByteBuffer] = []
    private var batchBytes = 0
    private var batchFirst: UInt64 = 0
    /// Whether what the subject delivers is in order, and what to do when it is not.
    private var order = ImportOrder()
    /// Since when the subject has not been read, and why (nil: reading).
    private var troubleSince: NIODeadline? = .now()
    private var trouble = "the JetStream subject has not been read yet"
    private var stalled = false
    private var foreign: UInt64 = 0
    private var stopped = false

    /// Largest MIRROR_PUSH body, well under every daemon's frame limit.
    private let maxBatchBytes: Int

    init(rule: ImportRule, client: CometClient, link: NATSLink, loop: EventLoop, logger: Logger) {
        self.rule = rule
        self.loop = loop
        self.client = client
        self.link = link
        self.logger = logger
        self.stallAfter = .milliseconds(rule.stallAfterMilliseconds)
        self.maxBatchBytes = max(4096, min(1 << 20, Int(client.server.maxFrameSize) / 2))
    }

    /// Declares the import, then feeds it until `stop()`.
    func run() async throws {
        let reply = try await client.mirror(rule.localName, epoch: 0, size: rule.size, newest: rule.newest)
        handle = reply.mirror
        let (stream, continuation) = AsyncStream<[FeedEvent]>.makeStream()
        events = continuation
        let feed = ImportFeed(subject: rule.subject, permanent: true, loop: loop) { continuation.yield($0) }
        self.feed = feed
        link.add(feed)
        logger.info("importing", metadata: ["channel": "\(rule.localName)", "subject": "\(rule.subject)", "nats": "\(link.server.url)"])
        for await batch in stream {
            for event in batch { try await apply(event) }
            try flush()
        }
    }

    /// Stops reading the subject (the connection to cometd ended).
    func stop() {
        stopped = true
        if let feed { link.remove(feed) }
        feed = nil
        events?.finish()
    }

    private func apply(_ event: FeedEvent) async throws {
        switch event {
        case .restarted:
            order.restarted()
        case .open(let epoch, let next):
            guard !order.ignoresEvents else { return }
            if epoch != self.epoch { try await declare(epoch: epoch, next: next) }
        case .message(let epoch, let sequence, let payload):
            guard !order.ignoresEvents else { return }
            if epoch != self.epoch { try await declare(epoch: epoch, next: sequence) }
            switch order.admit(sequence, after: last) {
            case .ignore, .duplicate:
                return
            case .refetch:
                try flush()
                refetch(jumpingTo: sequence)
                return
            case .takeAcrossGap:
                logger.warning("the JetStream stream lacks messages of the import: readers that need them get FULL", metadata: [
                    "channel": "\(rule.localName)", "epoch": "\(epoch)", "after": "\(last)", "next": "\(sequence)",
                ])
            case .take:
                break
            }
            if !batch.isEmpty, batchFirst + UInt64(batch.count) != sequence || batchBytes + payload.readableBytes + 4 > maxBatchBytes {
                try flush()
            }
            guard payload.readableBytes + 64 <= Int(client.server.maxFrameSize) else {
                // Local readers could not take it in one frame: a gap they see as FULL.
                logger.warning("skipping an imported message larger than cometd's frame limit", metadata: [
                    "channel": "\(rule.localName)", "sequence": "\(sequence)", "bytes": "\(payload.readableBytes)",
                ])
                last = sequence
                return
            }
            if batch.isEmpty { batchFirst = sequence }
            batch.append(payload)
            batchBytes += payload.readableBytes + 4
            last = sequence
        case .close(let epoch, let lastSequence):
            guard !order.ignoresEvents else { return }
            try flush()
            guard epoch == self.epoch, let handle else { return }
            // Closed after a message not read yet: the same jump as a message's.
            switch order.admit(lastSequence + 1, after: last) {
            case .ignore: return
            case .refetch:
                refetch(jumpingTo: lastSequence + 1)
                return
            case .take, .duplicate, .takeAcrossGap: break
            }
            watch(client.mirrorState(handle, .closed, last: lastSequence), "MIRROR_STATE closed")
        case .caughtUp:
            guard !order.ignoresEvents else { return }
            try flush()
            troubleSince = nil
            if stalled { logger.notice("import reads its subject again", metadata: ["channel": "\(rule.localName)"]) }
            stalled = false
            if let handle { watch(client.mirrorState(handle, .live), "MIRROR_STATE live") }
        case .trouble(let why):
            if troubleSince == nil { troubleSince = .now() }
            trouble = why
        case .foreign:
            foreign += 1
            if foreign == 1 {
                logger.notice("skipping messages without Comet-Epoch/Comet-Seq headers", metadata: ["subject": "\(rule.subject)"])
            }
        case .failed(_, let why):
            // Only imports a reader asked for fail; a configured one keeps trying.
            if troubleSince == nil { troubleSince = .now() }
            trouble = why
        }
    }

    /// The origin is in `epoch` now: MIRROR names it, and feeding goes on after what cometd has.
    private func declare(epoch: UInt64, next: UInt64) async throws {
        try flush()
        let reply = try await client.mirror(rule.localName, epoch: epoch, next: next, size: rule.size, newest: rule.newest)
        handle = reply.mirror
        self.epoch = epoch
        // A new epoch for cometd starts at `next` (nothing before it is owed to anyone).
        last = reply.lastSequence > 0 ? reply.lastSequence : (next > 0 ? next - 1 : 0)
        logger.info("import epoch", metadata: ["channel": "\(rule.localName)", "epoch": "\(epoch)", "after": "\(last)"])
    }

    /// A jump in the numbers, not seen before: read the subject again from its start, to tell a
    /// loss in transit (the stream has the messages) from a gap in the stream.
    private func refetch(jumpingTo sequence: UInt64) {
        logger.notice("a jump in the import's numbers; reading the JetStream subject again from its start", metadata: [
            "channel": "\(rule.localName)", "epoch": "\(epoch)", "after": "\(last)", "next": "\(sequence)",
        ])
        if let feed { link.resubscribe(feed) }
    }

    private func flush() throws {
        guard !batch.isEmpty, let handle else { return }
        watch(client.mirrorPush(handle, first: batchFirst, batch), "MIRROR_PUSH")
        batch = []
        batchBytes = 0
    }

    /// A request cometd refused means the bridge's view of the import is wrong: the connection
    /// is closed, and the next one declares everything again.
    private nonisolated func watch(_ future: EventLoopFuture<Void>, _ what: String) {
        let client = self.client
        let logger = self.logger
        let name = rule.localName
        future.whenFailure { error in
            guard error is CometError else { return }
            logger.warning("cometd refused a request of the import; starting over", metadata: [
                "channel": "\(name)", "request": "\(what)", "error": "\(error)",
            ])
            Task { await client.close() }
        }
    }

    /// What STATS shows of this import from the bridge's side.
    func counters() -> ImportCounters {
        let reason = troubleSince == nil ? "" : trouble
        return ImportCounters(
            name: rule.localName, state: stalled ? .stalled : (troubleSince == nil ? .live : .catchingUp), fed: handle != nil, epoch: epoch,
            lastSequence: last, readers: 0, server: link.server.urls.joined(separator: ","), subject: rule.subject, foreign: foreign,
            reason: reason)
    }

    /// Called every second: a subject unread for `stallAfter` makes the import stalled.
    func checkStall() {
        guard !stopped, !stalled, let since = troubleSince, NIODeadline.now() - since >= stallAfter, let handle else { return }
        stalled = true
        let seconds = Double(stallAfter.nanoseconds) / 1e9
        let reason = "comet-bridge has not read NATS subject \(rule.subject) for \(seconds) s: \(trouble)"
        logger.warning("import stalled", metadata: ["channel": "\(rule.localName)", "reason": "\(trouble)"])
        watch(client.mirrorState(handle, .stalled, last: last, reason: reason), "MIRROR_STATE stalled")
    }
}
