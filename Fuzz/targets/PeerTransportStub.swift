// Stands in for TandemTransport's PeerTransport (which needs libevent) so that ConsensusCodec.swift compiles alone
// into a fuzz target. Nothing calls it.
import TandemConsensus

public enum SendOutcome { case queued }

public final class PeerTransport {
    func send(type: UInt8, payload: [UInt8], to peer: NodeID) -> SendOutcome { .queued }
}
