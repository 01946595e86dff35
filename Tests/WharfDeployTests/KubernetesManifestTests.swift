import Foundation
import Testing
import WharfCore
import WharfDeploy

/// The rendered manifests: equal to the golden files (Tests/Fixtures/kubernetes, regenerate
/// with `wharf deploy kubernetes --out Tests/Fixtures/kubernetes --model demo@production
/// --image ghcr.io/wharf/wharf:1`), and consistent where Kubernetes needs it.
@Suite("Kubernetes manifests")
struct KubernetesManifestTests {
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/kubernetes")

    let manifests = KubernetesManifests(
        namespace: "wharf", image: "ghcr.io/wharf/wharf:1",
        models: [.init(reference: ModelReference(name: "demo", selector: .alias("production")))])

    @Test func renderedFilesMatchTheGoldenFiles() throws {
        let rendered = manifests.render()
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.golden.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(rendered.map(\.file) == files)
        for (file, yaml) in rendered {
            let expected = try String(contentsOf: Self.golden.appendingPathComponent(file), encoding: .utf8)
            #expect(yaml == expected, "\(file) differs from the golden file")
        }
    }

    @Test func workloadsAreConsistentAndLockedDown() throws {
        let objects = manifests.objects().flatMap(\.objects)
        let deployments = objects.filter { $0["kind"]?.text == "Deployment" }
        #expect(deployments.map { $0["metadata", "name"]?.text } == ["wharf-registry", "wharf-gateway", "wharf-model-demo"])
        for deployment in deployments {
            let name = deployment["metadata", "name"]?.text ?? "?"
            // The selector picks exactly the pods the template makes, and a Service selects them.
            let selector = try #require(deployment["spec", "selector", "matchLabels"])
            #expect(deployment["spec", "template", "metadata", "labels"] == selector, "\(name)")
            let service = objects.first { $0["kind"]?.text == "Service" && $0["metadata", "name"]?.text == name }
            #expect(service?["spec", "selector"] == selector, "\(name): no Service selects its pods")
            let container = try #require(deployment["spec", "template", "spec", "containers", "0"])
            let port = try #require(container["ports", "0", "containerPort"]?.number)
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                #expect(container[probe, "httpGet", "port"]?.number == port, "\(name) \(probe)")
                let path = container[probe, "httpGet", "path"]?.text ?? ""
                #expect(path.hasSuffix(probe == "readinessProbe" ? "/health/ready" : "/health/live"), "\(name) \(probe): \(path)")
            }
            for limit in ["cpu", "memory"] {
                #expect(container["resources", "limits", limit]?.text != nil, "\(name): no \(limit) limit")
                #expect(container["resources", "requests", limit]?.text != nil, "\(name): no \(limit) request")
            }
            #expect(container["securityContext", "runAsNonRoot"] == .bool(true))
            #expect(container["securityContext", "readOnlyRootFilesystem"] == .bool(true))
            #expect(container["securityContext", "allowPrivilegeEscalation"] == .bool(false))
            #expect(deployment["spec", "template", "spec", "automountServiceAccountToken"] == .bool(false))
        }
        // Autoscalers and disruption budgets for every model server.
        for name in ["wharf-model-demo"] {
            let autoscaler = objects.first { $0["kind"]?.text == "HorizontalPodAutoscaler" && $0["metadata", "name"]?.text == name }
            #expect(autoscaler?["spec", "scaleTargetRef", "name"]?.text == name)
            #expect(objects.contains { $0["kind"]?.text == "PodDisruptionBudget" && $0["metadata", "name"]?.text == name })
        }
        // The registry and the gateway keep their state in files: one replica each, on a volume
        // that outlives the pod, replaced (not rolled) so that two never share it.
        for name in ["wharf-registry", "wharf-gateway"] {
            let deployment = try #require(deployments.first { $0["metadata", "name"]?.text == name })
            #expect(deployment["spec", "replicas"] == .int(1))
            #expect(deployment["spec", "strategy", "type"]?.text == "Recreate")
            let file = try #require(manifests.render().first { $0.yaml.contains("name: \"\(name)\"") && $0.yaml.contains("kind: \"Deployment\"") })
            #expect(file.yaml.contains("claimName: \"\(name)-data\""), "\(name)")
            #expect(objects.contains { $0["kind"]?.text == "PersistentVolumeClaim" && $0["metadata", "name"]?.text == "\(name)-data" })
            #expect(!objects.contains { $0["kind"]?.text == "HorizontalPodAutoscaler" && $0["metadata", "name"]?.text == name })
        }
        // A model server's grace period covers its drain delay and the 30 s for requests in flight.
        let server = try #require(deployments.first { $0["metadata", "name"]?.text == "wharf-model-demo" })
        #expect(server["spec", "template", "spec", "terminationGracePeriodSeconds"] == .int(45))
        // Secrets are referenced, never written.
        #expect(!objects.contains { $0["kind"]?.text == "Secret" })
    }

    @Test func badNamesAreRefused() {
        #expect(throws: WharfError.self) { try KubernetesManifests(namespace: "Prod_1", models: []).validated() }
        func model(_ name: String) -> KubernetesManifests.Model { .init(reference: ModelReference(name: name, selector: .version(1))) }
        // Kubernetes names: DNS labels, a letter or digit at both ends, wharf-model-<name> at most 63.
        for name in ["Churn", "churn-", String(repeating: "a", count: 52)] {
            #expect(throws: WharfError.self, "\(name)") { try KubernetesManifests(models: [model(name)]).validated() }
        }
        #expect((try? KubernetesManifests(models: [model(String(repeating: "a", count: 51))]).validated()) != nil)
        #expect(throws: WharfError.self) { try KubernetesManifests(namespace: "wharf-", models: []).validated() }
        // One Deployment a model: the same name twice would write one file over the other.
        let twice = KubernetesManifests(models: [.init(reference: ModelReference(name: "churn", selector: .alias("production"))),
                                                 .init(reference: ModelReference(name: "churn", selector: .alias("candidate")))])
        #expect(throws: WharfError.self) { try twice.validated() }
    }

    /// One pod may go at a time, whatever the replicas: `minAvailable: 1` would let a drain
    /// take all but one at once, and block every drain over a single replica.
    @Test func onePodMayGoAtATime() {
        let single = KubernetesManifests(models: [.init(reference: ModelReference(name: "one", selector: .version(1)), minReplicas: 1, maxReplicas: 3)])
        for set in [single, manifests] {
            let budgets = set.objects().flatMap(\.objects).filter { $0["kind"]?.text == "PodDisruptionBudget" }
            #expect(!budgets.isEmpty)
            #expect(budgets.allSatisfy { $0["spec", "maxUnavailable"] == .int(1) && $0["spec", "minAvailable"] == nil })
        }
    }
}
