import NIOCore

/// What the link needs to know to export one channel.
public struct ExportTarget: Sendable, Hashable {
    /// The local channel name.
    public var name: String
    public var subject: String
    public var stream: String
    public var storage: StreamStorage
    /// The channel's ring size: the stream keeps as many messages (plus its markers), and the
    /// export buffers as many while JetStream has not taken them.
    public var size: Int
    public var maxInFlight: Int
    /// A newest channel: skipping to the latest value is its nature, not a loss.
    public var newest: Bool
    /// JetStream stream replicas.
    public var replicas: Int

    public init(
        name: String, subject: String, stream: String, storage: StreamStorage, size: Int, maxInFlight: Int, newest: Bool = false,
        replicas: Int = 1
    ) {
        self.newest = newest
        self.replicas = replicas
        self.name = name
        self.subject = subject
        self.stream = stream
        self.storage = storage
        self.size = size
        self.maxInFlight = maxInFlight
    }
}

/// Counters of one exported channel, for STATS and logs.
public struct ExportStats: Sendable, Hashable {
    public var name: String
    public var subject: String
    public var epoch: UInt64
    /// Messages handed to NATS, and acknowledged by JetStream (stored or already there).
    public var published: UInt64 = 0
    public var acknowledged: UInt64 = 0
    /// Messages evicted from the channel's ring before they reached JetStream: remote readers
    /// that needed them get FULL.
    public var missed: UInt64 = 0
    /// Messages buffered and not yet acknowledged.
    public var backlog: UInt64 = 0
    public var connected = false
    public var stream = ""
    public var replicas = 1
    /// Why the export makes no progress now (nil when it does).
    public var failure: String?
}

/// A publish awaiting its acknowledgement: what it is (CN_MESSAGE, CN_OPEN, CN_CLOSE) and the
/// sequence number it carries.
struct InFlight: Hashable {
    let event: Int32
    let sequence: UInt64
}

/// What a publish in flight stands for: the generation it was sent under (acknowledgements of an
/// older one are stale) and how many messages it carries (a run carries several).
struct Sent {
    let generation: Int
    let count: UInt64
}

/// One exported channel epoch, as the link's worker keeps it: the last `size` messages (the
/// same buffers as the channel's ring), what was published and acknowledged.
final class ExportState {
    let target: ExportTarget
    let epoch: UInt64
    /// The last messages, oldest first from `start`; `firstSequence` numbers `window[start]`.
    private var window: [ByteBuffer] = []
    private var start = 0
    private(set) var firstSequence: UInt64
    /// The next message to send to NATS.
    var nextToPublish: UInt64
    /// Set when the channel closed: its last sequence number.
    var closedAt: UInt64?
    var openPublished = false
    var closePublished = false
    var closeAcknowledged = false
    /// The stream sequence of the last message this export sent (or found in the stream): the
    /// next publish expects it (Nats-Expected-Last-Sequence). Nil when not known (an empty or
    /// purged stream): one message goes alone, and its acknowledgement tells.
    var lastStreamSequence: UInt64?
    /// Ids in flight, with the generation they were sent under (acknowledgements of an older
    /// generation are stale: a resynchronisation already accounted for them).
    var inFlight: [InFlight: Sent] = [:]
    var generation = 0
    var needsResync = true
    /// After a resynchronisation, one message is published alone until JetStream takes it: a
    /// stream that refuses everything costs one publish per attempt, not a window's worth.
    var probing = true
    /// Resynchronisations in a row that led to no acknowledged message, and when the next may run.
    private(set) var fruitless = 0
    private(set) var retryAt = NIODeadline.uptimeNanoseconds(0)
    /// Why the last attempt failed (for logs and STATS).
    var lastFailure: String?
    /// Sequence acknowledged last (in order).
    var acknowledgedThrough: UInt64 = 0
    var stats: ExportStats

    init(target: ExportTarget, epoch: UInt64, next: UInt64) {
        self.target = target
        self.epoch = epoch
        self.firstSequence = next
        self.nextToPublish = next
        self.stats = ExportStats(name: target.name, subject: target.subject, epoch: epoch)
        self.stats.stream = target.stream
        self.stats.replicas = target.replicas
    }

    var count: Int { window.count - start }
    /// Payload bytes the window holds.
    private(set) var bytes = 0
    /// The sequence the next pushed message gets.
    var endSequence: UInt64 { firstSequence + UInt64(count) }

    subscript(sequence: UInt64) -> ByteBuffer? {
        guard sequence >= firstSequence, sequence < endSequence else { return nil }
        return window[start + Int(sequence - firstSequence)]
    }

    /// Appends messages numbered from `first` (a gap, when the ring evicted some of a batch before
    /// they were handed over, counts as missed) and drops what passes the window.
    func append(first: UInt64, _ payloads: [ByteBuffer]) {
        if first > endSequence {
            // Messages the export never saw: the stream will not have them.
            if nextToPublish < first {
                if !target.newest { stats.missed += first - max(nextToPublish, firstSequence) }
                nextToPublish = first
            }
            window = []
            start = 0
            bytes = 0
            firstSequence = first
        }
        var skip = 0
        if first < endSequence { skip = Int(endSequence - first) }
        guard skip < payloads.count else { return }
        window.append(contentsOf: payloads[skip...])
        bytes += payloads[skip...].reduce(0) { $0 + $1.readableBytes }
        let excess = count - max(1, target.size)
        if excess > 0 {
            let evictedEnd = firstSequence + UInt64(excess)
            if nextToPublish < evictedEnd {
                if !target.newest { stats.missed += evictedEnd - nextToPublish }
                nextToPublish = evictedEnd
            }
            bytes -= window[start..<(start + excess)].reduce(0) { $0 + $1.readableBytes }
            start += excess
            firstSequence = evictedEnd
            if start > 4096, start * 2 > window.count {
                window.removeFirst(start)
                start = 0
            }
        }
    }

    /// After a resynchronisation found the stream holding this epoch up to `stored` (nil: the
    /// stream holds nothing of this epoch), publishing goes on after it.
    func resume(after stored: UInt64?) {
        generation += 1
        inFlight = [:]
        needsResync = false
        probing = true
        let from = stored.map { $0 + 1 } ?? firstSequence
        if from < firstSequence {
            if !target.newest { stats.missed += firstSequence - from }
            nextToPublish = firstSequence
        } else {
            nextToPublish = min(from, endSequence)
        }
        if let stored { acknowledgedThrough = max(acknowledgedThrough, stored) }
    }

    /// An attempt made no progress: the next waits 250 ms, doubled each time up to 30 s.
    /// Returns the delay.
    @discardableResult
    func attemptFailed(_ reason: String, now: NIODeadline = .now()) -> TimeAmount {
        fruitless += 1
        lastFailure = reason
        let delay = TimeAmount.milliseconds(min(30_000, 250 << min(fruitless - 1, 7)))
        retryAt = now + delay
        return delay
    }

    /// The link connected again: resynchronise at once.
    func reconnected() {
        needsResync = true
        retryAt = .uptimeNanoseconds(0)
    }

    /// JetStream took a message: the export makes progress again.
    func progressed() {
        probing = false
        fruitless = 0
        lastFailure = nil
    }

    /// Whether everything up to the close marker was acknowledged.
    var isFinished: Bool { closeAcknowledged }

    func snapshot(connected: Bool) -> ExportStats {
        var stats = self.stats
        stats.connected = connected
        stats.failure = lastFailure
        stats.backlog = endSequence > acknowledgedThrough + 1 ? endSequence - max(acknowledgedThrough + 1, firstSequence) : 0
        return stats
    }
}
