#!/usr/bin/env python3
"""Write the hostile model-file corpus in Tests/Fixtures/hostile/.

Each file is a way a model file can be broken or malicious: truncated, garbage, wrong JSON
types, child indices out of range, cycles, absurd declared sizes, a UBJSON array that claims
2 GB in a file of a few hundred bytes. `manifest.json` says, for each file, the error code
Wharf must raise and a phrase its message must contain. The Swift tests load every file and
check exactly that: a typed error naming the problem, never a crash, hang or huge allocation.

Standard library only; deterministic. Run from anywhere: python3 scripts/make_hostile_corpus.py
"""
import json
import random
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests" / "Fixtures"
OUT = FIXTURES / "hostile"

cases = []


def write(name, data, code, contains):
    if isinstance(data, str):
        data = data.encode()
    (OUT / name).write_bytes(data)
    cases.append({"file": name, "code": code, "contains": contains})


def xgb_model():
    return json.loads((FIXTURES / "models" / "xgb3_binary_logistic.json").read_text())


def xgb_variant(name, mutate, code, contains):
    model = xgb_model()
    mutate(model)
    write(name, json.dumps(model), code, contains)


def first_tree(model):
    return model["learner"]["gradient_booster"]["model"]["trees"][0]


def internal_nodes(tree):
    return [i for i, left in enumerate(tree["left_children"]) if left != -1]


def lgb_text():
    return (FIXTURES / "models" / "lgb_binary.txt").read_text()


def lgb_variant(name, old, new, code, contains, count=1):
    text = lgb_text()
    assert old in text, old
    write(name, text.replace(old, new, count), code, contains)


def ubjson_length(n):
    return b"L" + struct.pack(">q", n)


def ubjson_key(key):
    return ubjson_length(len(key)) + key.encode()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    rng = random.Random(20261129)

    # Not a model at all.
    write("empty.bin", b"", "invalidModel", "empty")
    write("garbage.bin", bytes(rng.randrange(256) for _ in range(1024)), "invalidModel", "unrecognized model format")
    write("onnx_like.onnx", b"\x08\x07\x12\x08skl2onnx" + bytes(64), "unsupportedModel", "ONNX")
    write("pickle.pkl", b"\x80\x04\x95" + bytes(32), "unsupportedModel", "pickle")
    write("json_array.json", "[1, 2, 3]", "invalidModel", "a JSON model must be an object")
    write("json_other_object.json", '{"hello": "world"}', "invalidModel", "neither an XGBoost model")

    # Broken JSON.
    full = (FIXTURES / "models" / "xgb3_binary_logistic.json").read_bytes()
    write("xgb_truncated.json", full[: len(full) // 2], "invalidModel", "invalid JSON at byte")
    write("deep_nesting.json", '{"a":' + "[" * 50_000, "invalidModel", "nesting deeper than")
    write("json_trailing.json", full + b" {}", "invalidModel", "unexpected content after")
    write("json_bad_escape.json", '{"learner": "\\q"}', "invalidModel", "invalid escape")
    write("json_duplicate_key.json", '{"learner": {}, "learner": {}}', "invalidModel", "duplicate key")

    # XGBoost: wrong types, bad indices, cycles, absurd sizes.
    xgb_variant("xgb_num_feature_array.json",
                lambda m: m["learner"]["learner_model_param"].update(num_feature=[1, 2]),
                "invalidModel", "learner.learner_model_param.num_feature: expected a number")
    xgb_variant("xgb_left_children_string.json",
                lambda m: first_tree(m).update(left_children="1,2,3"),
                "invalidModel", "trees[0].left_children: expected an array of numbers, found a string")
    xgb_variant("xgb_split_condition_string.json",
                lambda m: first_tree(m)["split_conditions"].__setitem__(0, "0.5"),
                "invalidModel", "split_conditions: expected an array of numbers")

    def child_out_of_range(m):
        first_tree(m)["left_children"][0] = 9999
    xgb_variant("xgb_child_out_of_range.json", child_out_of_range, "invalidModel", "child index 9999 is out of range")

    def cycle(m):
        tree = first_tree(m)
        tree["left_children"][internal_nodes(tree)[-1]] = 0
    xgb_variant("xgb_cycle.json", cycle, "invalidModel", "reached twice")

    def shared_subtree(m):
        tree = first_tree(m)
        tree["right_children"][0] = tree["left_children"][0]
    xgb_variant("xgb_shared_subtree.json", shared_subtree, "invalidModel", "reached twice")

    def one_child(m):
        tree = first_tree(m)
        leaf = tree["left_children"].index(-1)
        tree["right_children"][leaf] = 1
    xgb_variant("xgb_one_child.json", one_child, "invalidModel", "has a right child but no left child")

    def negative_child(m):
        first_tree(m)["left_children"][0] = -7
    xgb_variant("xgb_negative_child.json", negative_child, "invalidModel", "is not an integer in -1...")

    xgb_variant("xgb_absurd_num_nodes.json",
                lambda m: first_tree(m)["tree_param"].update(num_nodes="2000000000"),
                "invalidModel", "expected 2000000000")
    xgb_variant("xgb_huge_num_feature.json",
                lambda m: m["learner"]["learner_model_param"].update(num_feature="1e300"),
                "invalidModel", "is not an integer in 1...")
    xgb_variant("xgb_feature_out_of_range.json",
                lambda m: first_tree(m)["split_indices"].__setitem__(0, 500),
                "invalidModel", "feature index 500 is out of range")
    xgb_variant("xgb_unknown_objective.json",
                lambda m: m["learner"]["objective"].update(name="rank:pairwise"),
                "unsupportedModel", "rank:pairwise")
    xgb_variant("xgb_gblinear.json",
                lambda m: m["learner"]["gradient_booster"].update(name="gblinear"),
                "invalidModel", "booster \"gblinear\" is not supported")
    xgb_variant("xgb_bad_base_score.json",
                lambda m: m["learner"]["learner_model_param"].update(base_score="[abc]"),
                "invalidModel", "base_score")
    xgb_variant("xgb_base_score_outside_probability.json",
                lambda m: m["learner"]["learner_model_param"].update(base_score="[1.5E0]"),
                "invalidModel", "must lie strictly between 0 and 1")
    xgb_variant("xgb_best_iteration_nan.json",
                lambda m: m["learner"].setdefault("attributes", {}).update(best_iteration="nan"),
                "invalidModel", "best_iteration must be a whole number")
    xgb_variant("xgb_tree_info_group.json",
                lambda m: m["learner"]["gradient_booster"]["model"]["tree_info"].__setitem__(0, 3),
                "invalidModel", "output group 3 is out of range")
    xgb_variant("xgb_tree_info_short.json",
                lambda m: m["learner"]["gradient_booster"]["model"]["tree_info"].pop(),
                "invalidModel", "tree_info: has")
    xgb_variant("xgb_nan_threshold.json",
                lambda m: first_tree(m)["split_conditions"].__setitem__(0, float("nan")),
                "invalidModel", "threshold is NaN")
    xgb_variant("xgb_missing_trees.json",
                lambda m: m["learner"]["gradient_booster"]["model"].pop("trees"),
                "invalidModel", "missing required key \"trees\"")
    xgb_variant("xgb_multi_target.json",
                lambda m: m["learner"]["learner_model_param"].update(num_target="3"),
                "invalidModel", "multi-target")

    def huge_category(m):
        tree = first_tree(m)
        tree["split_type"][0] = 1
        tree["categories_nodes"] = [0]
        tree["categories_segments"] = [0]
        tree["categories_sizes"] = [1]
        tree["categories"] = [2_000_000_000]
    xgb_variant("xgb_huge_category.json", huge_category, "invalidModel", "categories: element 0 = 2000000000.0 is not an integer")

    def category_segment_overflow(m):
        tree = first_tree(m)
        tree["split_type"][0] = 1
        tree["categories_nodes"] = [0]
        tree["categories_segments"] = [5]
        tree["categories_sizes"] = [100]
        tree["categories"] = [1, 2]
    xgb_variant("xgb_category_segment.json", category_segment_overflow, "invalidModel", "reaches past the end of categories")

    def many_classes(m):
        m["learner"]["objective"]["name"] = "multi:softprob"
        m["learner"]["learner_model_param"]["num_class"] = "1000000"
    xgb_variant("xgb_absurd_num_class.json", many_classes, "invalidModel", "each group needs a tree")

    # Each categorical node names code 2^24-1: 2 MiB of bitset per few bytes of file.
    def category_amplification(m):
        for tree in m["learner"]["gradient_booster"]["model"]["trees"]:
            nodes = internal_nodes(tree)
            for node in nodes:
                tree["split_type"][node] = 1
            tree["categories_nodes"] = nodes
            tree["categories_segments"] = list(range(len(nodes)))
            tree["categories_sizes"] = [1] * len(nodes)
            tree["categories"] = [(1 << 24) - 1] * len(nodes)
    xgb_variant("xgb_category_amplification.json", category_amplification, "invalidModel", "bitset words")

    # A chain 5,000 splits deep: deeper than any real model, refused before evaluation.
    def deep_chain(m):
        depth = 5000
        left, right, cond, feat = [], [], [], []
        for i in range(depth):
            left.append(2 * i + 1 if i < depth - 1 else 2 * i + 1)
            right.append(2 * i + 2)
            cond.append(0.5)
            feat.append(0)
        # internal node i: left = next internal (as index), right = a leaf
        n_internal = depth
        left = [i + 1 if i < depth - 1 else n_internal + i for i in range(depth)]
        right = [n_internal + i for i in range(depth)]
        leaves = depth + 1
        total = n_internal + leaves
        left += [-1] * leaves
        right += [-1] * leaves
        tree = first_tree(m)
        tree.update(
            left_children=left, right_children=right,
            split_indices=[0] * total, split_conditions=[0.5] * total,
            default_left=[0] * total, split_type=[0] * total,
            parents=[2147483647] * total, base_weights=[0.0] * total,
            loss_changes=[0.0] * total, sum_hessian=[1.0] * total,
        )
        tree["tree_param"]["num_nodes"] = str(total)
    xgb_variant("xgb_deep_chain.json", deep_chain, "invalidModel", "deeper than 4096 levels")

    # UBJSON: declared sizes that the file cannot hold.
    ubj = (FIXTURES / "models" / "xgb3_binary_logistic_ubj.ubj").read_bytes()
    write("ubj_truncated.ubj", ubj[: len(ubj) * 2 // 3], "invalidModel", "invalid UBJSON")
    write("ubj_2gb_array.ubj",
          b"{" + ubjson_key("learner") + b"[$d#" + ubjson_length(0x7FFF_FFFF) + bytes(600),
          "invalidModel", "container count 2147483647 exceeds")
    write("ubj_huge_count.ubj",
          b"{" + ubjson_key("learner") + b"[#" + ubjson_length(1 << 62) + bytes(16),
          "invalidModel", "is out of range")
    write("ubj_negative_length.ubj",
          b"{" + ubjson_key("learner") + b"S" + ubjson_length(-5) + b"abc}",
          "invalidModel", "is out of range")
    write("ubj_string_past_end.ubj",
          b"{" + ubjson_key("learner") + b"S" + ubjson_length(1_000_000) + b"abc}",
          "invalidModel", "exceeds the")
    write("ubj_unknown_marker.ubj", b"{" + ubjson_key("learner") + b"Q}", "invalidModel", "unknown type marker")
    write("ubj_deep.ubj", b"{" + ubjson_key("learner") + b"[" * 10_000, "invalidModel", "nesting deeper than")
    write("ubj_null_flood.ubj", b"{" + ubjson_key("learner") + b"[$Z#" + ubjson_length(1 << 30) + b"}",
          "invalidModel", "payload-free values")
    # Each typed empty container costs 9 bytes of file and, unchecked, a million values.
    write("ubj_nested_null_arrays.ubj",
          b"{" + ubjson_key("learner") + b"[" + (b"[$Z#" + ubjson_length(1 << 20)) * 1000 + b"]}",
          "invalidModel", "payload-free values")

    # LightGBM text.
    text = lgb_text()
    write("lgb_truncated.txt", text[: len(text) // 2], "invalidModel", "no \"end of trees\"")
    # A multiclass model missing its last tree: LightGBM predicts whole iterations only.
    multiclass = (FIXTURES / "models" / "lgb_multiclass_3.txt").read_text()
    write("lgb_partial_iteration.txt", multiclass[: multiclass.rfind("Tree=")] + multiclass[multiclass.index("end of trees"):],
          "invalidModel", "not a whole number of iterations")
    lgb_variant("lgb_absurd_num_leaves.txt", "num_leaves=", "num_leaves=1000000000\nx_num_leaves=", "invalidModel", "expected 1000000000")
    lgb_variant("lgb_threshold_text.txt", "threshold=", "threshold=abc ", "invalidModel", "\"abc\" is not a number")
    lgb_variant("lgb_num_class_zero.txt", "num_class=1", "num_class=0", "invalidModel", "num_class")
    lgb_variant("lgb_bad_objective.txt", "objective=binary sigmoid:1", "objective=lambdarank", "unsupportedModel", "lambdarank")
    lgb_variant("lgb_bad_sigmoid.txt", "objective=binary sigmoid:1", "objective=binary sigmoid:-4", "invalidModel", "sigmoid:-4")
    lgb_variant("lgb_tree_per_iteration.txt", "num_tree_per_iteration=1", "num_tree_per_iteration=3", "invalidModel", "num_tree_per_iteration")
    lgb_variant("lgb_no_trees.txt", "Tree=", "Xree=", "invalidModel", "no trees", count=-1)

    def lgb_tree_edit(name, key, edit, code, contains):
        lines = lgb_text().split("\n")
        for index, line in enumerate(lines):
            if line.startswith(key + "="):
                lines[index] = key + "=" + edit(line[len(key) + 1:].split(" "))
                break
        write(name, "\n".join(lines), code, contains)

    lgb_tree_edit("lgb_child_out_of_range.txt", "left_child", lambda v: " ".join(["900"] + v[1:]), "invalidModel", "left_child: element 0 \"900\"")
    lgb_tree_edit("lgb_cycle.txt", "right_child", lambda v: " ".join(v[:-1] + ["0"]), "invalidModel", "reached twice")
    lgb_tree_edit("lgb_feature_out_of_range.txt", "split_feature", lambda v: " ".join(["77"] + v[1:]), "invalidModel", "split_feature: element 0 \"77\"")
    lgb_tree_edit("lgb_short_leaf_values.txt", "leaf_value", lambda v: " ".join(v[:-1]), "invalidModel", "leaf_value: has")

    cat_text = (FIXTURES / "models" / "lgb_categorical.txt").read_text()
    lines = cat_text.split("\n")
    for index, line in enumerate(lines):
        if line.startswith("cat_boundaries="):
            values = line.split("=", 1)[1].split(" ")
            values[-1] = str(int(values[-1]) + 1000)
            lines[index] = "cat_boundaries=" + " ".join(values)
            break
    write("lgb_cat_boundaries.txt", "\n".join(lines), "invalidModel", "cat_boundaries")
    write("lgb_invalid_utf8.txt", b"tree\nversion=v4\n\xff\xfe\xfd=\x80\x81\nend of trees\n", "invalidModel", "max_feature_idx")

    # Wharf linear JSON.
    linear = json.loads((FIXTURES / "models" / "linear_pipeline_scaled_logreg_binary.linear.json").read_text())

    def linear_variant(name, mutate, code, contains):
        model = json.loads(json.dumps(linear))
        mutate(model)
        write(name, json.dumps(model), code, contains)

    linear_variant("linear_short_coefficients.json", lambda m: m["coefficients"][0].pop(), "invalidModel", "coefficients[0]: has")
    linear_variant("linear_zero_scale.json", lambda m: m["standardization"]["scale"].__setitem__(0, 0.0), "invalidModel", "non-zero")
    linear_variant("linear_wrong_link.json", lambda m: m.update(link="softmax"), "invalidModel", "must use the logistic link")
    linear_variant("linear_version.json", lambda m: m.update(version=7), "invalidModel", "version 7 is not supported")

    cases.sort(key=lambda case: case["file"])
    (OUT / "manifest.json").write_text(json.dumps({"cases": cases}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(cases)} hostile files to {OUT}")


if __name__ == "__main__":
    main()
