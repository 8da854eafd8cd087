import CometChannels
import NIOCore

/// Which producers wait for which readers, and since when: the one place that decides who may
/// hold a producer (docs/SEMANTICS.md, "When a reader gets FULL"; docs/FLOW.md).
///
/// The rule: a producer's push may wait only for a reader of the **same uid** as the producer,
/// only while that reader's queue is full, and for at most `grace` per episode (from the first
/// push that waited to the first that did not). A reader of another uid never holds a producer:
/// it gets what its own queue holds, charged to its own user, then FULL. Confined to the
/// broker's loop.
final class ProducerHolds: @unchecked Sendable {  // confined to the broker's loop
    /// What `wait` decided for a producer's push.
    enum Decision: Equatable {
        /// The push waits; `firstWait` is set when this episode just began (arm the grace timer).
        case wait(firstWait: Bool)
        /// The grace is over: the push goes in, the readers that did not drain get FULL.
        case graceOver
    }

    let grace: TimeAmount
    /// Since when each waiting producer's pushes wait, by connection id.
    private var since: [UInt64: NIODeadline] = [:]
    /// Producers waiting for each reader, by the reader's connection id.
    private var waiting: [UInt64: Set<UInt64>] = [:]

    init(grace: TimeAmount) {
        self.grace = grace
    }

    /// Whether a reader of `readerUID` may hold a producer of `producerUID`.
    static func mayHold(readerUID: UInt32, producerUID: UInt32?) -> Bool {
        guard let producerUID else { return false }
        return readerUID == producerUID
    }

    /// Producers waiting now (for the simulator's checks and STATS).
    var waitingProducers: Int { since.count }

    /// The producers waiting for each reader, by connection id.
    var waitingByReader: [UInt64: Set<UInt64>] { waiting }

    /// A push of `producer` finds `readers` (each allowed to hold it) full at `now`.
    func wait(_ producer: UInt64, for readers: [UInt64], now: NIODeadline) -> Decision {
        if let start = since[producer] {
            if now - start >= grace {
                end(producer)
                return .graceOver
            }
            for reader in readers { waiting[reader, default: []].insert(producer) }
            return .wait(firstWait: false)
        }
        since[producer] = now
        for reader in readers { waiting[reader, default: []].insert(producer) }
        return .wait(firstWait: true)
    }

    /// A push of `producer` went in without waiting: its episode, if any, is over.
    func end(_ producer: UInt64) {
        guard since.removeValue(forKey: producer) != nil else { return }
        for (reader, var producers) in waiting where producers.contains(producer) {
            producers.remove(producer)
            waiting[reader] = producers.isEmpty ? nil : producers
        }
    }

    /// `reader` drained (or left): the producers that waited for it, to be let go on.
    func drained(_ reader: UInt64) -> Set<UInt64> {
        waiting.removeValue(forKey: reader) ?? []
    }

    /// A connection is gone: as a producer and as a reader.
    func forget(_ connection: UInt64) {
        end(connection)
        waiting[connection] = nil
    }
}
