import CometWire
import Foundation
import XCTest

/// A hostile local user: `Tests/hostile/hostile.py` run as another uid with setpriv, against a
/// real daemon, while a control client (this process, root) measures round trips and the
/// daemon's memory.
enum Hostile {
    /// The uid attacks run as (no account needed).
    static let uid: UInt32 = 4242

    static var script: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("hostile/hostile.py")
    }

    /// Runs `attack` as `uid` and returns the JSON object it printed.
    static func run(_ daemon: Daemon, _ attack: String, _ arguments: [String], uid: UInt32 = uid) throws -> [String: Any] {
        let copy = daemon.directory.appendingPathComponent("hostile.py")
        if !FileManager.default.fileExists(atPath: copy.path) {
            try FileManager.default.copyItem(at: script, to: copy)
        }
        chmod(daemon.directory.path, 0o755)
        chmod(copy.path, 0o755)
        let result = try runTool(
            "/usr/bin/setpriv",
            ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", "/usr/bin/python3", copy.path, attack, daemon.socketPath] + arguments,
            absolute: true)
        guard let line = result.stdout.split(separator: "\n").last,
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        else {
            throw DaemonFailure("attack \(attack) printed no result (status \(result.status)): \(result.stdout)\n\(result.stderr)")
        }
        return object
    }
}

/// Pings the daemon as root every 20 ms and samples its RSS, while an attack runs.
final class ControlClient: @unchecked Sendable {
    private let daemon: Daemon
    private let lock = NSLock()
    private var worstRoundTrip: TimeInterval = 0
    private var peakRSS = 0
    private var failures: [String] = []
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)

    init(_ daemon: Daemon) throws {
        self.daemon = daemon
        let connection = try RawConnection(daemon.socketPath)
        _ = try connection.hello()
        Thread.detachNewThread { [self] in
            while !lock.withLock({ stopped }) {
                let start = Date()
                do {
                    let id = connection.send(.ping)
                    _ = try connection.expectOK(id)
                } catch {
                    lock.withLock { failures.append("\(error)") }
                    break
                }
                let elapsed = Date().timeIntervalSince(start)
                let rss = daemon.residentBytes
                lock.withLock {
                    worstRoundTrip = max(worstRoundTrip, elapsed)
                    peakRSS = max(peakRSS, rss)
                }
                usleep(20_000)
            }
            done.signal()
        }
    }

    /// Stops and returns the worst round trip (seconds) and the peak RSS (bytes).
    func finish(file: StaticString = #filePath, line: UInt = #line) -> (roundTrip: TimeInterval, rss: Int) {
        lock.withLock { stopped = true }
        done.wait()
        lock.withLock {
            XCTAssertEqual(failures, [], "the control client lost the daemon", file: file, line: line)
        }
        return lock.withLock { (worstRoundTrip, peakRSS) }
    }
}

extension Daemon {
    /// VmRSS of the daemon process, in bytes.
    var residentBytes: Int {
        guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kb = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kb * 1024
    }

    /// CPU seconds the daemon has used (user + system).
    var cpuSeconds: Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        let ticks = (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
        return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
