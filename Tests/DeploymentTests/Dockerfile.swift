import Foundation

/// A Dockerfile read the way `docker build` reads it, as far as these tests need: line continuations joined,
/// comments and the parser directive dropped, instructions grouped by build stage.
struct Dockerfile {
    struct Instruction {
        /// Upper-case keyword: FROM, RUN, ENV, ...
        let keyword: String
        /// Everything after the keyword, continuation lines joined with a space.
        let arguments: String
    }

    struct Stage {
        /// The `AS name` of the FROM line, or nil.
        let name: String?
        /// The image or stage it starts from.
        let base: String
        var instructions: [Instruction]

        func all(_ keyword: String) -> [Instruction] { instructions.filter { $0.keyword == keyword } }
    }

    /// Instructions before the first FROM (ARGs).
    var preamble: [Instruction] = []
    var stages: [Stage] = []

    init(_ text: String) {
        var logicalLines: [String] = []
        var pending = ""
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("#") { continue }  // comments and directives, also inside continued instructions
            if line.hasSuffix("\\") {
                pending += line.dropLast() + " "
                continue
            }
            pending += line
            if !pending.trimmingCharacters(in: .whitespaces).isEmpty { logicalLines.append(pending) }
            pending = ""
        }
        for line in logicalLines {
            let parts = line.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            let keyword = parts[0].uppercased()
            let arguments = parts.count > 1 ? String(parts[1]).trimmingCharacters(in: .whitespaces) : ""
            let instruction = Instruction(keyword: keyword, arguments: arguments)
            if keyword == "FROM" {
                let words = expandArguments(arguments).split(separator: " ").map(String.init)
                let name = words.count >= 3 && words[words.count - 2].uppercased() == "AS" ? words.last : nil
                stages.append(Stage(name: name, base: words.first ?? "", instructions: []))
            } else if stages.isEmpty {
                preamble.append(instruction)
            } else {
                stages[stages.count - 1].instructions.append(instruction)
            }
        }
    }

    /// The `ARG NAME=default` values declared before the first FROM, which FROM lines may use.
    var globalArguments: [String: String] {
        var values: [String: String] = [:]
        for instruction in preamble where instruction.keyword == "ARG" {
            let keyValue = instruction.arguments.split(separator: "=", maxSplits: 1).map(String.init)
            if keyValue.count == 2 { values[keyValue[0]] = keyValue[1] }
        }
        return values
    }

    /// `text` with every `${NAME}` of a global ARG replaced by its default, as the builder does in FROM lines.
    func expandArguments(_ text: String) -> String {
        var expanded = text
        for (name, value) in globalArguments {
            expanded = expanded.replacingOccurrences(of: "${\(name)}", with: value)
        }
        return expanded
    }

    func stage(named name: String) -> Stage? { stages.first { $0.name == name } }

    /// The stages `stage` builds on, itself first, following `FROM <stage>` chains inside this file.
    func lineage(of stage: Stage) -> [Stage] {
        var chain = [stage]
        // Bounded by the stage count: a FROM chain cannot be longer than the file.
        while chain.count <= stages.count, let parent = self.stage(named: chain[chain.count - 1].base) {
            chain.append(parent)
        }
        return chain
    }

    /// The ENV of a stage, inherited values first and the stage's own last, as `docker run` would see them.
    func environment(of stage: Stage) -> [String: String] {
        var environment: [String: String] = [:]
        for ancestor in lineage(of: stage).reversed() {
            for instruction in ancestor.all("ENV") {
                for pair in instruction.arguments.split(separator: " ") {
                    let keyValue = pair.split(separator: "=", maxSplits: 1).map(String.init)
                    if keyValue.count == 2 { environment[keyValue[0]] = keyValue[1] }
                }
            }
        }
        return environment
    }

    /// The last value of a single-valued instruction (USER, ENTRYPOINT, HEALTHCHECK) along the stage's lineage.
    func effective(_ keyword: String, of stage: Stage) -> String? {
        for ancestor in lineage(of: stage) {
            if let last = ancestor.all(keyword).last { return last.arguments }
        }
        return nil
    }
}
