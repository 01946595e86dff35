import Foundation
import WharfCore

/// Which aliases are guarded, and what guards them: a version may become `production` (or any
/// protected alias) only with a passing validation on the model's registered validation
/// dataset, unless the move is forced with a reason, which the audit log keeps.
public struct PromotionPolicy: Sendable {
    public var protectedAliases: Set<String>

    public init(protectedAliases: Set<String> = ["production"]) {
        self.protectedAliases = protectedAliases
    }

    /// Whether the move is a forced one; throws when it is refused.
    func check(store: any RegistryStore, name: String, alias: String, version: Int, force: Bool, reason: String?) async throws -> Bool {
        if force {
            guard let reason, !reason.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw WharfError(.invalidInput, "a forced alias move needs a reason (it is kept in the audit log)")
            }
        }
        guard protectedAliases.contains(alias) else { return false }
        guard let target = try await store.version(name: name, version: version) else { throw RegistryStoreError.unknownVersion(name, version) }
        guard let model = try await store.model(name: name), let dataset = model.validationData else {
            if force { return true }
            throw WharfError(.forbidden, "\(name) has no registered validation dataset, so \(name)@\(version) cannot be shown to pass validation; register one (wharf models register --validation-data) or force the move with a reason")
        }
        let passing = target.validations.contains { $0.passed && $0.data.sha256 == dataset.sha256 }
        if passing { return false }
        if force { return true }
        let onOtherData = target.validations.filter { $0.data.sha256 != dataset.sha256 }.count
        let failed = target.validations.filter { !$0.passed && $0.data.sha256 == dataset.sha256 }.count
        var why = "\(name)@\(version) has no passing validation on the registered validation dataset (sha256 \(dataset.sha256.prefix(12))…)"
        if failed > 0 { why += "; \(failed) validation(s) on it failed" }
        if onOtherData > 0 { why += "; \(onOtherData) validation(s) used other data" }
        throw WharfError(.forbidden, why + ". Run wharf validate --model \(name)@\(version) on that dataset, or force the move with a reason")
    }
}
