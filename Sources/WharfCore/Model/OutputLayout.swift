/// The shape and meaning of one model's output: `width` numbers per input row, in row-major
/// order, with a column name for each.
public struct OutputLayout: Sendable, Hashable, Codable {
    public var kind: OutputKind
    /// Column names, one per number in an output row (`probability`, `probability_0`, …).
    public var columns: [String]

    public var width: Int { columns.count }

    public init(kind: OutputKind, columns: [String]) {
        self.kind = kind
        self.columns = columns
    }

    /// The layout a model of `task` with `classCount` classes produces for `kind`.
    public static func standard(kind: OutputKind, classCount: Int) -> OutputLayout {
        switch kind {
        case .probability: OutputLayout(kind: kind, columns: ["probability"])
        case .probabilities: OutputLayout(kind: kind, columns: (0..<classCount).map { "probability_\($0)" })
        case .classIndex: OutputLayout(kind: kind, columns: ["class"])
        case .margin: OutputLayout(kind: kind, columns: ["margin"])
        case .value: OutputLayout(kind: kind, columns: ["prediction"])
        }
    }
}
