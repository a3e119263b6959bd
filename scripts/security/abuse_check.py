#!/usr/bin/env python3
"""Abuse check: runs what an attacker would try against a fresh `chat4all serve` on loopback and prints what the
server spent on it (peak RSS, threads, latency of /health/live) and how it answered. Each attack is bounded in
time and count; the server is started with its default limits (plus --rate-limit-per-sec 0, so the per-user rate
limit does not hide the other limits) and stopped by its pid.

  python3 scripts/security/abuse_check.py [--bin target/release/chat4all] [--only multipart,logins,guessing,idle]
"""
import argparse
import http.client
import json
import os
import resource
import select
import socket
import subprocess
import tempfile
import threading
import time

args = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
args.add_argument("--bin", default="target/release/chat4all")
args.add_argument("--only", default="multipart,logins,guessing,idle")
args.add_argument("--idle-sockets", type=int, default=10_000)
args.add_argument("--part-mib", type=int, default=1024, help="size of the oversized conversation_id part")
args.add_argument("--logins", type=int, default=400, help="concurrent logins")
opts = args.parse_args()

MIB = 1024 * 1024


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, extra=()):
        self.data = tempfile.mkdtemp(prefix="chat4all-abuse-")
        self.port = free_port()
        self.log = open(os.path.join(self.data, "server.log"), "wb")
        self.proc = subprocess.Popen(
            [opts.bin, "serve", "--data-dir", self.data, "--http-addr", f"127.0.0.1:{self.port}",
             "--log-format", "json", "--rate-limit-per-sec", "0", *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if self.call("GET", "/health/live")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("the server did not start")

    def call(self, method, path, body=None, token=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, data

    def status(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def rss_mib(self):
        return self.status("VmRSS") / 1024

    def peak_mib(self):
        return self.status("VmHWM") / 1024

    def user(self, name):
        self.call("POST", "/auth/register", {"username": name, "password": name + "-password"})
        status, data = self.call("POST", "/auth/token", {"username": name, "password": name + "-password"})
        assert status == 200, data
        return json.loads(data)["access_token"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Sampler(threading.Thread):
    """Samples the server's thread count every 5 ms and keeps the largest."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.most, self.running = server, 0, True

    def run(self):
        while self.running:
            self.most = max(self.most, self.server.status("Threads"))
            time.sleep(0.005)

    def stop(self):
        self.running = False
        self.join()
        return self.most


def multipart(server):
    token = server.user("mallory")
    for order in ("conversation_id first", "file first"):
        before = server.peak_mib()
        boundary = "b"
        file_part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n"
                     "hello\r\n").encode()
        head = f"--{boundary}\r\nContent-Disposition: form-data; name=\"conversation_id\"\r\n\r\n".encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        prefix = (file_part + head) if order == "file first" else head
        length = len(prefix) + opts.part_mib * MIB + len(tail)
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall((f"POST /v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n")
                     .encode() + prefix)
        chunk, sent, started = b"c" * MIB, 0, time.time()
        try:
            for _ in range(opts.part_mib):
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered before the body ended
                sock.sendall(chunk)
                sent += 1
            answer = sock.recv(4096).decode(errors="replace")
        except OSError:
            answer = sock.recv(4096).decode(errors="replace") if select.select([sock], [], [], 5)[0] else ""
        sock.close()
        print(f"multipart, {opts.part_mib} MiB conversation_id part ({order}): answered "
              f"{answer.split(chr(13))[0] or '(connection closed)'} after {sent} MiB sent in "
              f"{time.time() - started:.1f} s; peak RSS {before:.0f} -> {server.peak_mib():.0f} MiB")


def logins(server):
    server.user("alice")
    statuses = {}
    lock = threading.Lock()
    start = threading.Event()
    before = server.peak_mib()

    def login():
        start.wait()
        try:
            status, _ = server.call("POST", "/auth/token", {"username": "alice", "password": "alice-password"},
                                    timeout=120)
        except OSError as e:
            status = type(e).__name__
        with lock:
            statuses[status] = statuses.get(status, 0) + 1

    workers = [threading.Thread(target=login) for _ in range(opts.logins)]
    for w in workers:
        w.start()
    sampler = Sampler(server)
    sampler.start()
    started = time.time()
    start.set()
    for w in workers:
        w.join()
    threads = sampler.stop()
    print(f"logins, {opts.logins} concurrent with the right password: {dict(sorted(statuses.items(), key=str))} "
          f"in {time.time() - started:.1f} s; peak threads {threads}; peak RSS {before:.0f} -> "
          f"{server.peak_mib():.0f} MiB")


def guessing(server):
    server.user("victim")
    answers = []
    for i in range(100):
        answers.append(server.call("POST", "/auth/token", {"username": "victim", "password": f"guess-{i:03d}"})[0])
    first = answers.index(429) + 1 if 429 in answers else None
    print(f"guessing, 100 wrong passwords for one user: {answers.count(401)} x 401, {answers.count(429)} x 429 "
          f"(first 429 at attempt {first}); the right password then: "
          f"{server.call('POST', '/auth/token', {'username': 'victim', 'password': 'victim-password'})[0]}")
    sprayed = []
    for i in range(100):
        sprayed.append(server.call("POST", "/auth/token", {"username": f"user{i:03d}", "password": "Summer2026!"})[0])
    print(f"spraying, one password over 100 usernames from one address: {sprayed.count(401)} x 401, "
          f"{sprayed.count(429)} x 429")


def idle(server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sockets = []
    for _ in range(opts.idle_sockets):
        try:
            sockets.append(socket.create_connection(("127.0.0.1", server.port)))
        except OSError as e:
            print(f"idle: stopped opening at {len(sockets)} sockets: {e}")
            break
    latencies = []
    for _ in range(20):
        started = time.time()
        status = server.call("GET", "/health/live", timeout=30)[0]
        latencies.append((time.time() - started) * 1000)
        assert status == 200
    _, metrics = server.call("GET", "/metrics")
    open_now = [l for l in metrics.decode().splitlines() if l.startswith("http_connections_open")]
    print(f"idle, {len(sockets)} idle sockets open: GET /health/live max {max(latencies):.1f} ms, median "
          f"{sorted(latencies)[10]:.1f} ms over 20 new connections; {open_now[0] if open_now else ''}")
    started, closed = time.time(), 0
    poll, pending = select.poll(), {s.fileno(): s for s in sockets}
    for fd in pending:
        poll.register(fd, select.POLLIN)
    while pending and time.time() - started < 90:
        for fd, _ in poll.poll(1000):
            s = pending.pop(fd)
            poll.unregister(fd)
            try:
                closed += not s.recv(1)
            except ConnectionResetError:
                closed += 1
            s.close()
    pending = list(pending.values())
    print(f"idle: the server closed {closed} of {len(sockets)} idle sockets, the last {time.time() - started:.1f} s "
          f"after the check (header timeout 30 s from each connection's start)")
    for s in pending:
        s.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


ATTACKS = {"multipart": multipart, "logins": logins, "guessing": guessing, "idle": idle}
for name in opts.only.split(","):
    server = Server()
    try:
        idle_rss = server.rss_mib()
        print(f"[{name}] server pid {server.proc.pid}, idle RSS {idle_rss:.0f} MiB")
        ATTACKS[name](server)
        print(f"[{name}] GET /health/live after the attack: {server.call('GET', '/health/live')[0]}")
    finally:
        server.stop()
