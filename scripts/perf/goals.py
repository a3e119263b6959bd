#!/usr/bin/env python3
"""The performance goals of embedded mode (docs/results/performance.md), measured on this machine with the load
generator beside the server: one line per goal with the figure, the target and pass/fail.

    python3 scripts/perf/goals.py BINARY [--duration 60] [--results docs/results/performance.md]

1. End to end: wrk sends for --duration s (1 thread, 64 connections, 1,000 conversations, each message to an
   internal user); the run ends when the router has delivered every accepted message. Counted, not sampled:
   accepted (HTTP 202) = stored and DELIVERED, from the server's own counters, and 0 errors.
2. Accept path against a bare POST: the same wrk load for 15 s on POST /v1/messages and on the benchmark endpoint
   POST /bench/messages (same JSON, same token check, 202 without storing; only with --bench-endpoints).
5. RSS of the server at goal 1's load.
Goals 3 (open-model p99 and knee: `chat4all loadtest capacity`), 4 (history in a 10^6-message store) and the soak
are not run by this script yet.
"""
import argparse, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
opts = argparse.ArgumentParser(description=__doc__.splitlines()[0])
opts.add_argument("binary")
opts.add_argument("--duration", type=int, default=60, help="seconds of load for goal 1 (default 60)")
opts.add_argument("--connections", type=int, default=64)
opts.add_argument("--results", default=os.path.join(ROOT, "docs/results/performance.md"))
opts = opts.parse_args()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method, data=body and json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def counters(base):
    """The server's counters that goal 1 counts with."""
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    value = lambda pattern: sum(float(m) for m in re.findall(pattern + r"\S* (\S+)", text))
    return {"accepted": value(r'(?m)^messages_accepted_total\{'),
            "delivered": value(r'(?m)^messages_processed_total\{[^}]*status="DELIVERED"')}


class Server:
    """`chat4all serve` on a fresh data directory, stopped by its pid."""

    def __init__(self):
        self.data = tempfile.mkdtemp(prefix="chat4all-perf.")
        self.base = f"http://127.0.0.1:{free_port()}"
        self.log = open(os.path.join(self.data, "server.log"), "w")
        self.process = subprocess.Popen(
            [opts.binary, "serve", "--data-dir", self.data, "--http-addr", self.base[len("http://"):],
             "--rate-limit-per-sec", "0", "--bench-endpoints", "--log-format", "json"],
            stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                urllib.request.urlopen(self.base + "/health/live", timeout=1)
                break
            except OSError:
                time.sleep(0.05)

    def rss_mib(self):
        for line in open(f"/proc/{self.process.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        shutil.rmtree(self.data, ignore_errors=True)


def wrk(base, path, seconds, token, recipient):
    out = subprocess.run(["wrk", "-t1", f"-c{opts.connections}", f"-d{seconds}s", "--timeout", "5s",
                          "-s", os.path.join(ROOT, "scripts/perf/send.lua"), base],
                         env={**os.environ, "TOKEN": token, "RECIPIENT": recipient, "SEND_PATH": path},
                         capture_output=True, text=True, check=True).stdout
    fields = dict(kv.split("=") for kv in re.search(r"RESULT (.*)", out).group(1).split())
    fields = {k: int(v) for k, v in fields.items()}
    fields["rate"] = fields["requests"] / (fields["duration_us"] / 1e6)
    return fields


def main():
    server = Server()
    lines = []
    try:
        call(server.base, "POST", "/auth/register", {"username": "perf-alice", "password": "perf-alice-password"})
        call(server.base, "POST", "/auth/register", {"username": "perf-bob", "password": "perf-bob-password"})
        token = call(server.base, "POST", "/auth/token", {"username": "perf-alice", "password": "perf-alice-password"})["access_token"]
        bob = call(server.base, "POST", "/auth/token", {"username": "perf-bob", "password": "perf-bob-password"})["user_id"]

        # Goal 2 first, on a quiet server: the bare POST, then the real one.
        bare = wrk(server.base, "/bench/messages", 15, token, bob)
        accept = wrk(server.base, "/v1/messages", 15, token, bob)
        ratio = accept["rate"] / bare["rate"]
        wait_delivered(server, counters(server.base)["accepted"], 300)

        # Goal 1: sustained, then until every accepted message is delivered.
        before = counters(server.base)
        started = time.time()
        sustained = wrk(server.base, "/v1/messages", opts.duration, token, bob)
        rss_load = server.rss_mib()
        accepted = counters(server.base)["accepted"] - before["accepted"]
        finished, after = wait_delivered(server, before["delivered"] + accepted, 600)
        delivered = after["delivered"] - before["delivered"]
        e2e = delivered / (finished - started)
        all_delivered = delivered >= accepted and sustained["errors"] == 0
        lines.append(("1. end to end, sustained", f"{e2e:,.0f} msg/s ({int(delivered):,} of {int(accepted):,} accepted "
                      f"delivered in {finished - started:.1f} s; wrk errors {sustained['errors']}; accept rate "
                      f"{sustained['rate']:,.0f}/s, p99 {sustained['p99_us'] / 1000:.1f} ms)",
                      "≥ 16,700 msg/s, all delivered, 0 errors", e2e >= 16_700 and all_delivered))
        lines.append(("2. accept path / bare POST", f"{ratio:.2f} ({accept['rate']:,.0f} vs {bare['rate']:,.0f} req/s; "
                      f"p99 {accept['p99_us'] / 1000:.1f} vs {bare['p99_us'] / 1000:.1f} ms)", "≥ 0.6", ratio >= 0.6))
        lines.append(("5. RSS at goal 1's load", f"{rss_load:.0f} MiB", "≤ 256 MiB", rss_load <= 256))
    finally:
        server.stop()
    report(lines)
    return 0 if all(ok for *_, ok in lines) else 1


def wait_delivered(server, target, limit):
    """Polls the counters until `target` messages are delivered (or `limit` s); returns (when, counters)."""
    deadline = time.time() + limit
    while True:
        now, seen = time.time(), counters(server.base)
        if seen["delivered"] >= target or now > deadline:
            return now, seen
        time.sleep(0.05)


def report(lines):
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    machine = f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    width = max(len(name) for name, *_ in lines)
    for name, figure, target, ok in lines:
        print(f"{'pass' if ok else 'FAIL'}  {name:<{width}}  {figure}  (target {target})")
    with open(opts.results, "w") as f:
        f.write("# Performance goals (embedded mode)\n\n"
                f"`python3 scripts/perf/goals.py target/release/chat4all --duration {opts.duration}` on commit {commit}, "
                f"{machine}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, the load generator (wrk, 1 thread × "
                f"{opts.connections} connections) on the same cores.\n\n| goal | measured | target | result |\n|---|---|---|---|\n")
        for name, figure, target, ok in lines:
            f.write(f"| {name} | {figure} | {target} | {'pass' if ok else '**FAIL**'} |\n")
    print(f"report: {opts.results}")


sys.exit(main())
