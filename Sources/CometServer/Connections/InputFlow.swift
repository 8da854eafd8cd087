/// The input side of one connection as one state machine: whether its requests are read and
/// handled now, and if not, which single event lets them go on (docs/FLOW.md).
///
/// Every state that stops input names the event that ends it, and that event is certain to come:
/// - `waitingForOutput`: the socket is not writable, so NIO reports writability when the peer
///   reads (a peer that reads always makes progress);
/// - `yielding`: the connection handled its share of this turn of the loop; a task scheduled for
///   the next turn goes on (entered only after at least one request was handled, so a turn always
///   makes progress);
/// - `holding`: a push waits for a reader that may hold it (`HoldPolicy`); the reader's draining,
///   its leaving, or the end of the grace (a timer) goes on;
/// - `adopting`: a connection carried over a restart waits until every connection is back.
///
/// Nothing reschedules itself without one of these events. A state that is left with no input
/// pending goes back to `reading`, never to a stopped state.
struct InputFlow: Sendable, Equatable {
    enum State: Sendable, Equatable {
        /// Requests are read and handled as they arrive.
        case reading
        /// Answers are queued beyond the watermark and the socket does not take more.
        case waitingForOutput
        /// Handled its share of this turn; a task for the next turn is scheduled.
        case yielding
        /// A push waits for one of its channel's readers.
        case holding
        /// Carried over from a previous process: nothing is handled until all are back.
        case adopting
        /// Torn down: nothing more is read or handled.
        case closed
    }

    /// Why `process` stopped handling requests.
    enum Stop: Sendable, Equatable {
        /// No whole frame is left (the rest needs more bytes from the peer).
        case drained
        /// Answers are queued and the socket is not writable.
        case outputBlocked
        /// The connection's share of this turn is used.
        case turnUsed
        /// A push must wait for a reader.
        case pushHeld
    }

    /// What the handler does after an event.
    struct Actions: Sendable, Equatable {
        /// Handle the requests that are pending.
        var process = false
        /// Pass a read that NIO asked for (and that was held back) on to the socket.
        var read = false
        /// Schedule a task for the next turn of the loop.
        var scheduleTurn = false

        static let none = Actions()
    }

    private(set) var state: State
    /// NIO asked to read while input was stopped: the read is passed on when input goes on.
    private(set) var readWanted = false

    init(adopting: Bool = false) {
        state = adopting ? .adopting : .reading
    }

    /// Whether requests that arrive are handled now.
    var isHandling: Bool { state == .reading }

    /// Whether input is stopped with requests still pending (the peer must wait for them).
    var isStopped: Bool {
        switch state {
        case .waitingForOutput, .yielding, .holding, .adopting: return true
        case .reading, .closed: return false
        }
    }

    /// NIO asks to read from the socket.
    mutating func readRequested() -> Actions {
        if state == .reading { return Actions(read: true) }
        if state != .closed { readWanted = true }
        return .none
    }

    /// `process` stopped for `stop`.
    mutating func processed(_ stop: Stop) -> Actions {
        guard state != .closed, state != .adopting else { return .none }
        switch stop {
        case .drained:
            return goOn()
        case .outputBlocked:
            state = .waitingForOutput
        case .turnUsed:
            state = .yielding
            return Actions(scheduleTurn: true)
        case .pushHeld:
            state = .holding
        }
        return .none
    }

    /// The socket became writable.
    mutating func writable() -> Actions { leave(.waitingForOutput) }

    /// The task scheduled by `yielding` runs.
    mutating func nextTurn() -> Actions { leave(.yielding) }

    /// The reader a held push waited for drained or left, or the grace ended.
    mutating func holdReleased() -> Actions { leave(.holding) }

    /// Every connection carried over is back.
    mutating func adopted() -> Actions { leave(.adopting) }

    /// The event that ends `stopped` came: if that is the state, requests are handled again.
    private mutating func leave(_ stopped: State) -> Actions {
        guard state == stopped else { return .none }
        state = .reading
        return Actions(process: true)
    }

    /// The connection is torn down.
    mutating func close() {
        state = .closed
        readWanted = false
    }

    /// Input goes on: a read NIO asked for while it was stopped is passed on.
    private mutating func goOn() -> Actions {
        state = .reading
        guard readWanted else { return .none }
        readWanted = false
        return Actions(read: true)
    }
}
