/// What the numbers in a model's output row mean. Each matches what the originating library's
/// `predict` returns, so Wharf's answers can be compared with the library's one for one.
public enum OutputKind: String, Sendable, Hashable, Codable {
    /// One column: the probability of the positive class (binary classifiers).
    case probability
    /// One column per class: class probabilities (softmax), or per-class sigmoids for
    /// one-vs-all models, which need not sum to one.
    case probabilities
    /// One column: the index of the predicted class (XGBoost `multi:softmax`).
    case classIndex = "class_index"
    /// One column: the untransformed score (XGBoost `binary:logitraw`).
    case margin
    /// One column: a regression value in the target's own scale.
    case value
}
