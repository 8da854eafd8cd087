/// Whether what an import reads from its JetStream subject goes on to cometd, so that a jump in
/// an epoch's numbers is passed on only when the stream really lacks the messages.
///
/// A push consumer can lose messages in transit (a NATS server killed while it delivers) and go on
/// after them; the stream still holds them. So a jump is first taken for such a loss: the
/// subject is read again from its start (`refetch`), everything the old read still delivers is
/// ignored until the new read begins (`restarted()`), and the new read's first message beyond what
/// cometd has decides: the next one goes on as usual, a jump again is believed and passed on
/// (cometd turns it into FULL for readers that needed the gap). No I/O; the importer owns one.
public struct ImportOrder: Sendable {
    /// What to do with a message (or a close marker) read from the subject.
    public enum Verdict: Equatable, Sendable {
        /// The next one in order: pass it on.
        case take
        /// cometd has it already.
        case duplicate
        /// A jump, seen for the first time: read the subject again from its start.
        case refetch
        /// A jump a fresh read showed again: the stream lacks the messages; pass it on.
        case takeAcrossGap
        /// Left over from a read being replaced: ignore it.
        case ignore
    }

    private enum State: Equatable, Sendable {
        case reading
        /// A fresh read was asked for; the old one's events are ignored until it begins.
        case awaitingRestart
        /// A fresh read began after a jump: the next jump is believed.
        case confirming
    }

    private var state = State.reading

    public init() {}

    /// Whether events of the subject are ignored now (a fresh read was asked for and has not begun).
    public var ignoresEvents: Bool { state == .awaitingRestart }

    /// A fresh read of the subject begins: what follows comes from it.
    public mutating func restarted() {
        if state == .awaitingRestart { state = .confirming }
    }

    /// The verdict on message `sequence` of the current epoch, cometd having everything up to `last`.
    /// A close marker after message `n` is judged as `n + 1`.
    public mutating func admit(_ sequence: UInt64, after last: UInt64) -> Verdict {
        if state == .awaitingRestart { return .ignore }
        if sequence <= last { return .duplicate }
        if sequence == last + 1 {
            state = .reading
            return .take
        }
        if state == .confirming {
            state = .reading
            return .takeAcrossGap
        }
        state = .awaitingRestart
        return .refetch
    }
}
