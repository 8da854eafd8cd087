import ArgumentParser
import Comet
import Foundation

struct Sessions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the live sessions (never their tokens).")

    @OptionGroup var connection: ConnectionOptions

    @Flag(name: .long, help: "Print a JSON array of objects instead of a table.")
    var json = false

    func run() async throws {
        try await running {
            let client = try await connection.connect()
            let mine = client.session.id
            let sessions = try await client.sessions().filter { $0.id != mine }
            await client.close()
            if json {
                printJSON(sessions.map { s -> [String: Any] in
                    [
                        "id": String(s.id, radix: 16), "uid": s.uid, "user": UserNames.name(of: s.uid),
                        "connections": s.connections, "private_channels": s.privateChannels, "idle_ms": s.idleMilliseconds,
                    ]
                })
                return
            }
            let header = ["ID", "USER", "CONNECTIONS", "PRIVATE", "IDLE"]
            let rows = sessions.map { s in
                [String(s.id, radix: 16), UserNames.name(of: s.uid), "\(s.connections)", "\(s.privateChannels)",
                 String(format: "%.1fs", Double(s.idleMilliseconds) / 1000)]
            }
            let widths = header.indices.map { i in ([header] + rows).map { $0[i].count }.max()! }
            for row in [header] + rows {
                print(row.enumerated().map { i, cell in
                    i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                }.joined(separator: "  "))
            }
        }
    }
}

/// A file holding `ID:TOKEN`, readable by its owner only: how `comet listen --private` keeps
/// its session across restarts.
struct SessionFile {
    let path: String

    func load() -> SessionCredentials? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return SessionCredentials(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func save(_ credentials: SessionCredentials) throws {
        _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
        try Data("\(credentials)\n".utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o600)
    }
}
