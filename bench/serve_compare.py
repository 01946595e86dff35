#!/usr/bin/env python3
"""Serve one model with `wharf serve` and with MLServer 1.7.1, and load each in turn with wrk.

Everything runs on loopback (127.0.0.1) on free ports picked at run time. For each server:
  * cold start: process start -> first 200 from GET /v2/health/ready (polled every 5 ms)
  * POST /v2/models/{m}/infer, one row (shape [1,30], FP32, JSON) at 1, 16 and 64 connections
  * the same with 1000 rows ([1000,30]) at 1 connection
  * wharf only: GET /v2/health/live at 16 and 64 connections (the ceiling of its HTTP stack)
  * server RSS (VmRSS of the server process and of its whole process group) after the load
  * wharf only, after the load: the batch request's work floor, the least time its answer can
    take on this machine with no HTTP at all (see work_floor)
Figures come from wrk (-t2, or -t1 at one connection) and a Lua script whose done() prints the
request count, the latency percentiles and the errors (connect/read/write/timeout, and responses
with a status >= 400, which wrk counts as its "Non-2xx or 3xx" figure).

MLServer runs with OMP_NUM_THREADS=1 (on 2 cores OpenMP spinning makes a 0.2 ms predict take
25-60 ms), twice: out of the box ("mlserver", default settings: one parallel inference worker
process) and tuned ("mlserver-tuned", parallel_workers=0: inference in the HTTP process, no IPC).
Its virtual environment .venv-mlserver/ is made from bench/requirements-mlserver.txt if missing,
and wrk is installed with apt-get if missing. The servers are always stopped (whole process group).

Usage (from the repository root, after `swift build -c release`; any Python >= 3.9, stdlib only):
    python3 bench/serve_compare.py                 # 10 s a point, about 3.5 minutes
    python3 bench/serve_compare.py --quick         # 3 s a point, about 1.5 minutes
    python3 bench/serve_compare.py --json out.json --no-mlserver
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAME = "yardstick"
FEATURES = 30

WRK_SCRIPT = r"""
-- Static request (POST of WRK_BODY_FILE when set, else GET); done() prints one JSON line.
local body_file = os.getenv("WRK_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE")
  local json_length = os.getenv("WRK_HEADER_LENGTH")
  if json_length and json_length ~= "" then  -- binary tensor extension
    wrk.headers["Inference-Header-Content-Length"] = json_length
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_RESULT {"requests": %d, "duration_us": %d, "connect_errors": %d, '
    .. '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""

# (name, value, threshold, passes(value, threshold), unit)
TARGET_TEXT = {
    "throughput_vs_mlserver": "wharf / MLServer req/s, 1 row, 64 conns, no errors (>= 20x)",
    "infer_vs_live_16": "wharf infer / live req/s, 16 conns (>= 0.70)",
    "infer_vs_live_64": "wharf infer / live req/s, 64 conns (>= 0.70)",
    "p99_vs_live_16": "wharf infer p99 / live p99, 16 conns (<= 2x)",
    "batch1000_p50_ms": "wharf 1000-row p50, JSON, 1 conn (<= 1 ms)",
    "rss_mb": "wharf RSS after the load (<= 50 MB)",
    "cold_start_ms": "wharf cold start to ready, median of 5 (<= 150 ms)",
}


# ---------------------------------------------------------------------------------------------
# Set-up: wrk, the MLServer venv, ports, request bodies

def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("wrk not found: installing the Debian package", flush=True)
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300"]
    if subprocess.run(apt + ["install", "-y", "wrk"], stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(apt + ["update"], stdout=subprocess.DEVNULL, check=True)
        subprocess.run(apt + ["install", "-y", "wrk"], stdout=subprocess.DEVNULL, check=True)
    return shutil.which("wrk") or sys.exit("wrk could not be installed")


def venv_python() -> str:
    """A Python that MLServer 1.7.1 supports (3.9-3.12): this one, or one on PATH."""
    if (3, 9) <= sys.version_info[:2] <= (3, 12):
        return sys.executable
    for name in ("python3.12", "python3.11", "python3.10"):
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("MLServer 1.7.1 needs Python 3.9-3.12; none found")


def ensure_mlserver(venv: Path) -> Path:
    exe = venv / "bin" / "mlserver"
    if exe.exists():
        return exe
    print(f"creating {venv} from bench/requirements-mlserver.txt (about a minute)", flush=True)
    subprocess.run([venv_python(), "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-r",
                    str(ROOT / "bench" / "requirements-mlserver.txt")], check=True)
    return exe


def busy_cpus(seconds: float = 1.0) -> float:
    """CPUs busy (from /proc/stat) over `seconds` while this script sleeps and runs no server:
    other work on the machine, which skews every figure on 2 cores."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v[:8]) - v[3] - v[4]
    b0 = snap()
    time.sleep(seconds)
    return (snap() - b0) / os.sysconf("SC_CLK_TCK") / seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_rows(n: int, seed: int = 2024) -> list[list[float]]:
    """Rows drawn like make_bench_models.make_data (without NaN: plain JSON has none), rounded
    to float32 so that every server sees exactly the same FP32 values."""
    rng = random.Random(seed)
    f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]  # noqa: E731
    rows = []
    for _ in range(n):
        row = [rng.gauss(0, 1) for _ in range(FEATURES)]
        row[5] = 0.0 if rng.random() < 0.3 else row[5]
        row[7] = float(rng.randrange(20))
        row[9] = math.exp(row[9]) * 50
        rows.append([f32(v) for v in row])
    return rows


def infer_body(rows: list[list[float]]) -> str:
    return json.dumps({"inputs": [{"name": "input-0", "shape": [len(rows), FEATURES],
                                   "datatype": "FP32", "data": [v for r in rows for v in r]}]})


class Body:
    """A request body in a file: OIP JSON, or (binary=True) the binary tensor extension: a JSON
    header, then the rows as little-endian float32, outputs asked for in binary."""

    def __init__(self, path: Path, rows: list[list[float]], binary: bool = False):
        self.path, self.header_length = path, None
        if binary:
            data = struct.pack(f"<{len(rows) * FEATURES}f", *(v for r in rows for v in r))
            header = json.dumps({"inputs": [{"name": "input-0", "shape": [len(rows), FEATURES],
                                             "datatype": "FP32",
                                             "parameters": {"binary_data_size": len(data)}}],
                                 "parameters": {"binary_data_output": True}}).encode()
            path.write_bytes(header + data)
            self.header_length, self.content_type = len(header), "application/octet-stream"
        else:
            path.write_text(infer_body(rows))
            self.content_type = "application/json"
        self.size = path.stat().st_size

    def env(self) -> dict:
        return {"WRK_BODY_FILE": str(self.path), "WRK_CONTENT_TYPE": self.content_type,
                "WRK_HEADER_LENGTH": str(self.header_length or "")}


# ---------------------------------------------------------------------------------------------
# A server process and a wrk run

class Server:
    def __init__(self, label: str, cmd: list[str], port: int, env: dict | None = None,
                 cwd: str | None = None, log: Path | None = None):
        self.label, self.port, self.log = label, port, log
        out = open(log, "wb") if log else subprocess.DEVNULL
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # own process group, killed whole
        self.cold_start_ms, self.cold_starts_ms = None, []

    def wait_ready(self, timeout: float) -> float:
        deadline = self.t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.proc.returncode} before ready"
                                   + (f"; see {self.log}" if self.log else ""))
            try:
                if self.get("/v2/health/ready", timeout=1)[0] == 200:
                    self.cold_start_ms = (time.perf_counter() - self.t0) * 1000
                    return self.cold_start_ms
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"{self.label} not ready after {timeout} s")

    def request(self, method: str, path: str, body: str | None = None, timeout: float = 30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def get(self, path: str, timeout: float = 30):
        return self.request("GET", path, timeout=timeout)

    def probabilities(self, rows) -> list[float]:
        status, data = self.request("POST", f"/v2/models/{MODEL_NAME}/infer", infer_body(rows))
        if status != 200:
            raise RuntimeError(f"{self.label} infer: HTTP {status}: {data[:300]!r}")
        outputs = json.loads(data)["outputs"]
        out = next((o for o in outputs if o["name"] in ("probability", "predict")), outputs[0])
        flat = out["data"]
        while flat and isinstance(flat[0], list):
            flat = [v for r in flat for v in r]
        return flat

    def group(self) -> list[tuple[int, list[str]]]:
        """(pid, /proc/pid/stat fields after the command name) of the server's process group."""
        members = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) == self.proc.pid:
                    members.append((int(entry), fields))
        return members

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process group (utime, stime: fields 14 and 15)."""
        ticks = sum(int(f[11]) + int(f[12]) for _, f in self.group())
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_kb(self) -> tuple[int, int]:
        """VmRSS of the server process, and summed over its process group (MLServer workers)."""
        main, total = 0, 0
        for pid, _ in self.group():
            try:
                with open(f"/proc/{pid}/status") as f:
                    kb = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            except OSError:
                continue
            total += kb
            if pid == self.proc.pid:
                main = kb
        return main, total

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers (e.g. MLServer workers)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (/proc/stat: user..steal, less idle/iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def run_wrk(wrk: str, script: Path, url: str, conns: int, seconds: float, body: Body | None,
            server: Server) -> dict:
    """One wrk run. Also measures the CPUs used by wrk, by the server, and by everything else."""
    threads = 2 if conns >= 2 else 1
    cmd = [wrk, f"-t{threads}", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
           "-s", str(script), url]
    env = dict(os.environ, **(body.env() if body else {"WRK_BODY_FILE": ""}))
    t0, busy0, server0 = time.monotonic(), busy_seconds(), server.cpu_seconds()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall, busy, server_cpu = (time.monotonic() - t0, busy_seconds() - busy0,
                                  server.cpu_seconds() - server0)
        out.seek(0)
        text = out.read()
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {text}")
    r = json.loads(line[len("WRK_RESULT "):])
    r["errors"] = sum(r[k] for k in ("connect_errors", "read_errors", "write_errors",
                                     "status_errors", "timeouts"))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    wrk_cpu = usage.ru_utime + usage.ru_stime
    r.update(server_cpus=server_cpu / wall, wrk_cpus=wrk_cpu / wall,
             other_cpus=max(0.0, busy - server_cpu - wrk_cpu) / wall)
    return r


# ---------------------------------------------------------------------------------------------
# One server, all its points

def bench_server(server: Server, args, wrk: str, script: Path, bodies: dict, rows, is_wharf: bool):
    starts = f" (median of {', '.join(f'{t:.0f}' for t in server.cold_starts_ms)})" \
        if server.cold_starts_ms else ""
    print(f"\n== {server.label}: cold start {server.cold_start_ms:.1f} ms{starts}", flush=True)
    probs_1 = server.probabilities(rows[:1])
    probs_n = server.probabilities(rows)
    base = f"http://127.0.0.1:{server.port}"
    infer = f"{base}/v2/models/{MODEL_NAME}/infer"
    points = []
    for c in (1, 16, 64):
        points.append(("infer 1 row", infer, c, bodies["1"]))
        # Each live point right after the inference point it is compared with: this VM's speed
        # drifts over minutes, and a ratio of two points a minute apart measured the drift too.
        if is_wharf and c > 1:  # MLServer has no comparable live figure here
            points.append(("live", f"{base}/v2/health/live", c, None))
    points.append((f"infer {len(rows)} rows", infer, 1, bodies["n"]))
    if is_wharf:  # MLServer has no binary extension
        points.append((f"infer {len(rows)} rows binary", infer, 1, bodies["n-binary"]))
    run_wrk(wrk, script, infer, 16, args.warmup, bodies["1"], server)  # warm-up, not reported
    results = []
    for name, url, conns, body in points:
        r = run_wrk(wrk, script, url, conns, args.duration, body, server)
        r.update(point=name, conns=conns)
        results.append(r)
        print(f"   {name:<23} {conns:>3} conns {r['rps']:>8.0f} req/s  p50 {r['p50_us']/1000:7.3f} ms"
              f"  p99 {r['p99_us']/1000:7.3f} ms  errors {r['errors']}  CPUs: server "
              f"{r['server_cpus']:.2f} wrk {r['wrk_cpus']:.2f} other {r['other_cpus']:.2f}",
              flush=True)
    main_kb, total_kb = server.rss_kb()
    return {"cold_start_ms": server.cold_start_ms, "cold_starts_ms": server.cold_starts_ms,
            "rss_mb": total_kb / 1024,
            "rss_main_mb": main_kb / 1024, "batch_rows": len(rows), "points": results,
            "probabilities_1": probs_1, "probabilities_n": probs_n}


def work_floor(args, bodies: dict, rounds: int = 5) -> dict:
    """The least time the batch request can take on this machine, with no HTTP at all.

    One CPU does the whole answer to the batch body (decode, input matrix, evaluation, outputs,
    encoding: `wharf bench-request --model`, the server's work between HTTP and HTTP), pinned;
    then two copies do it at once, one pinned to each of two CPUs, which gives how much more
    work two cores do than one (`speedup`, at most 2). Spread over both cores at that rate,
    with nothing else running, one answer takes at least the one-CPU time / speedup; with a
    perfect 2x, the one-CPU time / 2. Medians of `rounds` alternated rounds (the VM's speed
    drifts)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        raise ValueError("the work floor needs two CPUs to pin to")

    def pinned_to(cpu: int):
        return lambda: os.sched_setaffinity(0, {cpu})

    def run(cmds: list[tuple[list[str], int]]) -> float:
        """Runs the commands at once, each pinned to its CPU; their mean microseconds an answer."""
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, preexec_fn=pinned_to(cpu))
                 for cmd, cpu in cmds]
        outs = [proc.communicate()[0] for proc in procs]
        if any(proc.returncode != 0 for proc in procs):
            raise ValueError(f"wharf bench-request failed: {cmds[0][0]}")
        return sum(float(json.loads(out)["microsPerDecode"]) for out in outs) / len(outs)

    samples = {"json_us": [], "json_pair_us": [], "binary_us": [], "binary_pair_us": []}
    for _ in range(rounds):
        for label, body in (("json", bodies["n"]), ("binary", bodies["n-binary"])):
            cmd = [str(args.wharf), "bench-request", "--body", str(body.path), "--model",
                   str(args.model), "--seconds", "1", "--json"]
            if body.header_length:
                cmd += ["--header-length", str(body.header_length)]
            samples[f"{label}_us"].append(run([(cmd, cpus[-1])]))
            samples[f"{label}_pair_us"].append(run([(cmd, cpus[-1]), (cmd, cpus[-2])]))
    median = {k: sorted(v)[len(v) // 2] for k, v in samples.items()}
    out = {**median, "samples": samples}
    for label in ("json", "binary"):
        # Medians of the two, not a ratio per round: the VM's speed can change between the runs.
        speedup = min(2.0, 2 * median[f"{label}_us"] / median[f"{label}_pair_us"])
        out[f"speedup_{label}"] = speedup
        out[f"floor_{label}_ms"] = median[f"{label}_us"] / speedup / 1000
        out[f"perfect_floor_{label}_ms"] = min(samples[f"{label}_us"]) / 2 / 1000
    return out


def start_wharf(args, tmp: Path) -> Server:
    port = free_port()
    cmd = [str(args.wharf), "serve", "--model", f"{MODEL_NAME}={args.model}",
           "--host", "127.0.0.1", "--port", str(port)]
    # Cold start: the median of 5 starts (4 started and stopped here, then the measured one).
    times = []
    for i in range(5):
        server = Server("wharf", cmd, port, log=tmp / "wharf.log")
        try:
            times.append(server.wait_ready(timeout=30))
        finally:
            if i < 4:
                server.stop()
    server.cold_starts_ms = times
    server.cold_start_ms = sorted(times)[2]
    return server


def start_mlserver(args, tmp: Path, exe: Path, tuned: bool) -> Server:
    label = "mlserver-tuned" if tuned else "mlserver"
    home = tmp / label / MODEL_NAME  # folder named like the model (MLServer warns otherwise)
    home.mkdir(parents=True)
    port = free_port()
    settings = {"host": "127.0.0.1", "http_port": port, "grpc_port": free_port(),
                "metrics_port": free_port()}
    if tuned:
        settings["parallel_workers"] = 0
    (home / "settings.json").write_text(json.dumps(settings))
    (home / "model-settings.json").write_text(json.dumps({
        "name": MODEL_NAME, "implementation": "mlserver_xgboost.XGBoostModel",
        "parameters": {"uri": str(Path(args.model).resolve())}}))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    server = Server(label, [str(exe), "start", str(home)], port, env=env, cwd=str(home),
                    log=tmp / f"{label}.log")
    server.wait_ready(timeout=120)
    return server


# ---------------------------------------------------------------------------------------------
# Report

def point(res: dict | None, name: str, conns: int) -> dict | None:
    if not res:
        return None
    return next((p for p in res["points"] if p["point"] == name and p["conns"] == conns), None)


def targets(results: dict) -> list[dict]:
    w = results.get("wharf")
    if not w:
        return []
    out = []

    def add(key, value, ok):
        out.append({"target": key, "text": TARGET_TEXT[key], "value": value, "pass": ok})

    w64 = point(w, "infer 1 row", 64)
    for label in ("mlserver", "mlserver-tuned"):
        m64 = point(results.get(label), "infer 1 row", 64)
        if m64:
            ratio = w64["rps"] / m64["rps"]
            add("throughput_vs_mlserver", ratio, ratio >= 20 and w64["errors"] == 0)
            out[-1]["text"] += f" [vs {label}]"
    for c in (16, 64):
        ratio = point(w, "infer 1 row", c)["rps"] / point(w, "live", c)["rps"]
        add(f"infer_vs_live_{c}", ratio, ratio >= 0.70)
    ratio = point(w, "infer 1 row", 16)["p99_us"] / max(point(w, "live", 16)["p99_us"], 1)
    add("p99_vs_live_16", ratio, ratio <= 2.0)
    p50 = point(w, f"infer {w['batch_rows']} rows", 1)["p50_us"] / 1000
    add("batch1000_p50_ms", p50, p50 <= 1.0)
    add("rss_mb", w["rss_mb"], w["rss_mb"] <= 50)
    add("cold_start_ms", w["cold_start_ms"], w["cold_start_ms"] <= 150)
    return out


def print_report(results: dict, checks: list[dict]):
    print("\n| server | request | conns | req/s | p50 ms | p99 ms | errors | CPUs server / wrk / other |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for label, res in results.items():
        for p in res["points"]:
            print(f"| {label} | {p['point']} | {p['conns']} | {p['rps']:.0f} | "
                  f"{p['p50_us']/1000:.3f} | {p['p99_us']/1000:.3f} | {p['errors']} | "
                  f"{p['server_cpus']:.2f} / {p['wrk_cpus']:.2f} / {p['other_cpus']:.2f} |")
    print("\n| server | cold start ms | RSS MB (process group) | RSS MB (main process) |")
    print("|---|---:|---:|---:|")
    for label, res in results.items():
        print(f"| {label} | {res['cold_start_ms']:.1f} | {res['rss_mb']:.1f} | "
              f"{res['rss_main_mb']:.1f} |")
    w = results.get("wharf")
    for label in ("mlserver", "mlserver-tuned"):
        m = results.get(label)
        if w and m:
            print(f"\nwharf / {label} req/s: " + ", ".join(
                f"{p['point']} @{p['conns']}: {p['rps'] / point(m, p['point'], p['conns'])['rps']:.1f}x"
                for p in w["points"] if point(m, p["point"], p["conns"])))
    if checks:
        print("\n| target | value | result |")
        print("|---|---:|---|")
        for c in checks:
            print(f"| {c['text']} | {c['value']:.3f} | {'PASS' if c['pass'] else 'FAIL'} |")


def agreement(results: dict) -> float | None:
    """Largest |difference| between the servers' probabilities on the same rows."""
    labels = [k for k in results if results[k].get("probabilities_n")]
    if len(labels) < 2:
        return None
    ref = results[labels[0]]
    return max(abs(a - b) for k in labels[1:] for key in ("probabilities_1", "probabilities_n")
               for a, b in zip(ref[key], results[k][key]))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--wharf", default=str(ROOT / ".build" / "release" / "wharf"))
    p.add_argument("--model", default=str(ROOT / "bench" / "models" / "yardstick.xgb.json"))
    p.add_argument("--duration", type=float, default=10.0, help="seconds per point (10)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per server (2)")
    p.add_argument("--quick", action="store_true", help="3 s per point, 1 s warm-up")
    p.add_argument("--batch", type=int, default=1000, help="rows in the batch request (1000)")
    p.add_argument("--mlserver-venv", default=str(ROOT / ".venv-mlserver"))
    p.add_argument("--no-mlserver", action="store_true", help="wharf only")
    p.add_argument("--no-wharf", action="store_true", help="MLServer only")
    p.add_argument("--no-mlserver-default", action="store_true",
                   help="skip the out-of-the-box MLServer run (keep the tuned one)")
    p.add_argument("--no-floor", action="store_true",
                   help="skip the batch request's work floor (wharf bench-request, ~30 s)")
    p.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with server logs")
    return p


def main() -> int:
    args = build_parser().parse_args()
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    wrk = ensure_wrk()
    exe = None if args.no_mlserver else ensure_mlserver(Path(args.mlserver_venv))
    if not args.no_wharf and not Path(args.wharf).exists():
        print(f"{args.wharf} not found: skipping wharf (build it with `swift build -c release`)")
        args.no_wharf = True
    tmp = Path(tempfile.mkdtemp(prefix="wharf-serve-compare-"))
    script = tmp / "oip.lua"
    script.write_text(WRK_SCRIPT)
    rows = make_rows(args.batch)
    bodies = {"1": Body(tmp / "row1.json", rows[:1]), "n": Body(tmp / "rows.json", rows),
              "n-binary": Body(tmp / "rows.bin", rows, binary=True)}
    background = [busy_cpus()]
    print(f"wrk {args.duration:g} s a point; request bodies {bodies['1'].size} B (1 row), "
          f"{bodies['n'].size} B ({args.batch} rows), {bodies['n-binary'].size} B (binary); "
          f"other processes busy on {background[0]:.2f} of {os.cpu_count()} CPUs before the run")

    plan = [] if args.no_wharf else [("wharf", lambda: start_wharf(args, tmp), True)]
    if exe and not args.no_mlserver_default:
        plan.append(("mlserver", lambda: start_mlserver(args, tmp, exe, False), False))
    if exe:
        plan.append(("mlserver-tuned", lambda: start_mlserver(args, tmp, exe, True), False))
    results, failures = {}, []
    for label, start, live in plan:
        server = None
        try:
            server = start()
            results[label] = bench_server(server, args, wrk, script, bodies, rows, live)
        except Exception as e:  # report and go on with the next server
            failures.append(f"{label}: {e}")
            print(f"!! {label}: {e}", flush=True)
        finally:
            if server:
                server.stop()

    floor = None
    if "wharf" in results and not args.no_floor:
        try:
            floor = work_floor(args, bodies)
        except (subprocess.CalledProcessError, ValueError, KeyError) as e:
            failures.append(f"work floor: {e}")
    checks = targets(results)
    print_report(results, checks)
    if floor:
        print(f"\nthe {args.batch}-row request's work, no HTTP (medians of 5 alternated rounds, "
              f"`wharf bench-request --model`, pinned): one CPU answers the JSON body in "
              f"{floor['json_us'] / 1000:.2f} ms and the binary one in {floor['binary_us'] / 1000:.2f} ms; "
              f"two CPUs at once do {floor['speedup_json']:.2f}x / {floor['speedup_binary']:.2f}x the "
              f"work of one; so on both cores, with nothing else running, an answer takes at least "
              f"{floor['floor_json_ms']:.2f} ms (JSON) / {floor['floor_binary_ms']:.2f} ms (binary) "
              f"before any HTTP; with a perfect 2x and the fastest one-CPU round, "
              f"{floor['perfect_floor_json_ms']:.2f} / {floor['perfect_floor_binary_ms']:.2f} ms")
    diff = agreement(results)
    if diff is not None:
        print(f"\nlargest probability difference between the servers on the same rows: {diff:.2e}")
    background.append(busy_cpus())
    during = max((p["other_cpus"] for r in results.values() for p in r["points"]), default=0.0)
    print(f"other processes busy on {background[0]:.2f} / {during:.2f} / {background[1]:.2f} CPUs "
          f"before / during (the worst point) / after the run"
          + ("  ** the machine was not quiet: do not quote these figures **"
             if max(background + [during]) > 0.2 else ""))
    for f in failures:
        print(f"FAILED {f}")
    if args.json:
        doc = {"config": {"duration_s": args.duration, "batch_rows": args.batch,
                          "model": str(args.model), "cpus": os.cpu_count(),
                          "background_cpus_before_after": background},
               "servers": {k: {kk: vv for kk, vv in v.items() if not kk.startswith("probabilities")}
                           for k, v in results.items()},
               "targets": checks, "max_probability_difference": diff, "work_floor": floor,
               "failures": failures}
        Path(args.json).write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.json}")
    if args.keep_logs:
        print(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
