import Testing
import WharfCore

@Suite("Registry names")
struct RegistryNameTests {
    private func accepts(_ name: String) -> Bool {
        (try? RegistryName.check(name, kind: "model")) != nil
    }

    @Test func namesAreLettersDigitsAndSafePunctuation() {
        for good in ["champ", "a", "x1", "breast-cancer", "v1.2_rc-3", "A.b", String(repeating: "m", count: 64)] {
            #expect(accepts(good), "\(good)")
        }
        for bad in ["", String(repeating: "m", count: 65), ".hidden", "_x", "-x", "a..b", "a/b", "a b", "a%2F", "é", "a\r\nb", "..", "a.."] {
            #expect(!accepts(bad), "\(bad)")
        }
    }

    @Test func theErrorSaysWhatIsWrong() {
        #expect(throws: WharfError.self) { try RegistryName.check("", kind: "alias") }
        do {
            try RegistryName.check("a/b", kind: "alias")
        } catch {
            #expect(error.code == .invalidInput)
            #expect(error.message.contains("alias name \"a/b\""))
        }
    }
}
