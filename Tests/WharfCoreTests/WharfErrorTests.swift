import Testing
import WharfCore

@Suite struct WharfErrorTests {
    @Test func descriptionNamesCodeAndMessage() {
        let error = WharfError(.invalidModel, "tree 3 node 7: child index 912 is out of range 0..<15")
        #expect(error.description == "invalidModel: tree 3 node 7: child index 912 is out of range 0..<15")
        #expect(error.code == .invalidModel)
        #expect(error.code != .invalidInput)
    }

    @Test func standardLayouts() {
        #expect(OutputLayout.standard(kind: .probability, classCount: 2).columns == ["probability"])
        #expect(OutputLayout.standard(kind: .probabilities, classCount: 3).columns == ["probability_0", "probability_1", "probability_2"])
        #expect(OutputLayout.standard(kind: .value, classCount: 0).width == 1)
        #expect(OutputLayout.standard(kind: .classIndex, classCount: 4).columns == ["class"])
    }
}
