import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Wakes the event loop from the loop itself, without a thread: a byte written into a pipe whose
/// read end the loop watches makes its next poll return at once; what waits for that wake runs in
/// the tasks of that next tick, after every socket event the poll returned. NIO does not wake a
/// loop for tasks queued on it at the end of a tick (`LoopTicks`), so this is how work for the
/// next turn gets one (`Broker.wakeForNextTurn`). Confined to the loop.
final class LoopWaker: @unchecked Sendable {  // confined to its loop
    private let eventLoop: EventLoop
    private let writeEnd: CInt
    /// A byte is in the pipe and not read yet.
    private var armed = false
    private var waiting: [@Sendable () -> Void] = []

    private init(eventLoop: EventLoop, writeEnd: CInt) {
        self.eventLoop = eventLoop
        self.writeEnd = writeEnd
    }

    /// A waker on `eventLoop`, handed to `ready` on the loop once its pipe is watched (never, if
    /// the pipe cannot be made: the caller keeps its other way to wake the loop).
    static func make(on eventLoop: EventLoop, ready: @escaping @Sendable (LoopWaker) -> Void) {
        var ends: [CInt] = [-1, -1]
        guard pipe(&ends) == 0 else { return }
        for end in ends {
            // Made on the loop, where a live upgrade's execve also happens: no exec in between.
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        let (readEnd, writeEnd) = (ends[0], ends[1])
        let waker = LoopWaker(eventLoop: eventLoop, writeEnd: writeEnd)
        NIOPipeBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(WakeReader(waker)) }
            }
            .takingOwnershipOfDescriptor(input: readEnd)
            .whenComplete { result in
                switch result {
                case .success: ready(waker)
                case .failure:
                    close(readEnd)
                    close(writeEnd)
                }
            }
    }

    /// Runs `work` at the next tick, waking the loop for it.
    func wake(then work: @escaping @Sendable () -> Void) {
        waiting.append(work)
        guard !armed else { return }
        armed = true
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }

    /// The byte was read (in the I/O of the new tick): the work runs in its tasks.
    fileprivate func woken() {
        armed = false
        let work = waiting
        waiting = []
        eventLoop.execute {
            for item in work { item() }
        }
    }

    /// Reads the wake-up bytes.
    private final class WakeReader: ChannelInboundHandler, @unchecked Sendable {  // used on its loop only
        typealias InboundIn = ByteBuffer
        private let waker: LoopWaker

        init(_ waker: LoopWaker) { self.waker = waker }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            waker.woken()
        }
    }
}
