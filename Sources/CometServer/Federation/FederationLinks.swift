import CometWire

/// The broker's links to other daemons (docs/FEDERATION.md): unix: relays, and the imports
/// bridges feed (MIRROR). Confined to the broker's loop; the operations on them are in
/// `Broker+External.swift` and `Broker+Mirrors.swift`.
final class FederationLinks: @unchecked Sendable {  // confined to the broker's loop
    /// External channels by (upstream, name, newest).
    var relays: [RelayKey: Relay] = [:]
    /// Imports by local name.
    var mirrors: [String: MirrorFeed] = [:]
    /// Imports by handle.
    var mirrorHandles: [UInt64: MirrorFeed] = [:]
    /// The last report of each bridge connected (BRIDGE_REPORT), by connection.
    var reports: [UInt64: BridgeReport] = [:]
    private var nextMirror: UInt64 = 1

    /// A handle for a local mirror of an external channel, or for an import (bit 62 set: never a
    /// site channel's).
    func nextMirrorID() -> UInt64 {
        defer { nextMirror += 1 }
        return (1 << 62) | nextMirror
    }
}
