#!/usr/bin/env python3
"""Outage demonstration: messages flow to WhatsApp and Instagram while WhatsApp is set `down` for a while
(default 60 s) through the admin endpoint. Shows that WhatsApp messages go PENDING, that the breaker is visible in
/health and /metrics, that Instagram keeps delivering, and how long after the outage every message is DELIVERED.

    cargo build --release && python3 scripts/chaos/outage-demo.py --down-secs 60
"""
import argparse, http.client, json, os, shutil, subprocess, tempfile, time

opts = argparse.ArgumentParser(description=__doc__.splitlines()[0])
opts.add_argument("--bin", default="target/release/chat4all")
opts.add_argument("--port", type=int, default=18199)
opts.add_argument("--down-secs", type=int, default=60)
opts.add_argument("--rate", type=float, default=10, help="messages per second per channel")
opts.add_argument("--conversations", type=int, default=20, help="conversations per channel the messages spread over")
args = opts.parse_args()
data = tempfile.mkdtemp(prefix="chat4all-outage-")
server = subprocess.Popen([args.bin, "serve", "--data-dir", data, "--http-addr", f"127.0.0.1:{args.port}"],
                          stdout=open(data + ".log", "w"), stderr=subprocess.STDOUT)

def call(method, path, body=None, token=None):
    c = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    c.request(method, path, json.dumps(body) if body is not None else None, headers)
    r = c.getresponse()
    return r.status, r.read()

for _ in range(200):
    try:
        if call("GET", "/health/live")[0] == 200:
            break
    except OSError:
        time.sleep(0.02)
admin = open(os.path.join(data, "admin-token")).read().strip()
call("POST", "/auth/register", {"username": "demo", "password": "demo-password"})
token = json.loads(call("POST", "/auth/token", {"username": "demo", "password": "demo-password"})[1])["access_token"]

def history(conversation):
    out, after = [], 0
    while True:
        d = json.loads(call("GET", f"/v1/conversations/{conversation}/messages?limit=100&after={after}", token=token)[1])
        out += d["messages"]
        if not d["pagination"]["has_more"]:
            return out
        after = d["pagination"]["next_cursor"]

def send(n, until):
    while time.time() < until:
        for channel, rec in (("wa", "whatsapp:+5511999990000"), ("ig", "instagram:@maria")):
            call("POST", "/v1/messages", {"conversation_id": f"{channel}-{n % args.conversations}", "content": f"m{n}", "recipient_id": rec}, token)
        n += 1
        time.sleep(1 / args.rate)
    return n

n = send(0, time.time() + 5)
print(f"WhatsApp down for {args.down_secs} s")
call("POST", "/admin/channels/whatsapp/fault", {"mode": "down", "duration_secs": args.down_secs}, admin)
outage_end = time.time() + args.down_secs
n = send(n, outage_end - 5)
wa = [m for c in range(args.conversations) for m in history(f"wa-{c}")]
ig = [m for c in range(args.conversations) for m in history(f"ig-{c}")]
health = json.loads(call("GET", "/health")[1])["components"]["connector_whatsapp"]
metrics = call("GET", "/metrics")[1].decode()
breaker_line = next((l for l in metrics.splitlines() if l.startswith("circuit_breaker_state") and "whatsapp" in l), "")
print(f"during the outage: whatsapp {sum(m['status'] == 'PENDING' for m in wa)} PENDING of {len(wa)}; "
      f"instagram {sum(m['status'] == 'DELIVERED' for m in ig)} DELIVERED of {len(ig)}")
print(f"health: breaker {health.get('circuit_breaker')}, pending {health.get('pending')}; metrics: {breaker_line}")
time.sleep(max(0, outage_end - time.time()))
print("WhatsApp back")
back = time.time()
while True:
    wa = [m for c in range(args.conversations) for m in history(f"wa-{c}")]
    if all(m["status"] == "DELIVERED" for m in wa) or time.time() - back > 120:
        break
    time.sleep(0.5)
print(f"all {len(wa)} WhatsApp messages DELIVERED {time.time() - back:.1f} s after the channel came back"
      if all(m["status"] == "DELIVERED" for m in wa) else "NOT ALL DELIVERED within 120 s")
in_order = all([m["seq"] for m in sorted(h, key=lambda m: m["delivered_at"])] == [m["seq"] for m in h]
               for h in (history(f"wa-{c}") for c in range(args.conversations)))
print("per-conversation delivery order preserved:", in_order)
server.terminate(); server.wait()
shutil.rmtree(data, ignore_errors=True)
