import WharfCore

/// A condition a validation must meet before a model may go to production: `roc_auc>=0.9`,
/// `rmse<12.5`. Operators: `>=`, `<=`, `>`, `<`, `==`.
public struct Gate: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Comparison: String, Sendable, Hashable, Codable, CaseIterable {
        case atLeast = ">="
        case atMost = "<="
        case above = ">"
        case below = "<"
        case equal = "=="

        func holds(_ value: Double, _ threshold: Double) -> Bool {
            switch self {
            case .atLeast: value >= threshold
            case .atMost: value <= threshold
            case .above: value > threshold
            case .below: value < threshold
            case .equal: value == threshold
            }
        }
    }

    public var metric: String
    public var comparison: Comparison
    public var threshold: Double

    public init(metric: String, comparison: Comparison, threshold: Double) {
        self.metric = metric
        self.comparison = comparison
        self.threshold = threshold
    }

    /// Parses `metric<op>number`, blanks allowed around each part.
    public init(parsing text: String) throws(WharfError) {
        let isOperator: (Character) -> Bool = { $0 == "<" || $0 == ">" || $0 == "=" }
        guard let start = text.firstIndex(where: isOperator) else {
            throw WharfError(.invalidInput, "gate \"\(text)\" has no comparison: write METRIC>=NUMBER (or <=, >, <, ==)")
        }
        let end = text[start...].firstIndex { !isOperator($0) } ?? text.endIndex
        let metric = text[..<start].trimmingBlanks()
        let number = text[end...].trimmingBlanks()
        guard let comparison = Comparison(rawValue: String(text[start..<end])) else {
            throw WharfError(.invalidInput, "gate \"\(text)\": unknown comparison \"\(text[start..<end])\" (use >=, <=, >, < or ==)")
        }
        guard !metric.isEmpty, let threshold = Double(number), threshold.isFinite else {
            throw WharfError(.invalidInput, "gate \"\(text)\": expected METRIC\(comparison.rawValue)NUMBER, like roc_auc>=0.9")
        }
        self.init(metric: metric, comparison: comparison, threshold: threshold)
    }

    public var description: String { "\(metric)\(comparison.rawValue)\(threshold)" }

    /// Refuses a gate on a metric the task does not have.
    public func check(for task: ModelTask) throws(WharfError) {
        let known = Metrics.names(for: task)
        guard known.contains(metric) else {
            throw WharfError(.invalidInput, "gate \"\(self)\": \(task.rawValue) models have no metric \"\(metric)\" (known: \(known.joined(separator: ", ")))")
        }
    }

    public func evaluate(_ report: MetricReport) -> GateOutcome {
        guard let value = report.values[metric] else {
            let why = report.undefined[metric] ?? "the metric was not computed"
            return GateOutcome(gate: description, value: nil, threshold: threshold, passed: false, detail: "\(metric) is undefined: \(why)")
        }
        let passed = comparison.holds(value, threshold)
        let detail = passed
            ? "\(metric) = \(value) \(comparison.rawValue) \(threshold)"
            : "\(metric) = \(value), needs \(comparison.rawValue) \(threshold) (off by \(abs(value - threshold)))"
        return GateOutcome(gate: description, value: value, threshold: threshold, passed: passed, detail: detail)
    }

    /// Champion/challenger: the candidate must be no worse than the champion on `metric`.
    public static func noWorse(_ metric: String, candidate: MetricReport, champion: MetricReport, championName: String) -> GateOutcome {
        let gate = "\(metric) no worse than \(championName)"
        guard let value = candidate.values[metric], let reference = champion.values[metric] else {
            return GateOutcome(gate: gate, value: candidate.values[metric], threshold: champion.values[metric], passed: false,
                               detail: "\(metric) is undefined for \(candidate.values[metric] == nil ? "the candidate" : championName)")
        }
        let lower = Metrics.lowerIsBetter(metric)
        let passed = lower ? value <= reference : value >= reference
        let detail = passed
            ? "\(metric) = \(value), \(championName) \(reference)"
            : "\(metric) = \(value) is worse than \(championName)'s \(reference) by \(abs(value - reference))"
        return GateOutcome(gate: gate, value: value, threshold: reference, passed: passed, detail: detail)
    }
}

/// How one gate went: the registry's record of it (value, threshold, passed, a line for people).
public typealias GateOutcome = ValidationRecord.Gate

extension Substring {
    fileprivate func trimmingBlanks() -> String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
