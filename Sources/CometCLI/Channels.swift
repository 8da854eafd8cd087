import ArgumentParser
import Comet
import CometWire

struct Channels: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the live channels.")

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await running {
            let client = try await connection.connect()
            let channels = try await client.channels()
            await client.close()
            let header = ["NAME", "SCOPE", "OWNER", "SIZE", "BUFFERED", "SUBSCRIBERS", "LAST", "KIND", "EPOCH"]
            let rows = channels.map { c in
                [c.name, c.scope == 0 ? "site" : "client", UserNames.column(c.owner), "\(c.size)", "\(c.buffered)",
                 "\(c.subscribers)", "\(c.lastSequence)", c.kind.name, String(c.epoch, radix: 16)]
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
