// comet-line-producer CHANNEL SIZE < lines
//
// The Swift producer of scripts/systemd-faults: creates CHANNEL (a ring of SIZE messages) and
// pushes each line of standard input with `push(contentsOf:)` (pipelined, coalesced) over a
// client that reconnects by itself; exits 0 once every line is in, 1 on any failure.
import Comet
import Foundation

let arguments = CommandLine.arguments
guard arguments.count >= 3, let size = Int(arguments[2]) else {
    FileHandle.standardError.write(Data("usage: comet-line-producer CHANNEL SIZE < lines\n".utf8))
    exit(2)
}

/// Standard input's lines, read on a thread of their own.
let lines = AsyncStream<[UInt8]>(bufferingPolicy: .unbounded) { continuation in
    Thread.detachNewThread {
        while let line = readLine(strippingNewline: true) { continuation.yield(Array(line.utf8)) }
        continuation.finish()
    }
}

do {
    let client = try await CometClient.connect(reconnect: .default)
    let producer = try await client.create(arguments[1], size: size)
    let last = try await producer.push(contentsOf: lines)
    FileHandle.standardError.write(Data("comet-line-producer: last line is message \(last)\n".utf8))
    await client.close()
} catch {
    FileHandle.standardError.write(Data("comet-line-producer: \(error)\n".utf8))
    exit(1)
}
