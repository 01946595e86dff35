/// The file formats Wharf reads natively. A format is always detected from a file's content.
public enum ModelFormat: String, Sendable, Hashable, Codable, CaseIterable {
    /// XGBoost `save_model("x.json")`.
    case xgboostJSON = "xgboost_json"
    /// XGBoost's default binary format (`.ubj`, and any extension other than `.json`).
    case xgboostUBJSON = "xgboost_ubjson"
    /// LightGBM `save_model` / `model_to_string`.
    case lightgbmText = "lightgbm_text"
    /// Wharf's own linear, logistic and softmax regression format (docs/linear-format.md).
    case wharfLinear = "wharf_linear"
}
