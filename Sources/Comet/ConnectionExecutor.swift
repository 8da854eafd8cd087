import NIOCore

/// A task executor that runs jobs on a connection's event loop: a task that prefers it
/// (`Task(executorPreference: client.executor)`, `withTaskExecutorPreference(client.executor)`)
/// sends its requests and is resumed with their answers on the thread that does the connection's
/// I/O, without a hop to another thread each way. For latency-critical loops (awaited round
/// trips); the job must not block, or it holds up the connection (and any other on that loop).
public final class ConnectionExecutor: TaskExecutor, @unchecked Sendable {  // immutable
    let eventLoop: EventLoop

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

extension CometClient {
    /// The connection's event loop as a task executor (see `ConnectionExecutor`).
    public var executor: ConnectionExecutor { ConnectionExecutor(eventLoop: eventLoop) }
}
