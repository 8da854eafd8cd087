import Foundation
import Glibc

/// A Unix-socket proxy in front of a daemon, whose connections a test can cut and restore.
final class SocketProxy: @unchecked Sendable {
    let path: String
    let target: String
    private let lock = NSLock()
    private var listener: CInt = -1
    private var open: [CInt] = []

    init(path: String, target: String) throws {
        self.path = path
        self.target = target
        try restore()
    }

    /// Listens again (after `cut`).
    func restore() throws {
        unlink(path)
        let fd = try listeningSocket(path)
        lock.lock()
        listener = fd
        lock.unlock()
        Thread { self.acceptLoop(fd) }.start()
    }

    /// Closes every proxied connection and stops listening.
    func cut() {
        lock.lock()
        let all = open + [listener]
        open = []
        listener = -1
        lock.unlock()
        for fd in all { shutdown(fd, CInt(SHUT_RDWR)) }
        unlink(path)
    }

    private func acceptLoop(_ fd: CInt) {
        while true {
            let client = accept(fd, nil, nil)
            guard client >= 0 else { close(fd); return }
            let upstream = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0)
            guard RawConnection.connect(upstream, target) == 0 else {
                close(client)
                close(upstream)
                continue
            }
            lock.lock()
            open += [client, upstream]
            lock.unlock()
            Thread { Self.pump(from: client, to: upstream) }.start()
            Thread { Self.pump(from: upstream, to: client) }.start()
        }
    }

    private static func pump(from: CInt, to: CInt) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(from, &buffer, buffer.count, 0)
            if n <= 0 { break }
            var sent = 0
            while sent < n {
                let m = buffer[sent..<n].withUnsafeBytes { send(to, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
                if m <= 0 { break }
                sent += m
            }
            if sent < n { break }
        }
        shutdown(from, CInt(SHUT_RDWR))
        shutdown(to, CInt(SHUT_RDWR))
    }
}

/// A fake daemon that answers HELLO as a daemon of another protocol version would.
final class OtherVersionDaemon: @unchecked Sendable {
    let path: String
    private let fd: CInt

    /// - Parameter acceptsHello: answer HELLO with OK in protocol version 2 (a daemon that
    ///   ignores the versions offered), instead of refusing it.
    init(path: String, acceptsHello: Bool = false) throws {
        self.path = path
        fd = try listeningSocket(path, backlog: 4)
        let listener = fd
        Thread {
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { return }
                var scratch = [UInt8](repeating: 0, count: 512)
                _ = recv(client, &scratch, scratch.count, 0)
                let message = Array("this daemon speaks protocol version 2; the client offered [1]".utf8)
                var frame: [UInt8] = [0x81, 0, 0, 0, 0, 0, 1, UInt8(message.count >> 8), UInt8(message.count & 0xFF)] + message
                if acceptsHello {
                    // OK to the HELLO's id: version 2, then fields this test does not care about.
                    frame = [0x80] + Array(scratch[5..<9]) + [0, 2] + [UInt8](repeating: 0, count: 64)
                }
                let length = UInt32(frame.count)
                frame = [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)] + frame
                _ = frame.withUnsafeBytes { send(client, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
                close(client)
            }
        }.start()
    }

    deinit {
        shutdown(fd, CInt(SHUT_RDWR))
        close(fd)
        unlink(path)
    }
}
