// Stands in for TandemTransport's PeerTransport class (which needs libevent), which TandemTransport.swift names in
// its delegate protocol, so that the handshake target compiles TandemTransport.swift without PeerTransport.swift.
// Nothing calls it.
public final class PeerTransport {}
