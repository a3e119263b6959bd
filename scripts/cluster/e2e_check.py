#!/usr/bin/env python3
"""End-to-end check of a running cluster (scripts/cluster/up.sh; pass its RUN_DIR): messages sent alternately
through both api processes are stored once, gap-free and in send order per conversation, delivered, and the same
from either api; a WebSocket held by the second api receives the messages sent through the first; Prometheus
scrapes every role process. Bounded in time and count; exits non-zero on the first broken promise.

    python3 scripts/cluster/e2e_check.py RUN_DIR [--messages 300]
"""
import argparse, json, os, sys, threading, time, urllib.error, urllib.parse, urllib.request, uuid

args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
args.add_argument("run_dir")
args.add_argument("--messages", type=int, default=300, help="messages to send (default 300)")
args.add_argument("--conversations", type=int, default=6)
opts = args.parse_args()

env = {}
for line in open(os.path.join(opts.run_dir, "cluster.env")):
    if line.startswith("export "):
        k, v = line[len("export "):].strip().split("=", 1)
        env[k] = v
APIS = [env["API_1_URL"], env["API_2_URL"]]
failures = []


def call(base, method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def login(base, name):
    status, _ = call(base, "POST", "/auth/register", {"username": name, "password": "password-" + name})
    assert status in (201, 409), f"register {name}: {status}"
    status, body = call(base, "POST", "/auth/token", {"username": name, "password": "password-" + name})
    assert status == 200, f"login {name}: {status} {body}"
    return body["access_token"], body["user_id"]


run = uuid.uuid4().hex[:8]
alice, _ = login(APIS[0], f"alice{run}")
bob, bob_id = login(APIS[0], f"bob{run}")
status, _ = call(APIS[1], "GET", "/v1/conversations?limit=1", token=bob)
if status != 200:
    failures.append(f"a token from api-1 is refused by api-2 ({status}): the api processes do not share their secret")

# Bob's socket on api-2, collecting new_message frames.
from websockets.sync.client import connect  # noqa: E402  (installed into .venv by e2e.sh)

pushed, socket_ready = {}, threading.Event()


def listen():
    url = APIS[1].replace("http://", "ws://") + "/v1/ws?token=" + urllib.parse.quote(bob)
    with connect(url, open_timeout=10) as ws:
        socket_ready.set()
        deadline = time.time() + 60
        while time.time() < deadline and len(pushed) < expected_pushes:
            try:
                frame = json.loads(ws.recv(timeout=1))
            except TimeoutError:
                continue
            if frame.get("type") == "new_message":
                pushed[frame["message_id"]] = pushed.get(frame["message_id"], 0) + 1


expected_pushes = opts.messages
listener = threading.Thread(target=listen, daemon=True)
listener.start()
assert socket_ready.wait(15), "the WebSocket on api-2 did not open"

conversations = [f"e2e-{run}-{i}" for i in range(opts.conversations)]
sent = {c: [] for c in conversations}
started = time.time()
for i in range(opts.messages):
    conversation = conversations[i % len(conversations)]
    api = APIS[i % 2]
    status, body = call(api, "POST", "/v1/messages",
                        {"conversation_id": conversation, "content": f"m{i}", "recipient_id": bob_id}, alice)
    if status != 202:
        failures.append(f"send {i} through {api}: {status} {body}")
        break
    sent[conversation].append(body["message_id"])
accept_secs = time.time() - started


def history(base, conversation):
    messages, after = [], 0
    for _ in range(1000):
        status, body = call(base, "GET", f"/v1/conversations/{conversation}/messages?limit=100&after={after}", token=bob)
        assert status == 200, f"history {conversation} at {base}: {status} {body}"
        messages += body["messages"]
        if not body["pagination"]["has_more"]:
            return messages
        after = body["pagination"]["next_cursor"]
    raise AssertionError("history paging did not end")


deadline = time.time() + 60
while True:
    views = [{c: history(api, c) for c in conversations} for api in APIS]
    undelivered = sum(len(sent[c]) for c in conversations) - sum(
        1 for c in conversations for m in views[0][c] if m["status"] in ("DELIVERED", "READ"))
    if undelivered == 0 or time.time() > deadline:
        break
    time.sleep(0.5)
delivered_secs = time.time() - started

for c in conversations:
    ids = [m["message_id"] for m in views[0][c]]
    if ids != sent[c]:
        failures.append(f"{c}: history holds {len(ids)} messages, {len(set(ids))} distinct, sent {len(sent[c])}; "
                        f"in send order: {ids == sent[c]}")
    if [m["seq"] for m in views[0][c]] != list(range(1, len(ids) + 1)):
        failures.append(f"{c}: seq is not 1..{len(ids)}")
    if [(m["message_id"], m["seq"], m["status"]) for m in views[0][c]] != \
       [(m["message_id"], m["seq"], m["status"]) for m in views[1][c]]:
        failures.append(f"{c}: api-1 and api-2 show different histories")
if undelivered:
    failures.append(f"{undelivered} messages not DELIVERED within 60 s")

listener.join(timeout=max(1, 30 - (time.time() - started)))
missing = [m for c in conversations for m in sent[c] if m not in pushed]
doubled = [m for m, n in pushed.items() if n > 1]
if missing or doubled:
    failures.append(f"api-2's WebSocket missed {len(missing)} and repeated {len(doubled)} of {opts.messages} messages")

# Prometheus: every role process scraped and up.
prometheus = env["PROMETHEUS_URL"]
expected = sum(1 for line in open(os.path.join(opts.run_dir, "processes.tsv"))
               if line.split("\t")[0].startswith(("api-", "router-", "connector-")))
deadline, up = time.time() + 30, {}
while time.time() < deadline:
    _, body = call(prometheus, "GET", "/api/v1/query?query=" + urllib.parse.quote('up{job="chat4all"}'))
    up = {r["metric"]["instance_name"]: r["value"][1] for r in body["data"]["result"]} if isinstance(body, dict) else {}
    if len(up) == expected and all(v == "1" for v in up.values()):
        break
    time.sleep(1)
if len(up) != expected or not all(v == "1" for v in up.values()):
    failures.append(f"Prometheus sees {up}, expected {expected} role processes up")

total = sum(len(v) for v in sent.values())
print(f"sent {total} messages through 2 api processes in {accept_secs:.1f} s; all delivered after {delivered_secs:.1f} s; "
      f"{len(pushed)} pushed on api-2's socket; Prometheus scrapes {len(up)} role processes")
for failure in failures:
    print("FAIL:", failure, file=sys.stderr)
sys.exit(1 if failures else 0)
