import ArgumentParser
import Comet
import CometWire
import Foundation

struct Channels: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the live channels.")

    @OptionGroup var connection: ConnectionOptions

    @Flag(name: .long, help: "Print a JSON array of objects instead of a table.")
    var json = false

    func run() async throws {
        try await running {
            let client = try await connection.connect()
            let channels = try await client.channels()
            await client.close()
            if json {
                printJSON(channels.map { c -> [String: Any] in
                    [
                        "name": c.name, "scope": c.scope == 0 ? "site" : "client", "kind": c.kind.name,
                        "owner_uid": c.owner.uid, "owner_gid": c.owner.gid, "owner": UserNames.column(c.owner),
                        "size": c.size, "buffered": c.buffered, "subscribers": c.subscribers,
                        "last_sequence": c.lastSequence, "epoch": "\(c.epoch)", "origin": c.imported ? "import" : "local",
                        "rule": c.rule.isEmpty ? NSNull() : c.rule as Any,
                        "rule_allows_owner": c.standing == .unruled ? NSNull() : (c.standing == .allowed) as Any,
                    ]
                })
                return
            }
            let header = ["NAME", "SCOPE", "OWNER", "SIZE", "BUFFERED", "SUBSCRIBERS", "LAST", "KIND", "ORIGIN", "EPOCH", "RULE"]
            let rows = channels.map { c in
                [c.name, c.scope == 0 ? "site" : "client", UserNames.column(c.owner), "\(c.size)", "\(c.buffered)",
                 "\(c.subscribers)", "\(c.lastSequence)", c.kind.name, c.imported ? "import" : "local", "\(c.epoch)", Self.rule(c)]
            }
            let widths = header.indices.map { i in ([header] + rows).map { $0[i].count }.max()! }
            for row in [header] + rows {
                let cells = row.enumerated().map { i, cell in
                    i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                }
                print(cells.joined(separator: "  "))
            }
        }
    }
}

extension Channels {
    /// RULE column: the policy rule that let the channel exist, `-` when none decides its name
    /// (first come, first served), and a warning when the rule no longer lets its owner.
    static func rule(_ c: ChannelInfo) -> String {
        switch c.standing {
        case .unruled: return c.rule.isEmpty ? "-" : c.rule
        case .allowed: return c.rule
        case .notAllowed: return c.rule + " (owner not allowed: readers must pin it)"
        }
    }
}

/// Prints `value` as one JSON document (keys sorted) on standard output.
func printJSON(_ value: Any) {
    guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
    print(String(decoding: data, as: UTF8.self))
}
