import Foundation
import Testing
import WharfCore

@Suite("YAML reader")
struct YAMLReaderTests {
    private func json(_ text: String) throws -> String {
        String(decoding: try YAMLReader.parse(text).jsonBytes(), as: UTF8.self)
    }

    @Test func blockMappingsSequencesAndScalars() throws {
        let text = """
            # feature definitions
            streams:
              - name: clicks            # a comment after a value
                entity_key: user
                features: {seq: number, page: string, "odd key": bool}
                max_age_seconds: 2592000
                ratio: -1.5e3
                zip: 01234
              - name: "quoted # not a comment"
                tags: [a, 'b c', "d\\"e", 7, true, null]
            empty:
            list_at_key_indent:
            - one
            -
              - nested
            flags: {on: yes, off: ~}
            """
        #expect(try json(text) == #"""
            {"streams":[{"name":"clicks","entity_key":"user","features":{"seq":"number","page":"string","odd key":"bool"},"max_age_seconds":2592000,"ratio":-1.5e3,"zip":"01234"},{"name":"quoted # not a comment","tags":["a","b c","d\"e",7,true,null]}],"empty":null,"list_at_key_indent":["one",["nested"]],"flags":{"on":"yes","off":null}}
            """#)
    }

    @Test func literalAndFoldedBlocks() throws {
        let text = """
            run: |
              python train.py \\
                --data train.csv
              # kept: part of the block

              echo done
            note: >-
              folded
              into one

              paragraph break
            after: 1
            """
        let value = try YAMLReader.parse(text)
        #expect(value["run"] == .string("python train.py \\\n  --data train.csv\n# kept: part of the block\n\necho done\n"))
        #expect(value["note"] == .string("folded into one\nparagraph break"))
        #expect(value["after"] == .number("1"))
    }

    @Test func mistakesNameTheirLine() {
        let cases: [(String, String)] = [
            ("a: 1\na: 2", "line 2: the key a appears twice"),
            ("a:\n\tb: 1", "line 2: indent with spaces"),
            ("a: [1, 2", "line 1: a [ is not closed"),
            ("a: \"open", "line 1: a quoted string is not closed"),
            ("a: &x 1", "line 1: anchors"),
            ("a: 1\n  b: 2", "line 2: unexpected indentation"),
            ("a: 1\n---\nb: 2", "line 2: one document per file"),
            ("- a\nb: 1", "line 2"),
            // Nested thousands deep, by brackets or by indentation: refused, not a stack overflow.
            ("a: " + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000), "line 1: nested deeper than 64 levels"),
            ("a: " + String(repeating: "{b: ", count: 1_000) + "1" + String(repeating: "}", count: 1_000), "line 1: nested deeper than 64 levels"),
            ((0..<300).map { String(repeating: " ", count: 2 * $0) + "k:" }.joined(separator: "\n"), "line 65: nested deeper than 64 levels"),
            ((0..<300).map { String(repeating: " ", count: 2 * $0) + "-" }.joined(separator: "\n"), "line 65: nested deeper than 64 levels"),
        ]
        for (text, expected) in cases {
            #expect(throws: WharfError.self) { try YAMLReader.parse(text, file: "f.yaml") }
            do {
                _ = try YAMLReader.parse(text, file: "f.yaml")
            } catch {
                #expect(error.message.contains("f.yaml, " + expected), "\(text) -> \(error.message)")
            }
        }
    }

    @Test func decodesIntoTheAPIsOwnTypes() throws {
        struct View: Decodable, Equatable {
            var name: String
            var features: [String]
            var ttl_seconds: Double?
        }
        let value = try YAMLReader.parse("name: activity\nfeatures: [seq, page]\nttl_seconds: 3600\n")
        #expect(try value.decode(View.self, from: "v.yaml") == View(name: "activity", features: ["seq", "page"], ttl_seconds: 3600))
        let wrong = try YAMLReader.parse("name: activity\nfeatures: seq\n")
        #expect(throws: WharfError.self) { try wrong.decode(View.self, from: "v.yaml") }
    }
}
