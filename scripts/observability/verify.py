#!/usr/bin/env python3
"""Observability check against a real Prometheus (run through scripts/verify-observability.sh)."""
import argparse, glob, http.client, json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.parse, uuid

opts = argparse.ArgumentParser(description=__doc__)
opts.add_argument("--bin", default="target/release/chat4all")
opts.add_argument("--duration", type=int, default=60, help="seconds of traffic")
args = opts.parse_args()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
work = tempfile.mkdtemp(prefix="chat4all-observability-")
passed, failed = 0, 0

def check(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what} {detail}")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

api_port, prom_port = free_port(), free_port()
log_path = os.path.join(work, "chat4all.log")
server = subprocess.Popen([args.bin, "serve", "--data-dir", os.path.join(work, "data"), "--http-addr", f"127.0.0.1:{api_port}",
                           "--log-format", "json", "--whatsapp-latency-ms", "5-20", "--instagram-latency-ms", "5-20",
                           "--breaker-cool-down-secs", "3", "--heartbeat-secs", "5"],
                          stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
prometheus = None

def call(method, path, body=None, token=None, headers=None, raw=None, port=None):
    c = http.client.HTTPConnection("127.0.0.1", port or api_port, timeout=10)
    h = {"Content-Type": "application/json", **(headers or {})}
    if token:
        h["Authorization"] = "Bearer " + token
    c.request(method, path, raw if raw is not None else (json.dumps(body) if body is not None else None), h)
    r = c.getresponse()
    return r.status, r.read()

try:
    for _ in range(300):
        try:
            if call("GET", "/health/live")[0] == 200:
                break
        except OSError:
            time.sleep(0.02)
    admin = open(os.path.join(work, "data", "admin-token")).read().strip()

    # Static checks of the monitoring files.
    config = os.path.join(work, "prometheus.yml")
    open(config, "w").write(f"""global:
  scrape_interval: 2s
  evaluation_interval: 2s
rule_files:
  - {os.path.join(ROOT, "monitoring", "alerts.yml")}
scrape_configs:
  - job_name: chat4all
    static_configs:
      - targets: ["127.0.0.1:{api_port}"]
""")
    for what, cmd in [("promtool check config monitoring/prometheus.yml", ["promtool", "check", "config", os.path.join(ROOT, "monitoring", "prometheus.yml")]),
                      ("promtool check config (local scrape config)", ["promtool", "check", "config", config]),
                      ("promtool check rules monitoring/alerts.yml", ["promtool", "check", "rules", os.path.join(ROOT, "monitoring", "alerts.yml")])]:
        result = subprocess.run(cmd, capture_output=True, text=True)
        check(result.returncode == 0, what, result.stdout + result.stderr)
    prometheus = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
                                   f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "prometheus.log"), "w"))

    # Traffic: members, WhatsApp, Instagram, a file, bad requests, an outage with an expiry, a poison event.
    tokens = []
    for name in ("alice", "bob"):
        call("POST", "/auth/register", {"username": name, "password": name + "-password"})
        tokens.append(json.loads(call("POST", "/auth/token", {"username": name, "password": name + "-password"})[1]))
    alice, bob = tokens[0]["access_token"], tokens[1]["access_token"]
    start, n, outage_started = time.time(), 0, False
    while time.time() - start < args.duration:
        elapsed = time.time() - start
        if not outage_started and elapsed > args.duration / 4:
            outage_started = True
            call("POST", "/admin/channels/whatsapp/fault", {"mode": "down", "duration_secs": max(5, args.duration // 4)}, admin)
            call("POST", "/v1/messages", {"conversation_id": "expiring", "content": "too late", "recipient_id": "whatsapp:+5511999990000", "validity_seconds": 1}, alice)
            call("POST", "/admin/events", {"topic": "messages", "key": "c1", "payload": "not an event"}, admin)
        call("POST", "/v1/messages", {"conversation_id": f"c{n % 5}", "content": f"hello {n}", "recipient_id": tokens[1]["user_id"]} if n < 5 else {"conversation_id": f"c{n % 5}", "content": f"hello {n}"}, alice)
        call("POST", "/v1/messages", {"conversation_id": f"wa{n % 5}", "content": f"olá {n}", "recipient_id": "whatsapp:+5511999990000"}, alice)
        call("POST", "/v1/messages", {"conversation_id": f"ig{n % 5}", "content": f"oi {n}", "recipient_id": "instagram:@maria"}, bob)
        call("GET", f"/v1/conversations/c{n % 5}/messages?limit=10", token=bob)
        call("POST", "/v1/messages", token=alice, raw="{not json")
        if n % 20 == 0:
            boundary = "verify-boundary"
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"conversation_id\"\r\n\r\nfiles\r\n--{boundary}\r\n"
                    f"Content-Disposition: form-data; name=\"file\"; filename=\"f{n}.txt\"\r\n\r\n{'x' * 2048}\r\n--{boundary}--\r\n")
            call("POST", "/v1/files", token=alice, raw=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        n += 1
        time.sleep(0.05)

    status, metrics = call("GET", "/metrics")
    result = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True)
    check(result.returncode == 0, "/metrics passes promtool check metrics", result.stdout.decode() + result.stderr.decode())

    # The correlation id of one request, in the logs of every role.
    trace = "verify-" + uuid.uuid4().hex[:12]
    _, accepted = call("POST", "/v1/messages", {"conversation_id": "trace", "content": "follow me", "recipient_id": "instagram:@maria"}, alice, headers={"X-Correlation-ID": trace})
    message_id = json.loads(accepted)["message_id"]
    for _ in range(100):
        detail = json.loads(call("GET", f"/v1/messages/{message_id}", token=alice)[1])
        if detail.get("status") == "DELIVERED":
            break
        time.sleep(0.1)
    time.sleep(1)
    services = set()
    for line in open(log_path):
        if trace in line:
            try:
                services.add(json.loads(line).get("service"))
            except ValueError:
                pass
    for role in ("api", "router", "connector"):
        check(role in services, f"correlation id {trace} is in the {role} log lines", f"found in {sorted(s for s in services if s)}")
    delivered = [step for step in detail.get("status_history", []) if step.get("status") == "DELIVERED"]
    check(any(step.get("correlation_id") == trace for step in delivered),
          "the message's status history carries the correlation id", str(detail.get("status_history")))

    # Every dashboard query returns at least one series.
    time.sleep(5)
    for path in sorted(glob.glob(os.path.join(ROOT, "monitoring", "grafana", "dashboards", "*.json"))):
        dashboard = json.load(open(path))
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                query = urllib.parse.urlencode({"query": target["expr"]})
                try:
                    answer = json.loads(call("GET", f"/api/v1/query?{query}", port=prom_port)[1])
                    series = answer.get("data", {}).get("result", [])
                except (OSError, ValueError) as e:
                    series, answer = [], str(e)
                check(len(series) > 0, f"{dashboard['title']} / {panel['title']} [{target['refId']}] has data",
                      f"query {target['expr']!r} returned {answer}")
finally:
    for process in (server, prometheus):
        if process:
            process.terminate()
            process.wait()
    shutil.rmtree(work, ignore_errors=True)

print(f"observability: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
