import CometFederation

/// The broker's links to other daemons and to NATS JetStream (docs/FEDERATION.md): unix: relays,
/// NATS servers in use, exported channels, imports. Confined to the broker's loop; the
/// operations on them are in `Broker+External.swift` and `Broker+NATS.swift`.
final class FederationLinks: @unchecked Sendable {  // confined to the broker's loop
    /// External channels by (upstream, name, newest).
    var relays: [RelayKey: Relay] = [:]
    /// NATS servers in use, by URL.
    var natsLinks: [String: NATSLink] = [:]
    /// Site channels mirrored to NATS, by channel id: the link that publishes each.
    var exported: [UInt64: NATSLink] = [:]
    /// Imports readers asked for, by (server, subject, newest).
    var natsRelays: [NATSRelayKey: NATSRelay] = [:]
    /// Config-declared imports, by local name.
    var imports: [String: NATSRelay] = [:]
    private var nextMirror: UInt64 = 1

    /// A handle for a local mirror of an external channel (bit 62 set: never a site channel's).
    func nextMirrorID() -> UInt64 {
        defer { nextMirror += 1 }
        return (1 << 62) | nextMirror
    }
}
