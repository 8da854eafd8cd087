import Foundation
import XCTest

/// Three `nats-server` nodes on 127.0.0.1 clustered by routes, JetStream on each with its own
/// store: what an R3 stream needs. Nodes are killed, paused, wiped and restarted by PID.
final class NATSCluster: @unchecked Sendable {
    final class Node: @unchecked Sendable {
        let name: String
        let port: UInt16
        let routePort: UInt16
        let directory: URL
        var process: Process?

        init(name: String, port: UInt16, routePort: UInt16, directory: URL) {
            self.name = name
            self.port = port
            self.routePort = routePort
            self.directory = directory
        }

        var url: String { "nats://127.0.0.1:\(port)" }
        var store: URL { directory.appendingPathComponent("js") }
    }

    let nodes: [Node]
    let directory: URL
    /// The address nodes listen on: 127.0.0.1, or 0.0.0.0 for clients in other network namespaces.
    let listenAddress: String

    /// Every node's URL, the way a `[nats]` section lists them.
    var urls: String { nodes.map(\.url).joined(separator: ", ") }

    /// The URLs at another address of this host (a peer in another network namespace).
    func urls(at address: String) -> String { nodes.map { "nats://\(address):\($0.port)" }.joined(separator: ", ") }

    init(listenAddress: String = "127.0.0.1") throws {
        self.listenAddress = listenAddress
        guard NATSServerProcess.available else { throw XCTSkip("nats-server is not installed (scripts/ensure-deps test installs it)") }
        directory = try Daemon.temporaryDirectory()
        var nodes: [Node] = []
        var used: Set<UInt16> = []
        for i in 1...3 {
            var ports: [UInt16] = []
            while ports.count < 2 {
                let port = try NATSServerProcess.freePort()
                if used.insert(port).inserted { ports.append(port) }
            }
            let dir = directory.appendingPathComponent("n\(i)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            nodes.append(Node(name: "n\(i)", port: ports[0], routePort: ports[1], directory: dir))
        }
        self.nodes = nodes
    }

    /// Starts every node and waits until each accepts connections.
    func start() throws {
        for node in nodes { try start(node) }
    }

    func start(_ node: Node) throws {
        let routes = nodes.filter { $0 !== node }.map { "nats-route://127.0.0.1:\($0.routePort)" }.joined(separator: ", ")
        let config = """
            server_name: \(node.name)
            listen: \(listenAddress):\(node.port)
            jetstream { store_dir: "\(node.store.path)" }
            cluster {
              name: comet
              listen: 127.0.0.1:\(node.routePort)
              routes: [\(routes)]
            }
            """
        let file = node.directory.appendingPathComponent("nats.conf")
        try config.write(to: file, atomically: true, encoding: .utf8)
        node.process = try NATSServerProcess.launch(["-c", file.path], log: node.directory, port: node.port)
    }

    /// SIGKILL, then wait: the node is gone (its store stays unless `wipe`).
    func kill(_ node: Node, wipe: Bool = false) {
        if let process = node.process, process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        node.process = nil
        if wipe { try? FileManager.default.removeItem(at: node.store) }
    }

    /// SIGSTOP / SIGCONT: a node that stops answering (its TCP connections stay open), then heals.
    func pause(_ node: Node) { if let p = node.process { Foundation.kill(p.processIdentifier, SIGSTOP) } }
    func resume(_ node: Node) { if let p = node.process { Foundation.kill(p.processIdentifier, SIGCONT) } }

    func log(_ node: Node) -> String {
        (try? String(contentsOf: node.directory.appendingPathComponent("nats.log"), encoding: .utf8)) ?? ""
    }

    deinit {
        for node in nodes {
            resume(node)
            kill(node)
        }
        try? FileManager.default.removeItem(at: directory)
    }
}
