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

`wharf bench-bus` gives the in-process figures (append, read, lookup without HTTP). NATS
JetStream is not measured: that backend does not exist yet.

Usage (after `swift build -c release`; any Python >= 3.9, stdlib only):
    python3 bench/hub_compare.py                 # about 20 s
    python3 bench/hub_compare.py --seconds 3 --probes 100
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wharf", default=str(ROOT / ".build/release/wharf"))
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--lookups", type=int, default=3000)
    args = parser.parse_args()

    data = Path(tempfile.mkdtemp(prefix="wharf-hub-bench-"))
    port = free_port()
    hub = subprocess.Popen([args.wharf, "hub", "--port", str(port), "--data-dir", str(data), "--token", TOKEN],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 30
        while True:
            try:
                if Client(port).call("GET", "/v1/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("the hub did not start")
            time.sleep(0.05)
        setup = Client(port)
        definition = {"name": "clicks", "entity_key": "user", "features": {"seq": "number", "page": "string"}}
        assert setup.call("PUT", "/v1/streams/clicks", json.dumps(definition).encode())[0] == 200
        view = {"name": "activity", "stream": "clicks", "features": ["seq", "page"]}
        assert setup.call("PUT", "/v1/views/activity", json.dumps(view).encode())[0] == 200

        # Ingest.
        accepted = [0] * args.clients
        stop = time.time() + args.seconds

        def produce(index: int):
            client = Client(port)
            seq = index * 10_000_000
            while time.time() < stop:
                lines = "\n".join(json.dumps({"user": f"u{(seq + i) % 5000}", "seq": seq + i, "page": "home"}) for i in range(args.batch))
                status, result = client.call("POST", "/v1/streams/clicks/events", lines.encode(), "application/x-ndjson")
                assert status == 200 and result["accepted"] == args.batch, result
                accepted[index] += args.batch
                seq += args.batch

        # Batches are built while timing, as a producer would: the Python clients' JSON encoding
        # takes CPU on the same two cores, so this is a floor for the hub.
        start = time.time()
        threads = [threading.Thread(target=produce, args=(i,)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.time() - start
        ingest = sum(accepted) / elapsed

        # Freshness.
        client = Client(port)
        fresh = []
        for probe in range(args.probes):
            value = 1_000_000_000 + probe
            sent = time.perf_counter()
            status, _ = client.call("POST", "/v1/streams/clicks/events", json.dumps({"user": "fresh", "seq": value}).encode())
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

        print(f"ingest over HTTP: {ingest:,.0f} events/s ({args.clients} clients, batches of {args.batch} NDJSON, {sum(accepted):,} events in {elapsed:.1f} s)")
        print(f"freshness (event sent -> visible online): p50 {percentile(fresh, .5):.2f} ms, p99 {percentile(fresh, .99):.2f} ms over {len(fresh)} probes")
        print(f"online lookup over HTTP: p50 {percentile(latencies, .5):.3f} ms, p99 {percentile(latencies, .99):.3f} ms over {len(latencies)} lookups")
        print("in process (no HTTP): run `.build/release/wharf bench-bus`")
        targets = [
            ("freshness p99 <= 100 ms", percentile(fresh, .99) <= 100),
        ]
        for text, ok in targets:
            print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    finally:
        hub.send_signal(signal.SIGTERM)
        try:
            hub.wait(timeout=10)
        except subprocess.TimeoutExpired:
            hub.kill()
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
