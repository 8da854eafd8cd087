import CFuzzShim
import CometWire
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// `comet-fuzz`: coverage-guided fuzzing of the frame decoder and of request and server-frame
/// decoding (libFuzzer). Build and run with `scripts/fuzz` (docs/SECURITY.md).
///
/// Each input is split into frames as the daemon splits a connection's bytes; every frame body
/// is decoded as a request and as a server frame. A decoded request must encode back to bytes
/// that decode to the same encoding (no value the decoder accepts may be lost or changed), and
/// the messages of a decoded batch are read in place, whole, as the daemon reads them.
@main
enum CometFuzz {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        let status = comet_fuzz_run(&argc, &argv) { data, size in
            CometFuzz.check(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        }
        if status == -1 {
            print("comet-fuzz was built without libFuzzer: build it with scripts/fuzz")
            exit(2)
        }
        exit(status)
    }

    static func check(_ bytes: UnsafeRawBufferPointer) {
        var input = ByteBuffer(bytes: bytes)
        let decoder = FrameDecoder(maxFrameSize: 1 << 16)
        while true {
            let body: ByteBuffer
            do {
                guard let next = try decoder.nextFrame(from: &input) else { return }
                body = next
            } catch {
                precondition(error.code.isFatal, "the frame decoder raised a non-fatal error")
                return
            }
            if let request = try? Request.decode(body: body) {
                switch request.operation {
                case .pushBatch(_, let batch), .pushNumbered(_, _, let batch), .mirrorPush(_, _, let batch): checkBatch(batch)
                default: break
                }
                var encoded = ByteBuffer()
                request.encode(into: &encoded)
                var again = encoded
                guard let reBody = try? decoder.nextFrame(from: &again), let reDecoded = try? Request.decode(body: reBody) else {
                    fatalError("a decoded request does not decode after encoding: \(request)")
                }
                var twice = ByteBuffer()
                reDecoded.encode(into: &twice)
                precondition(twice == encoded, "request encoding is not stable: \(request)")
            }
            _ = try? ServerFrame.decode(body: body)
        }
    }

    /// Every message of `batch` is read in place within its bytes, and the parts add up.
    static func checkBatch(_ batch: MessageBatch) {
        let (count, bytes) = batch.withPayloads { payloads in
            var count = 0, bytes = 0
            while let payload = payloads.next() {
                count += 1
                bytes += payload.count
            }
            return (count, bytes)
        }
        precondition(count == batch.count && bytes == batch.payloadBytes, "a decoded batch does not read back whole")
        let half = batch.count / 2
        let head = batch.prefix(half), rest = batch.dropFirst(half)
        precondition(head.count + rest.count == batch.count, "a batch's parts do not add up")
        precondition(head.payloadBytes + rest.payloadBytes == batch.payloadBytes, "a batch's parts do not add up")
    }
}
