// TandemStatusPage: renders the admin listener's `GET /` page, a human view of `/status`.
//
// It owns the HTML: one self-contained page (inline CSS and SVG, no external assets, no JavaScript; the page
// reloads itself with `<meta http-equiv="refresh">`) showing this node's role, term, leader, commit and applied
// index, divergence, per peer its role, link, phi, match index, lag, last contact and a chart of phi over the last
// minute, and every member as the leader sees it. It is a pure function of a `StatusPageModel`.
//
// What this node does not know is shown as "unknown", never as a number or as "never": a follower has no
// replication progress for its peers and hears only from the leader, and a zero or a "never" there would read as a
// broken peer. The leader's view (fetched by followers) is the one place where every member's lag is known.
//
// The markup is also well-formed XML (void elements self-closed), so a test can parse the whole page and any
// escaping mistake shows up as a parse error rather than as a subtly broken page.
//
// It must never touch the node: no I/O, no clock, no locks, no dependency on other Tandem modules. The caller takes
// the snapshot on the loop thread and passes it in. Every string from the model is escaped before it is written,
// because node ids and addresses come from configuration and must not be able to inject markup into an
// operator's browser.

/// Renders the admin status page.
public enum StatusPage {
    /// The span of time each phi chart covers, ending at `StatusPageModel.nowMs`.
    public static let chartWindowMs: Int64 = 60_000
    /// Bounds of the refresh interval: at least a second so the page cannot hammer the admin listener.
    public static let refreshSecondsRange = 1...3600

    /// One complete HTML document for `model`, reloading itself every `refreshSeconds` (1...3600; anything else is
    /// a programmer error).
    public static func render(_ model: StatusPageModel, refreshSeconds: Int = 2) -> String {
        precondition(refreshSecondsRange.contains(refreshSeconds), "refreshSeconds must be within 1...3600")
        let title = "Tandem \(HTMLText.escape(model.nodeID)) (\(HTMLText.escape(model.role)))"
        var html: [String] = [
            "<!DOCTYPE html>",
            "<html lang=\"en\">",
            "<head>",
            "<meta charset=\"utf-8\"/>",
            "<meta http-equiv=\"refresh\" content=\"\(refreshSeconds)\"/>",
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>",
            "<title>\(title)</title>",
            "<style>\(stylesheet)</style>",
            "</head>",
            "<body>",
            "<h1>\(title)</h1>",
        ]
        if model.diverged {
            html.append(
                "<p class=\"diverged\" id=\"diverged-banner\">This replica has DIVERGED: its app answered an applied "
                    + "write differently from the leader. The app is not deterministic; this node reports not "
                    + "ready until it is repaired.</p>")
        }
        html.append(summary(model))
        html.append(peerTable(model))
        html.append(clusterSection(model))
        html.append(charts(model))
        html.append(
            "<p class=\"footer\">Refreshes every \(refreshSeconds) s. Machine-readable: "
                + "<a href=\"/status\">/status</a>, <a href=\"/metrics\">/metrics</a>, "
                + "<a href=\"/readyz\">/readyz</a>.</p>")
        html.append("</body>")
        html.append("</html>")
        return html.joined(separator: "\n") + "\n"
    }

    /// This node's own numbers as a definition list; ids let tests and scripts find each value.
    static func summary(_ model: StatusPageModel) -> String {
        let leader = model.leader.map { HTMLText.escape($0) } ?? "<em>none known</em>"
        let rows: [(id: String, label: String, value: String)] = [
            ("node", "Node", HTMLText.escape(model.nodeID)),
            ("role", "Role", HTMLText.escape(model.role)),
            ("term", "Term", "\(model.term)"),
            ("leader", "Leader", leader),
            ("commitIndex", "Commit index", "\(model.commitIndex)"),
            ("appliedIndex", "Applied index", "\(model.appliedIndex)"),
            ("diverged", "Diverged", model.diverged ? "yes" : "no"),
        ]
        let items = rows.map { "<dt>\($0.label)</dt><dd id=\"\($0.id)\">\($0.value)</dd>" }
        return "<dl class=\"summary\">\n" + items.joined(separator: "\n") + "\n</dl>"
    }

    /// One row per peer; each cell carries a `data-field` naming the `/status` key it shows.
    static func peerTable(_ model: StatusPageModel) -> String {
        guard !model.peers.isEmpty else {
            return "<p class=\"no-peers\">No peers: this is a one-node cluster.</p>"
        }
        var lines = [
            "<table class=\"peers\">",
            "<thead><tr><th>Peer</th><th>Address</th><th>Role</th><th>Link</th><th>Phi</th><th>Match index</th>"
                + "<th>Lag (entries)</th><th>Last contact</th></tr></thead>",
            "<tbody>",
        ]
        for peer in model.peers {
            let suspected = !(peer.phi < model.phiThreshold)
            let lastContact: String
            switch peer.lastContact {
            case .heard(let msAgo): lastContact = cell("lastContactMs", "\(msAgo) ms ago")
            case .never: lastContact = cell("lastContactMs", "never")
            case .unknown: lastContact = unknownCell("lastContactMs")
            }
            let cells = [
                cell("id", HTMLText.escape(peer.id)),
                cell("address", HTMLText.escape(peer.address)),
                peer.role.map { cell("role", $0.rawValue) } ?? unknownCell("role"),
                cell("connected", peer.connected ? "connected" : "down", cssClass: peer.connected ? "up" : "down"),
                cell("phi", HTMLText.phi(peer.phi), cssClass: suspected ? "suspected" : nil),
                numberCell("matchIndex", peer.matchIndex),
                numberCell("lagEntries", peer.lagEntries),
                lastContact,
            ]
            lines.append("<tr data-peer=\"\(HTMLText.escape(peer.id))\">" + cells.joined() + "</tr>")
        }
        lines.append("</tbody>")
        lines.append("</table>")
        return lines.joined(separator: "\n")
    }

    /// Every member as the leader sees it, or a plain sentence saying why that is not available. On the leader
    /// this is its own view; elsewhere it is as old as the heading says.
    static func clusterSection(_ model: StatusPageModel) -> String {
        let heading = "Cluster as the leader sees it"
        guard let cluster = model.cluster else {
            let why: String
            if let leader = model.leader, leader != model.nodeID {
                why =
                    "Not available yet: the leader (\(HTMLText.escape(leader))) has not sent its view. This node asks "
                    + "for it once a second while this page is open."
            } else if model.leader == nil {
                why = "Not available: no leader is known."
            } else {
                why = "Not available."
            }
            return "<h2 id=\"cluster-heading\">\(heading)</h2>\n<p class=\"unavailable\" id=\"cluster-unavailable\">"
                + "\(why)</p>"
        }
        let leader = HTMLText.escape(cluster.asSeenBy)
        let when =
            cluster.asSeenBy == model.nodeID
            ? "this node" : "\(HTMLText.fixed(Double(cluster.ageMs) / 1000, decimals: 1)) s ago"
        var lines = [
            "<h2 id=\"cluster-heading\">\(heading) (\(leader), \(when))</h2>",
            "<table class=\"peers\" id=\"cluster\">",
            "<thead><tr><th>Member</th><th>Address</th><th>Role</th><th>Match index</th>"
                + "<th>Lag (entries)</th></tr></thead>",
            "<tbody>",
        ]
        for member in cluster.members {
            let id = HTMLText.escape(member.id)
            var notes: [String] = []
            if member.id == cluster.asSeenBy { notes.append("leader") }
            if member.id == model.nodeID { notes.append("this node") }
            let note = notes.isEmpty ? "" : " <span class=\"note\">(\(notes.joined(separator: ", ")))</span>"
            let cells = [
                cell("id", id + note),
                member.address.map { cell("address", HTMLText.escape($0)) } ?? unknownCell("address"),
                cell("role", member.role.rawValue),
                numberCell("matchIndex", member.matchIndex),
                numberCell("lagEntries", member.lagEntries),
            ]
            lines.append("<tr data-member=\"\(id)\">" + cells.joined() + "</tr>")
        }
        lines.append("</tbody>")
        lines.append("</table>")
        lines.append("<p class=\"note\">Lag: entries a member lacks from the leader's log.</p>")
        return lines.joined(separator: "\n")
    }

    private static func cell(_ field: String, _ value: String, cssClass: String? = nil) -> String {
        let classAttribute = cssClass.map { " class=\"\($0)\"" } ?? ""
        return "<td data-field=\"\(field)\"\(classAttribute)>\(value)</td>"
    }

    /// A value this node does not know: the word, muted, so it never reads as a measurement.
    private static func unknownCell(_ field: String) -> String {
        cell(field, "unknown", cssClass: "unknown")
    }

    private static func numberCell(_ field: String, _ value: UInt64?) -> String {
        value.map { cell(field, "\($0)") } ?? unknownCell(field)
    }

    /// One figure per peer with its phi chart over the last minute.
    static func charts(_ model: StatusPageModel) -> String {
        guard !model.peers.isEmpty else { return "" }
        var lines = ["<h2>Phi over the last minute</h2>", "<div class=\"charts\">"]
        for peer in model.peers {
            let chart = PhiChart(
                history: peer.phiHistory, nowMs: model.nowMs, windowMs: chartWindowMs, threshold: model.phiThreshold)
            let id = HTMLText.escape(peer.id)
            lines.append("<figure data-peer=\"\(id)\">")
            lines.append(chart.svg(label: "phi of \(id) over the last minute"))
            lines.append("<figcaption>\(id): \(chart.samples.count) samples, dashed line = threshold</figcaption>")
            lines.append("</figure>")
        }
        lines.append("</div>")
        return lines.joined(separator: "\n")
    }

    static let stylesheet = """
        body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
        h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}\
        dl.summary{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}dd{margin:0}\
        table.peers{border-collapse:collapse}th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left}\
        td.up{color:#2e7d32}td.down,td.suspected{color:#c62828;font-weight:600}\
        .unknown{color:#78909c}.note,.unavailable{color:#555}.note{font-size:.9em}\
        .diverged{background:#c62828;color:#fff;padding:.6em;font-weight:600}\
        .charts{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}figcaption{font-size:.8em;color:#555}\
        .footer{margin-top:2em;font-size:.8em;color:#555}
        """
}
