import NIOConcurrencyHelpers
import NIOCore

/// What an import learns from its JetStream subject, delivered on the daemon's event loop.
public enum FeedEvent: Sendable {
    /// A channel epoch began; its first message is `next`.
    case open(epoch: UInt64, next: UInt64)
    case message(epoch: UInt64, sequence: UInt64, payload: ByteBuffer)
    /// The channel epoch ended after message `last`.
    case close(epoch: UInt64, last: UInt64)
    /// Everything the stream held when the subscription started has been delivered.
    case caughtUp
    /// A message without comet's headers (published by something else) was skipped.
    case foreign
    /// The import could not start (only before its first subscription).
    case failed(FeedFailure, String)
    /// The subject cannot be read now (connection lost, subscription in trouble or refused):
    /// the link keeps trying; `caughtUp` follows when it reads again.
    case trouble(String)
    /// A new subscription reads the subject from its start: every event after this one comes
    /// from it, none from the one it replaced.
    case restarted
}

/// Why an import could not start.
public enum FeedFailure: Sendable {
    /// The NATS server could not be reached.
    case unreachable
    /// No stream holds the subject, or nothing was ever exported to it.
    case noSuchChannel
}

/// One import: a JetStream subject read from its start by a link, its events handed to the
/// bridge's event loop in batches (one hop per batch, not per message).
public final class ImportFeed: @unchecked Sendable {  // inbox under `lock`; `sub`/`token`/`retry*` on the link's worker only
    public let subject: String
    /// Config-declared imports never give up; imports a reader asked for fail at once when the
    /// server or the subject is not there.
    public let permanent: Bool
    let loop: EventLoop
    private let onEvents: ([FeedEvent]) -> Void

    private let lock = NIOLock()
    private var inbox: [FeedEvent] = []
    private var hopScheduled = false

    var sub: OpaquePointer?
    var token: Unmanaged<FeedToken>?
    var everSubscribed = false
    var removed = false
    var retryDelay: TimeAmount = .seconds(1)

    /// - Parameter onEvents: called on `loop` with the events in order.
    public init(subject: String, permanent: Bool, loop: EventLoop, onEvents: @escaping ([FeedEvent]) -> Void) {
        self.subject = subject
        self.permanent = permanent
        self.loop = loop
        self.onEvents = onEvents
    }

    func post(_ event: FeedEvent) {
        let hop = lock.withLock {
            inbox.append(event)
            defer { hopScheduled = true }
            return !hopScheduled
        }
        if hop { loop.execute { self.flush() } }
    }

    func post(contentsOf events: [FeedEvent]) {
        let hop = lock.withLock {
            inbox.append(contentsOf: events)
            defer { hopScheduled = true }
            return !hopScheduled
        }
        if hop { loop.execute { self.flush() } }
    }

    private func flush() {
        let events = lock.withLock {
            hopScheduled = false
            defer { inbox = [] }
            return inbox
        }
        if !events.isEmpty { onEvents(events) }
    }
}

/// The receiver of one nats.c subscription's callbacks: a fresh one per (re)subscription, so
/// that a replaced subscription's last callbacks are told apart.
final class FeedToken: @unchecked Sendable {  // `caughtUp` is touched by one nats.c delivery thread only
    weak var feed: ImportFeed?
    var caughtUp = false
    let allocator = ByteBufferAllocator()

    init(feed: ImportFeed) { self.feed = feed }
}
