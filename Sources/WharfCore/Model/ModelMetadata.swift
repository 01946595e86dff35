/// What Wharf knows about a loaded model: enough to validate inputs, describe the model in an
/// API and lay out its outputs.
public struct ModelMetadata: Sendable, Hashable, Codable {
    public var format: ModelFormat
    public var task: ModelTask
    /// The originating library's objective, verbatim (`binary:logistic`, `multiclassova`, …).
    public var objective: String
    /// Number of input features the model reads; input rows have exactly this many values.
    public var featureCount: Int
    /// Feature names in input order, when the file has them.
    public var featureNames: [String]?
    /// Per feature: true when the model splits on it as a category code.
    public var categoricalFeatures: [Int]
    /// Class labels for classifiers (`"0"`, `"1"`, …); empty for regression.
    public var classes: [String]
    public var output: OutputLayout
    /// Number of trees evaluated (all trees in the file), or 0 for linear models.
    public var treeCount: Int
    /// Depth of the deepest tree (a single leaf has depth 0), or 0 for linear models.
    public var maxDepth: Int
    /// The library version that wrote the file, when the file says.
    public var producer: String?
    /// Facts worth showing a user that do not change evaluation, e.g. XGBoost's
    /// `best_iteration` of an early-stopped model (Wharf still evaluates every tree).
    public var notes: [String]

    public init(
        format: ModelFormat,
        task: ModelTask,
        objective: String,
        featureCount: Int,
        featureNames: [String]?,
        categoricalFeatures: [Int] = [],
        classes: [String],
        output: OutputLayout,
        treeCount: Int,
        maxDepth: Int,
        producer: String? = nil,
        notes: [String] = []
    ) {
        self.format = format
        self.task = task
        self.objective = objective
        self.featureCount = featureCount
        self.featureNames = featureNames
        self.categoricalFeatures = categoricalFeatures
        self.classes = classes
        self.output = output
        self.treeCount = treeCount
        self.maxDepth = maxDepth
        self.producer = producer
        self.notes = notes
    }
}
