import NIOPosix

/// Tells a `CometServer` when a turn (tick) of its event loop ends, so that work postponed "to
/// the next turn" really lets the loop poll its sockets first: NIO runs every task scheduled
/// during a tick in that same tick, so a task that schedules its own follow-up never yields to
/// I/O by itself (`LoopWaker` wakes the loop for that work). Give it to the event loop group
/// (`metricsDelegate:`) and to the server.
public final class LoopTicks: NIOEventLoopMetricsDelegate, @unchecked Sendable {  // used on its loop's thread only
    /// Set and called on the loop's thread only (with a locked box here, comet-bench measured
    /// ~150 µs more latency per message; the cause was not found).
    private var onTick: (@Sendable () -> Void)?

    public init() {}

    public func processedTick(info: NIOEventLoopTickInfo) {
        onTick?()
    }

    /// Calls `body` at the end of every tick. Call it on the loop.
    func observe(_ body: @escaping @Sendable () -> Void) {
        onTick = body
    }
}
