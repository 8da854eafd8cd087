import CometChannels
import NIOCore

/// What the deterministic simulator (CometSimulation) checks after every step: read-only views of
/// the broker's parts, for the package only.
extension Broker {
    /// Connections the broker knows.
    package var connectionCount: Int { connections.count }

    /// Usage per user and resource, as charged.
    package var usageByUser: [UInt32: [Resource: Int]] { accounts.byUser }

    /// Every (producer uid, reader uid) pair where a producer's push waits for a reader now.
    package var holdPairs: [(producer: UInt32, reader: UInt32)] {
        var pairs: [(UInt32, UInt32)] = []
        for (readerID, producers) in holds.waitingByReader {
            guard let reader = connections[readerID] else { continue }
            for producerID in producers {
                guard let producer = connections[producerID] else { continue }
                pairs.append((producer.uid, reader.uid))
            }
        }
        return pairs
    }

    /// Bytes queued for connections: outboxes and what the sockets have not taken.
    package var pendingOutputBytes: Int { connections.values.reduce(0) { $0 + $1.pendingOutput } }

    /// One line per known connection, for a failure report.
    package var connectionDescriptions: [String] {
        connections.values.map {
            "connection \($0.id) uid \($0.uid) pid \($0.identity.pid) closing \($0.isClosing) handshaken \($0.handshaken) subscriptions \($0.subscriptions.count) active \($0.context.channel.isActive)"
        }
    }
}
