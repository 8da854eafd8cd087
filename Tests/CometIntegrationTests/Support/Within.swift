import Foundation

/// `within` ran out of time.
struct TimedOut: Error, CustomStringConvertible {
    let seconds: Double
    let what: String
    var description: String { "\(what) did not finish within \(seconds) s" }
}

/// Runs `body`, throwing `TimedOut` (the test fails instead of hanging the suite) when it has not
/// finished after `seconds`; `body` is cancelled then.
func within<T: Sendable>(_ seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let result = first else { throw TimedOut(seconds: seconds, what: what) }
        return result
    }
}
