#!/usr/bin/env python3
"""Open Inference Protocol (v2 REST) conformance of a running server, checked with stock clients.

Clients, used as they come:
  * tritonclient.http.InferenceServerClient with its default settings: inputs go as binary
    tensors, all outputs are asked for in binary (`binary_data_output`), and no Content-Type
    header is sent;
  * KServe's InferenceRESTClient (protocol v2), when the `kserve` package can be imported;
    its checks are reported as SKIP otherwise.
Probabilities are compared with xgboost's own Booster.predict on the same rows (to --tolerance,
1e-6) from the model file given with --model-file. One line per check, PASS/FAIL/SKIP; the exit
status is 1 when any check failed.

Set-up (once, from the repository root; kserve is optional):
    python3 -m venv .venv-conformance
    .venv-conformance/bin/pip install -r scripts/conformance/requirements.txt
    .venv-conformance/bin/pip install -r scripts/conformance/requirements-kserve.txt
Run against a server that is already up:
    .build/release/wharf serve --model yardstick=bench/models/yardstick.xgb.json --port 8080 &
    .venv-conformance/bin/python scripts/oip_conformance.py --url 127.0.0.1:8080 \
        --model yardstick --model-file bench/models/yardstick.xgb.json --expected-features 30
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / ".venv-conformance" / "bin" / "python"

try:
    import numpy as np
    import tritonclient.http as triton
except ImportError as missing:
    if VENV_PYTHON.exists() and Path(sys.executable) != VENV_PYTHON and "OIP_REEXEC" not in os.environ:
        os.environ["OIP_REEXEC"] = "1"  # run again inside the project's venv
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])
    sys.exit(f"{missing}: set up .venv-conformance first (see this script's docstring)")


class Checks:
    def __init__(self):
        self.failed = 0
        self.counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}

    def run(self, name: str, fn, verbose: bool = False):
        try:
            detail = fn()
            self.report("PASS", name, detail or "")
        except Exception as e:  # a failed assertion, an HTTP error, a client exception
            self.report("FAIL", name, f"{type(e).__name__}: {e}".replace("\n", " ")[:400])
            if verbose:
                traceback.print_exc()

    def report(self, status: str, name: str, detail: str = ""):
        self.counts[status] += 1
        print(f"{status:<4}  {name}" + (f"  ({detail})" if detail else ""), flush=True)


def expect(condition: bool, message: str):
    if not condition:
        raise AssertionError(message)


def compare(got, want, tol: float) -> str:
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    expect(got.shape == want.shape, f"{got.shape[0]} values for {want.shape[0]} rows")
    diff = float(np.max(np.abs(got - want)))
    expect(diff <= tol, f"max |difference| from xgboost {diff:.3g} > {tol:g}")
    return f"{want.shape[0]} rows, max |diff| {diff:.1e}"


def make_rows(n: int, features: int, nan: bool) -> np.ndarray:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, features)).astype(np.float32)
    X[:, min(9, features - 1)] = np.exp(X[:, min(9, features - 1)]) * 50
    if nan:
        X[rng.random(X.shape) < 0.05] = np.nan
    return X


def fixture_rows(name: str, features: int):
    """Rows of a committed fixture: those without missing values, and those with."""
    directory = ROOT / "Tests" / "Fixtures" / "models"
    def read(path):
        lines = path.read_text().splitlines()[1:]
        return np.array([[float(cell) if cell not in ("", "NaN") else np.nan for cell in line.split(",")]
                         for line in lines], dtype=np.float64)
    X = read(directory / f"{name}.input.csv")
    want = read(directory / f"{name}.expected.csv")[:, 0]
    expect(X.shape[1] == features, f"fixture {name} has {X.shape[1]} features, not {features}")
    # XGBoost reads float32, so float32 rows give the library's answers exactly.
    complete = ~np.isnan(X).any(axis=1)
    X32 = X.astype(np.float32)
    return X32[complete], want[complete], X32[~complete], want[~complete]


# ---------------------------------------------------------------------------------------------
# tritonclient

def triton_checks(args, checks: Checks, X: np.ndarray, want, want_nan, X_nan):
    client = triton.InferenceServerClient(url=args.host_port)  # default settings throughout
    model, n, f = args.model, X.shape[0], X.shape[1]

    def tensor(arr: np.ndarray, datatype: str, binary: bool = True):
        t = triton.InferInput("input-0", list(arr.shape), datatype)
        t.set_data_from_numpy(arr, binary_data=binary)
        return t

    def outputs_of(result, want_binary: bool | None = None) -> dict:
        response = result.get_response()
        by_name = {o["name"]: o for o in response["outputs"]}
        expect(args.output in by_name, f"no '{args.output}' output in {sorted(by_name)}")
        if want_binary is not None:
            binary = "binary_data_size" in (by_name[args.output].get("parameters") or {})
            expect(binary == want_binary, f"'{args.output}' came back "
                   f"{'binary' if binary else 'as JSON'}, asked for "
                   f"{'binary' if want_binary else 'JSON'}")
        return by_name

    def check_label(result, prob):
        if not args.label_output:
            return ""
        label = result.as_numpy(args.label_output)
        expect(label is not None, f"no '{args.label_output}' output")
        label = label.reshape(-1)
        decided = np.abs(want - 0.5) > 1e-6
        expect(np.array_equal(label[decided], (want[decided] > 0.5).astype(label.dtype)),
               "labels differ from probability > 0.5")
        return f", {args.label_output} {label.dtype}"

    def live():
        expect(client.is_server_live(), "is_server_live() is False")

    def ready():
        expect(client.is_server_ready(), "is_server_ready() is False")

    def server_metadata():
        meta = client.get_server_metadata()
        for key in ("name", "version", "extensions"):
            expect(key in meta, f"no '{key}' in {meta}")
        expect(isinstance(meta["extensions"], list), "'extensions' is not a list")
        return f"{meta['name']} {meta['version']}, extensions {meta['extensions']}"

    def model_metadata():
        meta = client.get_model_metadata(model)
        expect(meta.get("name") == model, f"name {meta.get('name')!r}")
        for key in ("platform", "inputs", "outputs"):
            expect(key in meta, f"no '{key}' in model metadata")
        expect(len(meta["inputs"]) > 0, "no inputs in model metadata")
        shape = meta["inputs"][0]["shape"]
        expect(shape[-1] in (f, -1), f"input shape {shape}, expected last dimension {f}")
        names = [o["name"] for o in meta["outputs"]]
        expect(args.output in names, f"outputs {names} lack '{args.output}'")
        return f"inputs {[(i['name'], i['datatype'], i['shape']) for i in meta['inputs']]}, " \
               f"outputs {[(o['name'], o['datatype'], o['shape']) for o in meta['outputs']]}"

    def model_ready():
        expect(client.is_model_ready(model), "is_model_ready() is False")

    def unknown_model_not_ready():
        expect(not client.is_model_ready(model + "-no-such-model"), "an unknown model is ready")

    def infer_binary():  # the stock default: binary input, all outputs in binary
        result = client.infer(model, [tensor(X, "FP32")])
        outputs_of(result, want_binary=True)
        prob = result.as_numpy(args.output)
        return compare(prob, want, args.tolerance) + check_label(result, prob)

    def infer_binary_requested():  # outputs named, binary (InferRequestedOutput's default)
        outs = [triton.InferRequestedOutput(args.output)]
        result = client.infer(model, [tensor(X, "FP32")], outputs=outs)
        outputs_of(result, want_binary=True)
        return compare(result.as_numpy(args.output), want, args.tolerance)

    def infer_json():
        outs = [triton.InferRequestedOutput(args.output, binary_data=False)]
        result = client.infer(model, [tensor(X, "FP32", binary=False)], outputs=outs)
        outputs_of(result, want_binary=False)
        return compare(result.as_numpy(args.output), want, args.tolerance)

    def infer_fp64():
        result = client.infer(model, [tensor(X.astype(np.float64), "FP64")])
        return compare(result.as_numpy(args.output), want, args.tolerance)

    def infer_nan():
        result = client.infer(model, [tensor(X_nan, "FP32")])
        return compare(result.as_numpy(args.output), want_nan, args.tolerance) + \
            f", {int(np.isnan(X_nan).sum())} NaN inputs"

    def request_id():
        rid = "oip-conformance-42"
        outs = [triton.InferRequestedOutput(args.output, binary_data=False)]
        result = client.infer(model, [tensor(X[:1], "FP32", binary=False)], outputs=outs,
                              request_id=rid)
        got = result.get_response().get("id")
        expect(got == rid, f"id {got!r}, sent {rid!r}")

    def wrong_features_rejected():
        bad = np.zeros((1, f + 1), dtype=np.float32)
        try:
            client.infer(model, [tensor(bad, "FP32")])
        except triton.InferenceServerException as e:
            expect(str(e.status()) == "400", f"HTTP {e.status()}, expected 400")
            return f"HTTP 400: {e.message()[:80]}"
        raise AssertionError(f"a [1,{f + 1}] input was accepted")

    prefix = "tritonclient:"
    for name, fn in [("server live", live), ("server ready", ready),
                     ("server metadata", server_metadata), ("model metadata", model_metadata),
                     ("model ready", model_ready),
                     ("unknown model is not ready", unknown_model_not_ready),
                     ("infer FP32 binary input, binary outputs (defaults)", infer_binary),
                     ("infer FP32 binary input, requested binary output", infer_binary_requested),
                     ("infer FP32 JSON input, JSON output", infer_json),
                     ("infer FP64 binary input", infer_fp64),
                     ("infer FP32 binary input with NaN", infer_nan),
                     ("request id echoed (JSON)", request_id),
                     ("wrong feature count -> 400", wrong_features_rejected)]:
        checks.run(f"{prefix} {name}", fn, args.verbose)
    client.close()


# ---------------------------------------------------------------------------------------------
# KServe InferenceRESTClient (optional)

def kserve_checks(args, checks: Checks, X: np.ndarray, want):
    names = ["server live", "server ready", "model ready", "infer FP32 JSON input",
             "infer FP32 binary input", "request id echoed"]
    try:
        from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
    except Exception as e:  # not installed, or it does not import on this Python
        for name in names:
            checks.report("SKIP", f"kserve: {name}", f"kserve not importable: {type(e).__name__}")
        return
    base = args.base_url

    async def main():
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))

        def request(binary: bool, rows=X, rid=None):
            t = InferInput("input-0", list(rows.shape), "FP32")
            t.set_data_from_numpy(rows, binary_data=binary)
            return InferRequest(args.model, [t], request_id=rid)

        async def live():
            expect(await client.is_server_live(base) is True, "is_server_live() is not True")

        async def ready():
            expect(await client.is_server_ready(base) is True, "is_server_ready() is not True")

        async def model_ready():
            expect(await client.is_model_ready(base, args.model), "is_model_ready() is False")

        async def infer(binary: bool):
            response = await client.infer(base, request(binary), model_name=args.model)
            out = next((o for o in response.outputs if o.name == args.output), None)
            expect(out is not None, f"no '{args.output}' output")
            return compare(out.as_numpy(), want, args.tolerance)

        async def request_id():
            rid = "oip-conformance-kserve-7"
            response = await client.infer(base, request(False, X[:1], rid), model_name=args.model)
            expect(response.id == rid, f"id {response.id!r}, sent {rid!r}")

        for name, make in zip(names, [live, ready, model_ready, lambda: infer(False),
                                      lambda: infer(True), request_id]):
            try:
                detail = await make()
                checks.report("PASS", f"kserve: {name}", detail or "")
            except Exception as e:
                checks.report("FAIL", f"kserve: {name}",
                              f"{type(e).__name__}: {e}".replace("\n", " ")[:400])
        await client.close()

    asyncio.run(main())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="127.0.0.1:8080", help="host:port (or http://host:port)")
    p.add_argument("--model", default="yardstick", help="model name on the server")
    p.add_argument("--model-file", default=str(ROOT / "bench" / "models" / "yardstick.xgb.json"),
                   help="the XGBoost model file the server serves (for the expected values)")
    p.add_argument("--fixture", help="take rows and expected probabilities from the committed "
                   "fixture Tests/Fixtures/models/NAME.{input,expected}.csv instead of running "
                   "xgboost (what CI does: it needs no xgboost)")
    p.add_argument("--expected-features", type=int, default=30)
    p.add_argument("--rows", type=int, default=64, help="rows per inference request (64)")
    p.add_argument("--output", default="probability", help="probability output name")
    p.add_argument("--label-output", default="label", help="label output name ('' = none)")
    p.add_argument("--tolerance", type=float, default=1e-6)
    p.add_argument("--no-kserve", action="store_true", help="tritonclient checks only")
    p.add_argument("--verbose", action="store_true", help="print tracebacks of failures")
    args = p.parse_args()
    args.host_port = args.url.split("://", 1)[-1].rstrip("/")
    args.base_url = f"http://{args.host_port}"

    if args.fixture:
        X, want, X_nan, want_nan = fixture_rows(args.fixture, args.expected_features)
        source = f"fixture {args.fixture} (made by the library)"
    else:
        import xgboost as xgb
        booster = xgb.Booster(model_file=args.model_file)
        if booster.num_features() != args.expected_features:
            sys.exit(f"{args.model_file} has {booster.num_features()} features, "
                     f"not {args.expected_features}")
        X = make_rows(args.rows, args.expected_features, nan=False)
        X_nan = make_rows(args.rows, args.expected_features, nan=True)
        want = booster.predict(xgb.DMatrix(X)).astype(np.float64)
        want_nan = booster.predict(xgb.DMatrix(X_nan)).astype(np.float64)
        source = f"xgboost {xgb.__version__}"
    print(f"server {args.base_url}, model {args.model}, {X.shape[0]} rows x "
          f"{args.expected_features} features, expected values from {source}")

    checks = Checks()
    triton_checks(args, checks, X, want, want_nan, X_nan)
    if args.no_kserve:
        checks.report("SKIP", "kserve: all checks", "--no-kserve")
    else:
        kserve_checks(args, checks, X, want)
    c = checks.counts
    print(f"{c['PASS']} passed, {c['FAIL']} failed, {c['SKIP']} skipped")
    return 1 if c["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
