#!/usr/bin/env python3
"""The hub's figures in one run: ingest throughput, freshness and online lookup latency.

Starts `wharf hub` (release build) on a free loopback port with a fresh data directory,
declares a stream `clicks` (entity `user`, features `seq` number and `page` string) and a view
over it, then measures, over HTTP with persistent connections:

  * ingest: NDJSON batches of --batch events (default 1000) from --clients concurrent clients
    for --seconds; events/s accepted (every answer checked: all accepted)
  * freshness: one event with a new value, then lookups of its entity until the value shows;
    milliseconds from sending the event to seeing it, p50 / p99 over --probes probes
  * lookup: GET /v1/features/{view}/{entity} for random known entities; p50 / p99 in ms

All of it twice: with the embedded log (SQLite, WAL) and with the log in NATS JetStream
(`wharf hub --bus nats://...`, a `nats-server -js` started here on a free port with a fresh
store directory; Debian package `nats-server`). Then `wharf bench-bus` for each backend gives
the in-process figures: append and read throughput (batches of 1000, no HTTP, no JSON
checking) and online lookup latency.

Usage (after `swift build -c release`; any Python >= 3.9, stdlib only):
    python3 bench/hub_compare.py                 # about 50 s
    python3 bench/hub_compare.py --seconds 3 --probes 100 --no-nats
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"):
        headers = {"authorization": f"Bearer {TOKEN}"}
        if body is not None:
            headers["content-type"] = content_type
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else {})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.999999) - 1))]


def wait_ready(port: int) -> None:
    deadline = time.time() + 30
    while True:
        try:
            if Client(port).call("GET", "/v1/health/ready")[0] == 200:
                return
        except OSError:
            pass
        if time.time() > deadline:
            sys.exit("the hub did not start")
        time.sleep(0.05)


def measure(args, bus: str | None) -> dict:
    """Ingest, freshness and lookups over HTTP against one hub process."""
    data = Path(tempfile.mkdtemp(prefix="wharf-hub-bench-"))
    port = free_port()
    command = [args.wharf, "hub", "--port", str(port), "--data-dir", str(data), "--token", TOKEN]
    if bus:
        command += ["--bus", bus]
    hub = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(port)
        setup = Client(port)
        # A stream name of this run's own: a NATS server may hold earlier runs' streams.
        stream = f"clicks{random.randrange(10**9)}"
        definition = {"name": stream, "entity_key": "user", "features": {"seq": "number", "page": "string"}}
        assert setup.call("PUT", f"/v1/streams/{stream}", json.dumps(definition).encode())[0] == 200
        view = {"name": "activity", "stream": stream, "features": ["seq", "page"]}
        assert setup.call("PUT", "/v1/views/activity", json.dumps(view).encode())[0] == 200

        # Ingest.
        accepted = [0] * args.clients
        stop = time.time() + args.seconds

        # Batches are built before timing (a producer's own encoding is not the hub's work; the
        # clients still parse each answer on the same two cores).
        batches = []
        for index in range(args.clients):
            mine = []
            for b in range(20):
                seq = index * 10_000_000 + b * args.batch
                mine.append("\n".join(json.dumps({"user": f"u{(seq + i) % 5000}", "seq": seq + i, "page": "home"})
                                      for i in range(args.batch)).encode())
            batches.append(mine)

        def produce(index: int):
            client = Client(port)
            sent = 0
            while time.time() < stop:
                body = batches[index][sent % len(batches[index])]
                status, result = client.call("POST", f"/v1/streams/{stream}/events", body, "application/x-ndjson")
                assert status == 200 and result["accepted"] == args.batch, result
                accepted[index] += args.batch
                sent += 1

        start = time.time()
        threads = [threading.Thread(target=produce, args=(i,)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.time() - start

        # Freshness.
        client = Client(port)
        fresh = []
        for probe in range(args.probes):
            value = 1_000_000_000 + probe
            sent = time.perf_counter()
            status, _ = client.call("POST", f"/v1/streams/{stream}/events", json.dumps({"user": "fresh", "seq": value}).encode())
            assert status == 200
            while True:
                status, result = client.call("GET", "/v1/features/activity/fresh")
                if status == 200 and result.get("features", {}).get("seq") == value:
                    break
            fresh.append((time.perf_counter() - sent) * 1000)

        # Lookups.
        latencies = []
        for _ in range(args.lookups):
            entity = f"u{random.randrange(5000)}"
            started = time.perf_counter()
            status, _ = client.call("GET", f"/v1/features/activity/{entity}")
            latencies.append((time.perf_counter() - started) * 1000)
            assert status == 200
        return {"ingest": sum(accepted) / elapsed, "events": sum(accepted), "elapsed": elapsed, "fresh": fresh, "lookups": latencies}
    finally:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(timeout=10)
        except subprocess.TimeoutExpired:
            hub.kill()
        shutil.rmtree(data, ignore_errors=True)


def bench_bus(args, bus: str | None) -> dict:
    command = [args.wharf, "bench-bus", "--json", "--events", str(args.bus_events)]
    if bus:
        command += ["--bus", bus]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def start_nats():
    """A throwaway `nats-server -js` on a free port; returns (url, process, store directory)."""
    server = shutil.which("nats-server")
    if not server:
        sys.exit("nats-server is not installed (apt-get install -y nats-server), or pass --no-nats")
    store = Path(tempfile.mkdtemp(prefix="wharf-nats-bench-"))
    port = free_port()
    process = subprocess.Popen([server, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store), "-l", str(store / "nats.log"),
                                "--ports_file_dir", str(store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while not list(store.glob("*.ports")):
        if time.time() > deadline or process.poll() is not None:
            sys.exit("nats-server did not start")
        time.sleep(0.05)
    return f"nats://127.0.0.1:{port}", process, store


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wharf", default=str(ROOT / ".build/release/wharf"))
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--lookups", type=int, default=3000)
    parser.add_argument("--bus-events", type=int, default=200_000, help="events appended by wharf bench-bus")
    parser.add_argument("--no-nats", action="store_true", help="measure the embedded log only")
    args = parser.parse_args()

    backends: list[tuple[str, str | None]] = [("embedded (SQLite)", None)]
    nats = None
    if not args.no_nats:
        url, process, store = start_nats()
        nats = (process, store)
        backends.append(("NATS JetStream", url))
    try:
        results = []
        for name, bus in backends:
            http_figures = measure(args, bus)
            in_process = bench_bus(args, bus)
            results.append((name, http_figures, in_process))
    finally:
        if nats:
            nats[0].terminate()
            nats[0].wait(timeout=10)
            shutil.rmtree(nats[1], ignore_errors=True)

    print(f"hub, {args.clients} HTTP clients sending NDJSON batches of {args.batch}; bench-bus: {args.bus_events:,} events in batches of 1000")
    print(f"{'backend':<20} {'HTTP ingest/s':>14} {'append/s':>10} {'read/s':>10} {'fresh p50':>10} {'fresh p99':>10} "
          f"{'HTTP lookup p50':>16} {'p99':>8} {'in-proc lookup p99':>19}")
    for name, h, b in results:
        print(f"{name:<20} {h['ingest']:>14,.0f} {b['appendEventsPerSecond']:>10,.0f} {b['readEventsPerSecond']:>10,.0f} "
              f"{percentile(h['fresh'], .5):>8.2f}ms {percentile(h['fresh'], .99):>8.2f}ms "
              f"{percentile(h['lookups'], .5):>14.3f}ms {percentile(h['lookups'], .99):>6.3f}ms {b['lookupP99Microseconds'] / 1000:>17.3f}ms")
    embedded = results[0]
    targets = [
        ("embedded ingest >= 100k events/s (append, in process)", embedded[2]["appendEventsPerSecond"] >= 100_000),
        ("freshness p99 <= 100 ms (embedded)", percentile(embedded[1]["fresh"], .99) <= 100),
        ("online lookup p99 <= 1 ms in process (embedded)", embedded[2]["lookupP99Microseconds"] <= 1000),
    ]
    if len(results) > 1:
        nats_result = results[1]
        targets += [
            ("NATS ingest >= 50k events/s (append, in process)", nats_result[2]["appendEventsPerSecond"] >= 50_000),
            ("freshness p99 <= 100 ms (NATS)", percentile(nats_result[1]["fresh"], .99) <= 100),
        ]
    for text, ok in targets:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
