import ArgumentParser
import Comet

/// The `comet` tool's exit statuses (README, "comet exit codes").
enum Status {
    /// The daemon refused a request (bad name, no such channel, ...).
    static let refused = ExitCode(1)
    /// `listen`: the subscription fell behind the ring (Channel_full).
    static let full = ExitCode(2)
    /// `listen`: the channel was closed after everything was printed (Channel_closed).
    static let closed = ExitCode(3)
    /// `listen`: the channel was re-created (new epoch; sequence numbers restarted).
    static let epochChanged = ExitCode(4)
    /// Usage error (ArgumentParser's own).
    static let usage = ExitCode(64)
    /// No daemon answers at the socket.
    static let unreachable = ExitCode(69)
    /// The connection to the daemon was lost midway.
    static let lost = ExitCode(74)
    /// The daemon speaks another protocol version, or broke the protocol.
    static let protocolError = ExitCode(76)
    /// `listen --timeout`: the time ran out before --count messages.
    static let timedOut = ExitCode(5)
}

/// Prints `error` the way a person wants to read it and maps it to an exit status.
func exitStatus(for error: Error) -> ExitCode {
    switch error {
    case let e as ChannelFull:
        printError("comet: \(e)")
        return Status.full
    case let e as ChannelClosed:
        printError("comet: \(e)")
        return Status.closed
    case let e as EpochChanged:
        printError("comet: \(e)")
        return Status.epochChanged
    case let e as CometError:
        printError("comet: \(e.message) [\(e.code.name)]")
        return Status.refused
    case let e as ConnectionError:
        switch e.kind {
        case .unreachable:
            printError("comet: \(e.message)\nStart it with `cometd` (or `systemctl start cometd.socket`), or point --socket / COMET_SOCKET at its socket.")
            return Status.unreachable
        case .lost:
            printError("comet: \(e.message)")
            return Status.lost
        case .versionMismatch, .protocolViolation:
            printError("comet: \(e.message)")
            return Status.protocolError
        }
    case let e as ExitCode:
        return e
    case let e as ValidationError:
        printError("comet: \(e.message)\nSee 'comet --help'.")
        return Status.usage
    default:
        printError("comet: \(error)")
        return Status.refused
    }
}

func printError(_ text: String) {
    var stderr = StandardError()
    print(text, to: &stderr)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        FileHandle_writeStderr(string)
    }
}

import Foundation

private func FileHandle_writeStderr(_ string: String) {
    FileHandle.standardError.write(Data(string.utf8))
}
