import TandemHTTP
import TandemNet

extension Connection {
    /// Feeds the buffered input, chunk by chunk and without copying, to `parse` (one step of an HTTP request or
    /// response parser, which returns how many bytes it consumed: fewer than offered only when a message ended),
    /// for as long as `canContinue` allows and bytes remain. Consumed bytes are drained; the rest stays buffered
    /// for a later call (the next pipelined message, bytes held back by backpressure).
    ///
    /// `canContinue` is asked before every step, so a caller stops at the end of a message (one message at a
    /// time), when its state moved on during an event (an exchange ended, a tunnel began), or when the other side
    /// is backed up (it may pause reading as it says no). A step that consumes nothing ends the walk.
    ///
    /// The walk starts again while it made progress, input remains and the caller goes on (checked first, so a
    /// caller that stopped at the end of its message costs no second walk): an event handler may end an exchange and
    /// ask for the next request while this walk is running, and its nested call finds the input busy and returns
    /// at once; the pipelined request is then parsed here. The parser is reached through `parse` instead of being
    /// passed `inout` for the same reason: the nested call must not begin a second access to it.
    ///
    /// Throws the first parse error, after the bytes before it are drained; the parser is then failed and the
    /// caller answers or closes.
    func parseInput(
        while canContinue: () -> Bool,
        parse: (UnsafeRawBufferPointer) throws(HTTPParseError) -> Int
    ) throws(HTTPParseError) {
        var failure: HTTPParseError?
        var progressed = true
        while progressed && failure == nil && inputCount > 0 && canContinue() {
            progressed = false
            consumeInput { chunk in
                var offset = 0
                while offset < chunk.count && canContinue() {
                    let used: Int
                    do throws(HTTPParseError) {
                        used = try parse(UnsafeRawBufferPointer(rebasing: chunk[offset...]))
                    } catch {
                        failure = error
                        break
                    }
                    precondition(used >= 0 && offset + used <= chunk.count, "a parse step consumed outside its chunk")
                    guard used > 0 else { break }
                    offset += used
                    progressed = true
                }
                return offset
            }
        }
        if let failure { throw failure }
    }
}
