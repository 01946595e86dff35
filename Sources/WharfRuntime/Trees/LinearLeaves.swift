/// LightGBM linear-tree leaves: each leaf's output is `constant + Σ coefficient · x[feature]`,
/// or the plain leaf value when any of those features is missing.
struct LinearLeaves: Sendable {
    /// For each node of the forest, its slot here, or -1 for split nodes.
    var slotOfNode: [Int32]
    var constants: [Double]
    /// Slot `s` owns `features[offsets[s]..<offsets[s+1]]` and the same range of `coefficients`.
    var offsets: [Int32]
    var features: [Int32]
    var coefficients: [Double]
}

/// A linear leaf as a model file lists it, before flattening.
struct LinearLeafDefinition: Sendable {
    var constant: Double
    var features: [Int]
    var coefficients: [Double]
}
