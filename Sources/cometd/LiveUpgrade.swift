import CSystemd
import CometServer
import CometState
import Glibc
import Logging
import NIOCore

/// `SIGHUP` / `systemctl reload`: cometd executes the binary on disk in its own process (same
/// PID), handing over its whole state through a memfd and every socket by inheritance
/// (docs/RESTARTS.md). The new binary is asked first whether it can take the image over
/// (`--handover-probe`, which also loads the configuration and policy); if it cannot, or `execve`
/// fails, this process goes on serving and says why.
enum LiveUpgrade {
    /// The environment variable naming the memfd that holds the image, in the new process.
    static let variable = "COMET_HANDOVER_FD"
    /// Names the socket file the previous process bound itself (removed at exit).
    static let ownedSocketVariable = "COMET_OWNED_SOCKET"

    static func takeOwnedSocketPath() -> String? {
        guard let value = getenv(ownedSocketVariable) else { return nil }
        defer { unsetenv(ownedSocketVariable) }
        return String(cString: value)
    }

    struct Refused: Error, CustomStringConvertible {
        var description: String
    }

    /// The binary to execute: the one on disk at the path this process was started from (a
    /// package upgrade replaces it; /proc then says "(deleted)" after the old path).
    static func executablePath() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return CommandLine.arguments.first }
        var path = String(decoding: buffer.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if path.hasSuffix(" (deleted)") { path.removeLast(" (deleted)".count) }
        return path
    }

    /// Asks `path` (with this process's arguments) which image formats it reads, and returns the
    /// newest of them this process writes too (an older binary, rolled back to, gets the format it
    /// reads); refuses when there is none. Waits at most `timeout` seconds.
    static func probe(_ path: String, timeout: Double = 10) throws(Refused) -> UInt16 {
        let arguments = [path, "--handover-probe"] + CommandLine.arguments.dropFirst()
        var pipeFDs: [Int32] = [-1, -1]
        guard comet_pipe_cloexec(&pipeFDs) == 0 else { throw Refused(description: "pipe: errno \(errno)") }
        defer { close(pipeFDs[0]) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        var pid: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        // The probe must not talk to the service manager in our name.
        let environment = environmentStrings().filter { !$0.hasPrefix("NOTIFY_SOCKET=") && !$0.hasPrefix("\(variable)=") }
        let envp = environment.map { strdup($0) } + [nil]
        defer { envp.forEach { free($0) } }
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, envp)
        close(pipeFDs[1])
        guard spawned == 0 else { throw Refused(description: "cannot run \(path): \(String(cString: strerror(spawned)))") }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        let clock = ContinuousClock()
        let deadline = clock.now + .milliseconds(Int(timeout * 1000))
        var status: Int32 = 0
        var exited = false
        _ = fcntl(pipeFDs[0], F_SETFL, O_NONBLOCK)
        while clock.now < deadline {
            let n = read(pipeFDs[0], &chunk, chunk.count)
            if n > 0 { output += chunk.prefix(n) }
            if waitpid(pid, &status, WNOHANG) == pid {
                exited = true
                while true {
                    let n = read(pipeFDs[0], &chunk, chunk.count)
                    guard n > 0 else { break }
                    output += chunk.prefix(n)
                }
                break
            }
            usleep(5000)
        }
        guard exited else {
            kill(pid, SIGKILL)
            _ = waitpid(pid, &status, 0)
            throw Refused(description: "\(path) --handover-probe did not answer within \(Int(timeout)) s")
        }
        let text = String(decoding: output, as: UTF8.self)
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw Refused(description: "\(path) --handover-probe failed (wait status \(status)); see its messages in the log")
        }
        // "comet-handover-formats LOW HIGH"
        let words = text.split(whereSeparator: \.isWhitespace)
        guard words.count >= 3, words[0] == "comet-handover-formats", let low = UInt16(words[1]), let high = UInt16(words[2]) else {
            throw Refused(description: "\(path) does not know live upgrades (it answered '\(text.prefix(80))')")
        }
        let format = min(high, ImageCodec.formatVersion)
        guard low <= high, ImageCodec.readableFormats.contains(format), format >= low else {
            throw Refused(description: "\(path) reads image formats \(low)...\(high), none of \(ImageCodec.readableFormats)")
        }
        return format
    }

    /// What `--handover-probe` prints.
    static var probeAnswer: String {
        "comet-handover-formats \(ImageCodec.readableFormats.lowerBound) \(ImageCodec.readableFormats.upperBound)"
    }

    /// Writes `image` into a memfd, lets it and the image's sockets be inherited, and executes
    /// `path` with this process's arguments. Returns only if that fails; everything is then as it was.
    static func execute(_ path: String, image: DaemonImage, format: UInt16 = ImageCodec.formatVersion) throws(Refused) {
        let fd: Int32
        do {
            fd = try ImageFile.write(image, named: "cometd-image", format: format)
        } catch {
            throw Refused(description: error.message)
        }
        _ = fcntl(fd, F_SETFD, 0)
        let inherited = image.listeners + image.connections.map(\.descriptor)
        for descriptor in inherited { _ = fcntl(descriptor, F_SETFD, 0) }
        setenv(variable, "\(fd)", 1)
        // The new process starts with no signal blocked (dispositions, SIGHUP's ignored one
        // included, are inherited: a second reload during the take-over is not fatal).
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
        let argv = CommandLine.arguments.map { strdup($0) } + [nil]
        execv(path, argv)
        let reason = String(cString: strerror(errno))
        argv.forEach { free($0) }
        unsetenv(variable)
        close(fd)
        for descriptor in inherited { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
        throw Refused(description: "cannot execute \(path): \(reason)")
    }

    /// In the new process: the image handed over, if any (the variable is then unset and the
    /// memfd closed). An image that cannot be read is fatal: the sockets it names are here and
    /// nobody else can serve them.
    static func takeImage() throws -> DaemonImage? {
        guard let value = getenv(variable) else { return nil }
        let text = String(cString: value)
        unsetenv(variable)
        guard let fd = Int32(text), fd >= 0 else { throw Refused(description: "\(variable)=\(text) is not a descriptor") }
        defer { close(fd) }
        return try ImageFile.read(fd)
    }

    private static func environmentStrings() -> [String] {
        var result: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            result.append(String(cString: entry))
            pointer += 1
        }
        return result
    }
}
