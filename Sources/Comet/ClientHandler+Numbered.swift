import CometWire
import NIOCore

/// Numbered pushes (PUSH_NUMBERED): each is kept in its channel's `PushLedger` until answered,
/// and sent again after a reconnect, before anything new.
extension ClientHandler {
    /// Numbers and sends `count` messages laid out in `messages` (`u32 length`, bytes, each) to
    /// `channel`; while reconnecting they wait in the ledger and go out once the channel is
    /// taken back.
    func sendNumbered(channel: UInt64, count: UInt32, messages: ByteBuffer, completion: @escaping Completion) {
        let ledger = ledgers[channel] ?? PushLedger()
        ledgers[channel] = ledger
        let entry = ledger.record(count: count, messages: messages, completion: completion)
        if let reconnection, reconnection.isReconnecting { return }
        transmit(entry, of: channel, ledger)
    }

    /// Sends again every push of `channel` that has no answer, in order (after its ADOPT).
    func resendNumbered(_ channel: UInt64) {
        guard let ledger = ledgers[channel] else { return }
        for entry in ledger.unanswered() { transmit(entry, of: channel, ledger) }
    }

    /// Settles with `error` the numbered pushes still waiting, of every channel but `kept` (all:
    /// the daemon can no longer take them).
    func failNumbered(except kept: Set<UInt64> = [], _ error: Error) {
        for (channel, ledger) in ledgers where !kept.contains(channel) {
            ledgers[channel] = nil
            for completion in ledger.takeAll() { completion(.failure(error)) }
        }
    }

    /// Forgets a channel's ledger once it holds nothing (the channel closed).
    func forgetLedger(_ channel: UInt64) {
        if ledgers[channel]?.isEmpty == true { ledgers[channel] = nil }
    }

    private func transmit(_ entry: PushLedger.Entry, of channel: UInt64, _ ledger: PushLedger) {
        let ticket = Ticket()
        sendNow(completion: { [self] result in
            let retrying = reconnection.map { $0.isReconnecting && !$0.closedByUser } ?? false
            for (completion, outcome) in ledger.answered(entry, requestID: ticket.id, result, retrying: retrying) {
                completion(outcome)
            }
        }) { id, out in
            ticket.id = id
            entry.sentAs = id
            Request.encodePushBatch(
                id: id, channel: channel, number: entry.number, count: entry.count, messages: entry.messages, into: &out)
        }
    }
}

/// The request id a frame was given, for its completion.
private final class Ticket {
    var id: UInt32?
}
