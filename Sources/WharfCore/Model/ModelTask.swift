/// What a model predicts.
public enum ModelTask: String, Sendable, Hashable, Codable, CaseIterable {
    case regression
    case binary
    case multiclass
}
