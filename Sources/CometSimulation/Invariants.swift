import CometChannels
import CometServer
import NIOCore

/// The invariants checked after every step (docs/FLOW.md, "The simulator").
extension Simulation {
    /// Longest a request of a peer that always reads may wait for its answer (virtual time): the
    /// reader grace a push may be held for, and the time a slow peer needs to read what is
    /// queued before the answer.
    func answerBound(_ peer: SimPeer) -> UInt64 {
        let grace = UInt64(configuration.readerGrace.nanoseconds)
        switch peer.readMode {
        case .fast: return grace + 4_000_000_000
        default: return grace + 30_000_000_000
        }
    }

    func checkInvariants() throws(SimulationFailure) {
        report.invariantChecks += 1
        // 1. Every request of a peer that reads is answered within a bounded time.
        for peer in peers where peer.alwaysReads && !peer.ended {
            for (id, sent) in peer.outstanding where now - sent.sentAt > answerBound(peer) {
                throw fail("peer \(peer.id) (\(peer.readMode), uid \(peer.uid)) waits \((now - sent.sentAt) / 1_000_000) ms for request \(id) (\(sent.kind)): no progress")
            }
        }
        // 2. A producer waits only for readers of its own uid.
        let pairs = broker.holdPairs
        if !pairs.isEmpty { report.holds += 1 }
        for pair in pairs where pair.producer != pair.reader {
            throw fail("a producer of uid \(pair.producer) waits for a reader of uid \(pair.reader)")
        }
        // 3. A protected mapped reader overtaken in its ring is detached (RING_DETACHED) or told
        // FULL: it is never left waiting.
        for peer in peers where peer.alwaysReads && !peer.ended {
            for (sub, reading) in peer.readings where !reading.cutOff {
                guard reading.ring != nil, let since = reading.overtakenSince, now - since > answerBound(peer) else { continue }
                throw fail("peer \(peer.id) (\(peer.readMode), uid \(peer.uid)) subscription \(sub) ('\(reading.name)'): overtaken in its ring \((now - since) / 1_000_000) ms ago, neither detached nor told FULL")
            }
        }
        // 4. Quotas: what is charged with `charge` never passes them.
        for (uid, usage) in broker.usageByUser {
            for resource in [Resource.connections, .channels, .subscriptions, .sessions, .timeoutWaits, .unfinishedFrameBytes] {
                let used = usage[resource] ?? 0
                if used < 0 { throw fail("uid \(uid) is charged \(used) \(resource)") }
                if uid != 0, used > configuration.quotas.perUser(resource) {
                    throw fail("uid \(uid) holds \(used) \(resource), over its quota of \(configuration.quotas.perUser(resource))")
                }
            }
        }
    }

    /// Every peer leaves; once the session grace is over, nothing may be left charged, queued or
    /// known. Then the run goes on with new peers.
    func drainCheck() throws(SimulationFailure) {
        report.drainChecks += 1
        for peer in peers where peer.socket.isOpen {
            peer.channel.close(promise: nil)
        }
        loop.run()
        peers = []
        let grace = configuration.sessionGrace.nanoseconds + configuration.readerGrace.nanoseconds + 2_000_000_000
        var waited: Int64 = 0
        while waited < grace {
            loop.advanceTime(by: .milliseconds(100))
            waited += 100_000_000
        }
        guard broker.connectionCount == 0 else { throw fail("\(broker.connectionCount) connections known after every peer left: \(broker.connectionDescriptions)") }
        guard broker.pendingOutputBytes == 0 else { throw fail("\(broker.pendingOutputBytes) bytes queued after every peer left") }
        for (uid, usage) in broker.usageByUser {
            for (resource, used) in usage where used != 0 {
                throw fail("uid \(uid) is still charged \(used) \(resource) after every peer left")
            }
        }
        ledger = [:]
        unverified = [:]
    }
}
