#!/usr/bin/env python3
"""What `wharf gateway` costs: single-row inference direct to a model server and through the gateway.

Everything runs on loopback (127.0.0.1) on free ports picked at run time. The script starts two
`wharf serve` processes of the same model (replicas A and B) and two `wharf gateway` processes
(--open-inference, a temp --data-dir each, a random admin key), then loads with wrk, at 1, 16 and 64
connections (-t2, or -t1 at one connection), POST /v2/models/{m}/infer with one row (shape
[1,30], FP32, JSON: the same body as serve_compare.py):
  * direct:     to replica A itself
  * direct x2:  to replicas A and B themselves, half of wrk's connections to each (its two
                threads, one a replica; not at one connection): the same two model-server
                processes as gateway x2 with no proxy, to tell what the gateway costs from what
                a second model server on the same cores costs (information, not judged: the
                targets are read against direct)
  * relay x1:   through bench/tcp_relay.c (built with the system's C compiler; left out when there
                is none), a TCP relay with no HTTP in it, in front of replica A: the floor of one
                more hop on this machine, for reading the gateway's figures (not judged)
  * relay x2:   the same relay in front of replicas A and B, each client connection to the next
                replica in turn: the floor of one more hop when two replicas share the load
                (not judged)
  * nginx x1, nginx x2: nginx (when installed; `apt-get install nginx-light`) as an HTTP reverse
                proxy in front of A, and of A and B (least_conn), two workers, keep-alive
                connections to the replicas: what a production C proxy adds on this machine, the
                peer the gateway's figures are read against (not judged)
  * gateway x1: to the first gateway, whose deployment (`wharf deploy set`) has one replica (A)
  * gateway x2: to the second gateway, whose deployment has two replicas (A and B)
At each connection count the setups take turns: each point is measured in --slices slices (5
of 2 s by default), one slice of every setup after the other, again and again, and the slices of
a setup make its point (requests and time summed, the latency percentiles the median of the
slices'). The VM this was written on changes speed from second to second; measured one after
the other, ten seconds of one setup could fall in a fast phase and those of direct in a slow one,
and the ratio would read the VM rather than the proxy. Each setup gets a warm-up first, and its
first slice at each point one second of its own load, not measured, right before it; a gateway
not under load is idle.

Reported per point: requests/s, p50, p99 and errors (wrk's connect/read/write/timeout errors plus
responses with a status >= 400), from wrk and the Lua script of serve_compare.py whose done()
prints one JSON line; the CPUs used by the gateway, by the model servers (both process groups),
by wrk and by everything else; through the gateway with two replicas, the share of requests
replica A answered (from the replicas' /metrics). Then, per connection count: the latency the
gateway adds (gateway p50 - direct p50, and the same at p99) and the throughput ratio
gateway / direct. Before the load, each gateway's answer must be byte for byte the direct answer
for the same body (checked with urllib after its `deploy set`).

Two kinds of points:
  * saturated: each connection sends its next request as soon as the answer is in (wrk's
    usual closed loop). These give the throughput: the target is that the gateway keeps
    >= 60 % of direct req/s at 16 and 64 connections.
  * paced (--paced-rate, 2000 req/s in all by default): at 16 and 64 connections, each
    connection waits a random time, conns/rate seconds on average (exponentially distributed,
    so that arrivals are spread as from many independent clients), between requests (wrk's
    delay()), so direct and gateway get the same offered load, well below what either can
    take. These give the latency
    the gateway adds at those connection counts: the target is <= 150 µs at p50. At saturation
    the p50 is set by the throughput instead (Little's law: p50 ~ conns / req/s, so keeping 60 %
    of the throughput already means +67 % of the direct p50, about 0.6 ms at 16 connections
    here); that difference is printed, not judged. At one connection the closed loop is not
    saturated and its added p50 is judged as well.

Why: the gateway is one more HTTP hop (parse, route, forward on a pooled connection, copy the
answer back) in front of every request. Its cost is the added latency at low load and the
share of the model server's throughput it keeps when the machine is busy. wrk, the gateway and
the model servers share the same cores here (2 on the reference VM), so at 16 and 64 connections
the gateway's CPU is taken from the model server's: these are figures of the whole machine.

Usage (from the repository root, after `swift build -c release`; any Python >= 3.9, stdlib only):
    python3 bench/gateway_compare.py                 # 5 x 2 s a point, about 9 minutes
    python3 bench/gateway_compare.py --quick         # 3 x 1 s a point, about 3 minutes
    python3 bench/gateway_compare.py --json out.json --keep-logs
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_compare as sc  # noqa: E402  (free ports, bodies, wrk script, process groups)

ROOT = sc.ROOT
MODEL_NAME = sc.MODEL_NAME
SETUPS = ("direct", "direct x2", "relay x1", "relay x2", "nginx x1", "nginx x2", "gateway x1", "gateway x2")
ADDED_P50_LIMIT_US = 150
THROUGHPUT_RATIO_MIN = 0.60
# Paces each connection: wrk calls delay() before every request on a connection. The waits are
# drawn from an exponential distribution (whole milliseconds, as wrk takes them) so that the
# connections do not fire together: a fixed delay would send all of them at the same instant
# every period, and measure the queue of that burst rather than the gateway.
PACE_SCRIPT = r"""
local pace = tonumber(os.getenv("WRK_DELAY_MS") or "")
if pace and pace > 0 then
  function init(args)
    -- Each wrk thread has its own Lua state: a table's address tells them apart.
    math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000003)
  end
  function delay() return math.floor(-pace * math.log(1 - math.random()) + 0.5) end
end
-- direct x2: wrk's threads take the replicas' addresses in turn (setup() runs once a thread,
-- in the main Lua state, before it connects).
local split = os.getenv("WRK_SPLIT_ADDRS")
if split and split ~= "" then
  local addrs = {}
  for host, port in split:gmatch("([^,:]+):(%d+)") do
    addrs[#addrs + 1] = wrk.lookup(host, port)[1]
  end
  local next_addr = 0
  function setup(thread)
    thread.addr = addrs[next_addr % #addrs + 1]
    next_addr = next_addr + 1
  end
end
"""


# ---------------------------------------------------------------------------------------------
# Processes, the deployment, the answer check

def start_serve(args, tmp: Path, label: str) -> sc.Server:
    port = sc.free_port()
    cmd = [str(args.wharf), "serve", "--model", f"{MODEL_NAME}={args.model}",
           "--host", "127.0.0.1", "--port", str(port)]
    server = sc.Server(label, cmd, port, log=tmp / f"{label}.log")
    server.wait_ready(timeout=30)
    return server


def start_gateway(args, tmp: Path, key: str, label: str) -> sc.Server:
    port = sc.free_port()
    cmd = [str(args.wharf), "gateway", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(tmp / f"{label}-data"), "--admin-key", key, "--open-inference",
           "--health-interval-ms", "500"]
    server = sc.Server(label, cmd, port, log=tmp / f"{label}.log")
    server.wait_ready(timeout=30)
    return server


def start_relay(tmp: Path, upstreams: list[sc.Server], label: str) -> sc.Server | None:
    """bench/tcp_relay.c, built with the system's C compiler, in front of `upstreams`; None (and
    the relay's points left out) when there is no compiler."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    binary = tmp / "tcp_relay"
    if not binary.exists() and (
            cc is None or subprocess.run([cc, "-O2", "-pthread", str(ROOT / "bench" / "tcp_relay.c"),
                                          "-o", str(binary)], capture_output=True).returncode != 0):
        print("no C compiler: the relay points are left out", flush=True)
        return None
    port = sc.free_port()
    ports = ",".join(str(upstream.port) for upstream in upstreams)
    relay = sc.Server(label, [str(binary), str(port), ports], port, log=tmp / f"{label}.log")
    relay.wait_ready(timeout=10)
    return relay


NGINX_CONF = """
worker_processes 2;
daemon off;
pid {tmp}/{label}.pid;
error_log {tmp}/{label}.error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {tmp}/{label}-body;
  proxy_temp_path {tmp}/{label}-proxy;
  fastcgi_temp_path {tmp}/{label}-fastcgi;
  uwsgi_temp_path {tmp}/{label}-uwsgi;
  scgi_temp_path {tmp}/{label}-scgi;
  upstream replicas {{ least_conn; {servers} keepalive 64; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://replicas; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"""


def start_nginx(tmp: Path, upstreams: list[sc.Server], label: str) -> sc.Server | None:
    """nginx as a reverse proxy in front of `upstreams`; None (and its points left out) when
    nginx is not installed."""
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if nginx is None:
        print(f"no nginx: the {label} points are left out (apt-get install nginx-light)", flush=True)
        return None
    port = sc.free_port()
    conf = tmp / f"{label}.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, label=label, port=port, servers=" ".join(
        f"server 127.0.0.1:{u.port};" for u in upstreams)))
    server = sc.Server(label, [nginx, "-c", str(conf)], port, log=tmp / f"{label}.log")
    try:
        server.wait_ready(timeout=10)
    except RuntimeError as e:  # a peer that cannot start costs its points, not the run
        server.stop()
        print(f"nginx did not start ({e}): the {label} points are left out", flush=True)
        return None
    return server


def url(server: sc.Server) -> str:
    return f"http://127.0.0.1:{server.port}"


def deploy(args, gateway: sc.Server, key: str, replicas: list[sc.Server]) -> dict:
    """`wharf deploy set`: the deployment of the model, version 1, all traffic, these replicas."""
    cmd = [str(args.wharf), "deploy", "set", MODEL_NAME,
           "--target", "1=100@" + ",".join(url(r) for r in replicas),
           "--gateway", url(gateway), "--key", key]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"deploy set exited with {done.returncode}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def post(base: str, body: bytes) -> bytes:
    req = urllib.request.Request(f"{base}/v2/models/{MODEL_NAME}/infer", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{base}: HTTP {e.code}: {e.read()[:300]!r}") from e


def check_answer(gateway: sc.Server, direct: bytes, body: bytes, setup: str):
    """The gateway's answer must be the model server's, byte for byte."""
    answer = post(url(gateway), body)
    if answer != direct:
        raise RuntimeError(f"{setup}: the gateway answered {answer[:300]!r}, "
                           f"the model server {direct[:300]!r}")


def served_requests(server: sc.Server) -> int:
    """wharf_inference_requests_total{status="ok"} of a model server, from its /metrics."""
    status, text = server.get("/metrics", timeout=5)
    if status != 200:
        return -1
    total = 0
    for line in text.decode().splitlines():
        if line.startswith("wharf_inference_requests_total") and 'status="ok"' in line:
            total += int(float(line.rsplit(None, 1)[1]))
    return total


# ---------------------------------------------------------------------------------------------
# One wrk run, with the CPUs of the gateway, of the model servers, of wrk and of the rest

def run_wrk(wrk: str, script: Path, target: str, conns: int, seconds: float, body: sc.Body,
            groups: dict[str, list[sc.Server]], delay_ms: int = 0, split: str = "") -> dict:
    threads = 2 if conns >= 2 else 1
    cmd = [wrk, f"-t{threads}", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
           "-s", str(script), target]
    env = dict(os.environ, **body.env(), WRK_DELAY_MS=str(delay_ms), WRK_SPLIT_ADDRS=split)

    def cpu() -> dict[str, float]:
        return {k: sum(s.cpu_seconds() for s in v) for k, v in groups.items()}

    t0, busy0, cpu0 = time.monotonic(), sc.busy_seconds(), cpu()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall, busy, cpu1 = time.monotonic() - t0, sc.busy_seconds() - busy0, cpu()
        out.seek(0)
        text = out.read()
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {text}")
    r = json.loads(line[len("WRK_RESULT "):])
    r["errors"] = sum(r[k] for k in ("connect_errors", "read_errors", "write_errors",
                                     "status_errors", "timeouts"))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    used = {k: cpu1[k] - cpu0[k] for k in groups}
    wrk_cpu = usage.ru_utime + usage.ru_stime
    r.update({f"{k}_cpus": v / wall for k, v in used.items()}, wrk_cpus=wrk_cpu / wall,
             other_cpus=max(0.0, busy - sum(used.values()) - wrk_cpu) / wall)
    return r


def combine(parts: list[dict]) -> dict:
    """One point from its slices: counts and times summed (req/s over the whole time), CPUs
    weighted by time, the latency percentiles the median of the slices' (wrk reports
    percentiles, not its histogram), the maximum the largest."""
    total_us = sum(p["duration_us"] for p in parts)
    out = {k: sum(p[k] for p in parts) for k in (
        "requests", "duration_us", "connect_errors", "read_errors", "write_errors", "status_errors",
        "timeouts", "errors", "served_a", "served_b")}
    out["rps"] = out["requests"] / (total_us / 1e6)
    for k in ("p50_us", "p90_us", "p99_us"):
        out[k] = statistics.median(p[k] for p in parts)
    out["max_us"] = max(p["max_us"] for p in parts)
    out["mean_us"] = sum(p["mean_us"] * p["requests"] for p in parts) / max(1, out["requests"])
    for k in [k for k in parts[0] if k.endswith("_cpus")]:
        out[k] = sum(p[k] * p["duration_us"] for p in parts) / total_us
    out["slice_rps"] = [round(p["rps"]) for p in parts]
    return out


# ---------------------------------------------------------------------------------------------
# Report

def find(points: list[dict], setup: str, conns: int, paced: bool = False) -> dict | None:
    return next((p for p in points if p["setup"] == setup and p["conns"] == conns
                 and p.get("paced", False) == paced), None)


def comparisons(points: list[dict], conn_counts: list[int], paced: bool = False,
                baseline: str = "direct") -> list[dict]:
    out = []
    for c in conn_counts:
        d = find(points, baseline, c, paced)
        for setup in SETUPS[1:]:
            g = find(points, setup, c, paced)
            if d and g and (baseline == "direct" or setup.endswith(baseline[-2:])) and setup != baseline:
                out.append({"conns": c, "setup": setup, "paced": paced, "baseline": baseline,
                            "added_p50_us": g["p50_us"] - d["p50_us"],
                            "added_p99_us": g["p99_us"] - d["p99_us"],
                            "throughput_ratio": g["rps"] / d["rps"]})
    return out


def targets(comps: list[dict], proxy: str = "gateway") -> list[dict]:
    """The gateway's targets; with `proxy="nginx"`, the same targets applied to nginx's points
    (information: how the peer fares on this machine)."""
    out = []
    for c in comps:
        # The latency the gateway adds: where the load does not saturate the machine.
        if not c["setup"].startswith(proxy) or not (c["paced"] or c["conns"] == 1):
            continue
        load = f"paced {c['conns']} conns" if c["paced"] else f"{c['conns']} conn"
        out.append({"target": f"added_p50_{'paced_' if c['paced'] else ''}{c['conns']}_{c['setup'][-2:]}",
                    "text": f"{proxy} adds <= {ADDED_P50_LIMIT_US} µs at p50, {load}, "
                            f"{c['setup']} (µs)",
                    "value": c["added_p50_us"], "pass": c["added_p50_us"] <= ADDED_P50_LIMIT_US})
    for c in comps:
        if not c["setup"].startswith(proxy) or c["paced"] or c["conns"] not in (16, 64):
            continue
        out.append({"target": f"throughput_ratio_{c['conns']}_{c['setup'][-2:]}",
                    "text": f"{proxy} keeps >= {THROUGHPUT_RATIO_MIN:.0%} of direct req/s, "
                            f"{c['conns']} conns, {c['setup']}",
                    "value": c["throughput_ratio"],
                    "pass": c["throughput_ratio"] >= THROUGHPUT_RATIO_MIN})
    return out


def print_point(p: dict):
    share = f"  A {p['replica_a_share']:.0%}" if p.get("replica_a_share") is not None else ""
    paced = " paced" if p.get("paced") else ""
    print(f"   {p['setup']:<10} {p['conns']:>3} conns{paced} {p['rps']:>8.0f} req/s  p50 "
          f"{p['p50_us']/1000:7.3f} ms  p99 {p['p99_us']/1000:7.3f} ms  errors {p['errors']}  "
          f"CPUs: proxy {p['gateway_cpus']:.2f} servers {p['servers_cpus']:.2f} "
          f"wrk {p['wrk_cpus']:.2f} other {p['other_cpus']:.2f}{share}", flush=True)


def print_report(points: list[dict], comps: list[dict], checks: list[dict]):
    print("\n| setup | conns | req/s | p50 ms | p99 ms | errors | CPUs proxy / servers / wrk / other "
          "| replica A share |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for p in points:
        share = f"{p['replica_a_share']:.0%}" if p.get("replica_a_share") is not None else ""
        paced = " paced" if p.get("paced") else ""
        print(f"| {p['setup']} | {p['conns']}{paced} | {p['rps']:.0f} | {p['p50_us']/1000:.3f} | "
              f"{p['p99_us']/1000:.3f} | {p['errors']} | {p['gateway_cpus']:.2f} / "
              f"{p['servers_cpus']:.2f} / {p['wrk_cpus']:.2f} / {p['other_cpus']:.2f} | {share} |")
    print("\n| conns | through | against | p50 added µs | p99 added µs | req/s through / against |")
    print("|---:|---|---|---:|---:|---:|")
    for c in comps:
        paced = " paced" if c["paced"] else ""
        print(f"| {c['conns']}{paced} | {c['setup']} | {c['baseline']} | {c['added_p50_us']:.0f} | "
              f"{c['added_p99_us']:.0f} | {c['throughput_ratio']:.2f} |")
    if checks:
        print("\n| target | value | result |")
        print("|---|---:|---|")
        for c in checks:
            value = f"{c['value']:.0f}" if c["target"].startswith("added") else f"{c['value']:.2f}"
            print(f"| {c['text']} | {value} | {'PASS' if c['pass'] else 'FAIL'} |")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--wharf", default=str(ROOT / ".build" / "release" / "wharf"))
    p.add_argument("--model", default=str(ROOT / "bench" / "models" / "yardstick.xgb.json"))
    p.add_argument("--duration", type=float, default=10.0, help="seconds per point (10)")
    p.add_argument("--slices", type=int, default=5,
                   help="each point measured in this many slices, the setups taking turns (5)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per setup (2)")
    p.add_argument("--conns", default="1,16,64", help="connection counts (1,16,64)")
    p.add_argument("--quick", action="store_true", help="3 s per point, 1 s warm-up")
    p.add_argument("--paced-rate", type=int, default=2000,
                   help="req/s in all of the paced points at 16 and 64 conns (2000; 0: none)")
    p.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with server logs")
    return p


def main() -> int:
    args = build_parser().parse_args()
    if args.quick:
        args.duration, args.warmup, args.slices = 3.0, 1.0, 3
    slices = max(1, args.slices)
    slice_seconds = max(1, round(args.duration / slices))
    conn_counts = [int(c) for c in args.conns.split(",")]
    if not Path(args.wharf).exists():
        sys.exit(f"{args.wharf} not found: build it with `swift build -c release`")
    wrk = sc.ensure_wrk()
    tmp = Path(tempfile.mkdtemp(prefix="wharf-gateway-compare-"))
    script = tmp / "oip.lua"
    script.write_text(sc.WRK_SCRIPT + PACE_SCRIPT)
    body = sc.Body(tmp / "row1.json", sc.make_rows(1))
    raw = body.path.read_bytes()
    key = secrets.token_hex(16)
    background = [sc.busy_cpus()]
    print(f"wrk {slices} x {slice_seconds} s a point, the setups taking turns; request body {body.size} B (1 row); other processes "
          f"busy on {background[0]:.2f} of {os.cpu_count()} CPUs before the run", flush=True)

    servers: list[sc.Server] = []
    points: list[dict] = []
    failures: list[str] = []
    deployed = {}
    try:
        a = start_serve(args, tmp, "replica-a")
        servers.append(a)
        b = start_serve(args, tmp, "replica-b")
        servers.append(b)
        # One gateway per deployment shape, so that the setups can take turns without a
        # redeploy; the one not under load is idle.
        gateways = {}
        for setup in ("gateway x1", "gateway x2"):
            gateways[setup] = start_gateway(args, tmp, key, setup.replace(" ", "-"))
            servers.append(gateways[setup])
        relays = {}  # the proxies that are not the gateway: relay and nginx
        for setup, upstreams in (("relay x1", [a]), ("relay x2", [a, b])):
            relay = start_relay(tmp, upstreams, setup.replace(" ", "-"))
            if relay:
                relays[setup] = relay
                servers.append(relay)
        for setup, upstreams in (("nginx x1", [a]), ("nginx x2", [a, b])):
            proxy = start_nginx(tmp, upstreams, setup.replace(" ", "-"))
            if proxy:
                relays[setup] = proxy
                servers.append(proxy)
        setups = tuple(s for s in SETUPS if s.startswith("direct") or s.startswith("gateway") or s in relays)
        print(f"replicas A :{a.port}, B :{b.port} ready in {a.cold_start_ms:.0f} / "
              f"{b.cold_start_ms:.0f} ms; gateways :{gateways['gateway x1'].port}, "
              f":{gateways['gateway x2'].port} ready in "
              + " / ".join(f"{g.cold_start_ms:.0f}" for g in gateways.values()) + " ms", flush=True)
        direct = post(url(a), raw)
        if post(url(b), raw) != direct:
            raise RuntimeError("replicas A and B answer the same body differently")
        # The proxy column is the gateway's CPU, or the relay's (nginx's) at their points.
        # The proxy column is the gateways' CPU, or the relay's (nginx's) at their points.
        groups = {"gateway": list(gateways.values()) + list(relays.values()), "servers": [a, b]}
        replicas = {"gateway x1": [a], "gateway x2": [a, b]}
        for setup, gw in gateways.items():
            deployed[setup] = deploy(args, gw, key, replicas[setup])
            for _ in range(4):
                check_answer(gw, direct, raw, setup)

        def target_of(setup: str) -> str:
            server = {"direct": a, "direct x2": a, **relays, **gateways}[setup]
            return f"{url(server)}/v2/models/{MODEL_NAME}/infer"

        def split_of(setup: str) -> str:
            return f"127.0.0.1:{a.port},127.0.0.1:{b.port}" if setup == "direct x2" else ""

        for setup in setups:  # warm-up, not reported
            run_wrk(wrk, script, target_of(setup), 16, args.warmup, body, groups, split=split_of(setup))
        print(f"answers through the gateways equal the direct answer ({len(direct)} B)", flush=True)

        def measure(conns: int, delay_ms: int = 0):
            """One point of every setup, in slices: the setups take turns, slice by slice, so
            that each sees the same mix of the VM's fast and slow seconds (this VM's speed
            changes from second to second; measured one after the other, a setup's ten seconds
            could fall in another phase than direct's, and the ratio would read the VM, not
            the proxy). Each setup's first slice follows one second of its own load, not
            measured: replica B serves only at the x2 points."""
            # One connection is one wrk thread: direct x2 would be direct.
            here = [s for s in setups if conns >= 2 or s != "direct x2"]
            parts: dict[str, list[dict]] = {setup: [] for setup in here}
            for turn in range(slices):
                for setup in here:
                    if turn == 0:
                        run_wrk(wrk, script, target_of(setup), conns, 1, body, groups, delay_ms,
                                split_of(setup))
                    before = (served_requests(a), served_requests(b))
                    r = run_wrk(wrk, script, target_of(setup), conns, slice_seconds, body, groups,
                                delay_ms, split_of(setup))
                    after = (served_requests(a), served_requests(b))
                    r.update(served_a=after[0] - before[0], served_b=after[1] - before[1])
                    parts[setup].append(r)
            for setup in here:
                r = combine(parts[setup])
                served = r["served_a"] + r["served_b"]
                r.update(setup=setup, conns=conns, slices=len(parts[setup]),
                         replica_a_share=(r["served_a"] / served
                                          if setup.endswith("x2") and served > 0 and not delay_ms else None))
                if delay_ms:
                    r.update(paced=True, delay_ms=delay_ms)
                points.append(r)
                print_point(r)

        for conns in conn_counts:
            measure(conns)
        for conns in [c for c in conn_counts if c in (16, 64)] if args.paced_rate > 0 else []:
            measure(conns, delay_ms=max(1, round(conns * 1000 / args.paced_rate)))
    except Exception as e:  # report what was measured
        failures.append(str(e))
        print(f"!! {e}", flush=True)
    finally:
        for s in reversed(servers):
            s.stop()

    comps = comparisons(points, conn_counts) + comparisons(points, conn_counts, paced=True)
    # The x2 proxies against the same two model servers with no proxy (information).
    over_x2 = (comparisons(points, conn_counts, baseline="direct x2")
               + comparisons(points, conn_counts, paced=True, baseline="direct x2"))
    checks = targets(comps)
    print_report(points, comps + over_x2, checks)
    peer = targets(comps, proxy="nginx")
    if peer:
        print(f"\nnginx against the same targets (information): {sum(c['pass'] for c in peer)} of "
              f"{len(peer)} pass; failed: " + (", ".join(
                  f"{c['text'].split(', ', 1)[1]} {c['value']:.2f}" for c in peer if not c["pass"]) or "none"))
    for proxy in ("gateway x2", "nginx x2"):
        against = [c for c in over_x2 if c["setup"] == proxy]
        if against:
            print(f"{proxy} against direct x2 (information): " + ", ".join(
                (f"{c['added_p50_us']:+.0f} µs p50 paced {c['conns']} conns" if c["paced"] else
                 f"{c['throughput_ratio']:.2f} of the req/s at {c['conns']} conns") for c in against))
    print()
    for setup in SETUPS[1:]:
        added = [c for c in comps if c["setup"] == setup and not c["paced"]]
        if added:
            print(f"p50 added, {setup}: " + ", ".join(
                f"{c['added_p50_us']:.0f} µs at {c['conns']} conns" for c in added))
    # What the gateway adds over a hop that only copies bytes, and over nginx, to the same replicas.
    for other in ("relay", "nginx"):
        for replicas in ("x1", "x2"):
            over = []
            for paced in (False, True):
                for c in conn_counts:
                    g, r = find(points, f"gateway {replicas}", c, paced), find(points, f"{other} {replicas}", c, paced)
                    if g and r:
                        over.append(f"{g['p50_us'] - r['p50_us']:+.0f} µs at {c} conns{' paced' if paced else ''}")
            if over:
                print(f"p50, gateway {replicas} over {other} {replicas}: " + ", ".join(over))
    background.append(sc.busy_cpus())
    during = max((p["other_cpus"] for p in points), default=0.0)
    print(f"other processes busy on {background[0]:.2f} / {during:.2f} / {background[1]:.2f} CPUs "
          f"before / during (the worst point) / after the run"
          + ("  ** the machine was not quiet: do not quote these figures **"
             if max(background + [during]) > 0.2 else ""))
    for f in failures:
        print(f"FAILED {f}")
    if args.json:
        doc = {"config": {"duration_s": args.duration, "warmup_s": args.warmup,
                          "conns": conn_counts, "paced_rate": args.paced_rate,
                          "model": str(args.model), "cpus": os.cpu_count(),
                          "body_bytes": body.size, "background_cpus_before_after": background},
               "deployments": deployed, "points": points, "comparisons": comps,
               "comparisons_against_direct_x2": over_x2,
               "targets": checks, "nginx_against_the_targets": peer, "failures": failures}
        Path(args.json).write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.json}")
    if args.keep_logs:
        print(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures or not points else 0


if __name__ == "__main__":
    sys.exit(main())
