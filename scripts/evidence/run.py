#!/usr/bin/env python3
"""Runs one evidence scenario against a running local cluster (scripts/cluster/up.sh; scripts/evidence/run.sh
starts a fresh one): steady load, the event, the message-by-message check, and a Markdown report with its chart
in the results directory. Exits non-zero when a goal is missed.

    python3 scripts/evidence/run.py SCENARIO RUN_DIR [--rate 100] [--results docs/results/evidence]

Scenarios: routers-scale (a backlog drained by one router, then by two), router-kill (SIGKILL a router while
another runs), router-stop (SIGTERM), api-kill (SIGKILL one of the two api processes behind nginx, started again
after --down-secs, default 10), connector-down (one channel's connector stopped for --down-secs, default 60),
broker-down and store-down (the broker, or PostgreSQL, frozen for --down-secs, default 20).
"""
import argparse, os, signal, subprocess, sys, threading, time, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evidence as ev  # noqa: E402

SCENARIOS = ("routers-scale", "router-kill", "router-stop", "api-kill", "connector-down", "broker-down", "store-down")
opts = argparse.ArgumentParser(description=__doc__.splitlines()[0])
opts.add_argument("scenario", choices=SCENARIOS)
opts.add_argument("run_dir")
opts.add_argument("--rate", type=float, help="messages per second (default 100; 20 for connector-down, whose "
                  "simulated channels pace each partition's sends)")
opts.add_argument("--before", type=float, default=10, help="seconds of load before the event (default 10)")
opts.add_argument("--after", type=float, default=25, help="seconds of load after the event (default 25)")
opts.add_argument("--down-secs", type=float, help="how long the stopped part stays down")
opts.add_argument("--freeze-secs", type=float, default=4,
                  help="routers-scale: how long the routers are frozen while the backlog builds (default 4; keep it "
                  "under the session timeout)")
opts.add_argument("--session-timeout-ms", type=int, default=6000,
                  help="the Kafka session timeout the routers run with (the kafka URL's default, 6000)")
opts.add_argument("--results", default=os.path.join(ev.ROOT, "docs/results/evidence"))
opts = opts.parse_args()
if opts.rate is None:
    opts.rate = 20 if opts.scenario == "connector-down" else 100

cluster = ev.Cluster(opts.run_dir)
run = uuid.uuid4().hex[:6]
alice, alice_id = ev.user(cluster.api, f"alice{run}")
bob, bob_id = ev.user(cluster.api, f"bob{run}")
_given = sys.argv[3:]
_given = [a for i, a in enumerate(_given) if a != "--results" and (i == 0 or _given[i - 1] != "--results")]
COMMAND = " ".join(["bash scripts/evidence/run.sh", opts.scenario] + _given)


class Health:
    """Polls a role process's /health every 0.25 s and keeps its transitions: [(time, status)]."""

    def __init__(self, name):
        self.name, self.transitions, self.stopping = name, [], False
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self):
        while not self.stopping:
            status = cluster.health(self.name)
            if not self.transitions or self.transitions[-1][1] != status:
                self.transitions.append((time.time(), status))
            time.sleep(0.25)

    def stop(self):
        self.stopping = True
        self.thread.join(5)


def settle(watcher, recipient):
    """Waits until the consumer groups of a fresh cluster have settled (their first rebalances stall partitions for
    seconds on tansu): 10 probe messages in a row pushed within 300 ms, or 120 s."""
    conversation, fast, deadline = f"ev-{run}-probe", 0, time.time() + 120
    while fast < 10 and time.time() < deadline:
        sent = time.time()
        status, body = ev.request(cluster.api, "POST", "/v1/messages",
                                  {"conversation_id": conversation, "content": "probe", "recipient_id": recipient},
                                  alice)
        while status == 202 and body["message_id"] not in watcher.pushed and time.time() < sent + 5:
            time.sleep(0.01)
        took = watcher.pushed.get(body["message_id"], sent + 5) - sent if status == 202 else 5
        fast = fast + 1 if took < 0.3 else 0
        time.sleep(0.1)
    print(f"settled: {'yes' if fast >= 10 else 'NO (going on)'}", flush=True)


def drive(targets, watch_token, events, probe_recipient, watch_api=None):
    """Runs the load for before + after seconds around `events` ([(offset s, label, action)]), then checks it.
    The recipient's socket goes through nginx, or to `watch_api` (a base URL).
    Returns (t0, load, watcher, figures, failures, marks) with marks = [(time, label)] of the events."""
    watcher = ev.Watcher(cluster, watch_token, watch_api, conversations=[c for c, _ in targets])
    watcher.start()
    settle(watcher, probe_recipient)
    load = ev.Load(cluster, alice, targets, opts.rate)
    t0 = time.time()
    load.start()
    marks = []
    for offset, label, action in events:
        pause = t0 + offset - time.time()
        if pause > 0:
            time.sleep(pause)
        marks.append((time.time(), label))
        print(f"{time.time() - t0:6.1f} s  {label}", flush=True)
        action()
    last = max((offset for offset, _, _ in events), default=0)
    pause = t0 + max(opts.before + opts.after, last + opts.after) - time.time()
    if pause > 0:
        time.sleep(pause)
    load.stop()
    print(f"{time.time() - t0:6.1f} s  load stopped: {len(load.sends)} scheduled, {len(load.acked())} acknowledged;"
          " checking message by message", flush=True)
    figures, failures = ev.check(cluster, alice, load, watcher)
    watcher.stop()
    return t0, load, watcher, figures, failures, marks


def latency_ms(load, watcher, sends, status=None):
    """Send-to-push (or send-to-`status`) latencies of `sends`, in ms."""
    out = []
    for s in sends:
        at = watcher.statuses.get(s["message_id"], {}).get(status) if status else watcher.pushed.get(s["message_id"])
        if at and s["first"]:
            out.append((at - s["first"]) * 1000)
    return out


def fmt(ms):
    return "-" if ms is None else (f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.0f} ms")


def finish(title, summary, goals, figures, failures, queries, notes, t0, load, watcher, marks, chart=None):
    """Writes the chart (the load's series around the events, unless `chart` gives two series, their names and
    the x axis), the report and the index row; exits 0 when every goal held."""
    os.makedirs(opts.results, exist_ok=True)
    name = opts.scenario
    if chart is None:
        until = max([s["acked"] or 0 for s in load.sends] + list(watcher.pushed.values()) + [t0])
        acked, pushed, p99 = ev.series(load, watcher, t0, until)
        ev.chart(os.path.join(opts.results, name + ".svg"), acked, pushed, p99,
                 [(at - t0, label) for at, label in marks], title)
    else:
        first, second, names, x_axis = chart
        ev.chart(os.path.join(opts.results, name + ".svg"), first, second, None, [], title, names, x_axis)
    goals = [("0 acknowledged messages lost, 0 duplicate rows, 0 duplicate notifications, every message final",
              "; ".join(failures) or "all held", not failures)] + goals
    ev.report(os.path.join(opts.results, name + ".md"), title, COMMAND, summary, goals, figures, queries,
              name + ".svg", notes)
    index(name, title, goals)
    print(f"report: {os.path.join(opts.results, name + '.md')}")
    for goal, measured, ok in goals:
        print(f"{'pass' if ok else 'FAIL'}  {goal}: {measured}")
    sys.exit(0 if all(ok for _, _, ok in goals) else 1)


def index(name, title, goals):
    """Keeps docs/results/evidence/README.md: one row per scenario with its latest outcome."""
    path = os.path.join(opts.results, "README.md")
    header = ["# Scaling and failover evidence", "",
              "Each row is the latest run of `bash scripts/evidence/run.sh SCENARIO` (see docs/distributed.md, "
              "\"Failover\"); the linked report states its machine, commit and figures.", "",
              "| scenario | result | goals |", "|---|---|---|"]
    rows = {}
    if os.path.exists(path):
        for line in open(path):
            if line.startswith("| [") and "](" in line:
                rows[line.split("](", 1)[1].split(".md", 1)[0]] = line.rstrip("\n")
    passed = all(ok for _, _, ok in goals)
    summary = "; ".join([f"messages: {goals[0][1]}"] + [f"{goal}: {measured}" for goal, measured, _ in goals[1:]])
    rows[name] = f"| [{title}]({name}.md) | {'pass' if passed else '**FAIL**'} | {summary} |"
    with open(path, "w") as f:
        f.write("\n".join(header + [rows[k] for k in sorted(rows)]) + "\n")


def prometheus(queries, window):
    """Each query's largest value over the last `window` seconds (as a subquery), formatted."""
    out = []
    for label, expr in queries:
        values = cluster.query(f"max_over_time(({expr})[{int(window) + 15}s:1s])")
        out.append((expr, ", ".join(f"{v:g}" for _, v in values) or "no data") if label is None else
                   (expr, label(values)))
    return out


def consumed(names):
    """Records of the messages topic the named routers have handled (stored and routed), from their /metrics."""
    total = 0.0
    for name in names:
        status, text = ev.request(f"http://127.0.0.1:{cluster.ports[name]}", "GET", "/metrics", timeout=2)
        if status == 200 and isinstance(text, str):
            total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                         if line.startswith("messages_consumed_total{") and 'topic="messages"' in line)
    return total


def drain(routers, targets):
    """Times `routers` draining a backlog. Only `routers` run (the other is stopped and the group settles), then they
    are frozen (SIGSTOP) while the api accepts messages for --freeze-secs, less than the session timeout so that
    they never leave the group, then resumed together (SIGCONT): no rebalance falls inside the drain. Their
    progress is read from their own counters every 0.1 s. Returns (load, rate per s between 10 % and 90 % of the
    backlog, CPU % per process over that window, [(seconds since the resume, records handled)])."""
    for name in ("router-1", "router-2"):
        if name in routers and not cluster.alive(name):
            cluster.start(name)
        elif name not in routers and cluster.alive(name):
            cluster.signal(name, signal.SIGTERM)
    watcher = ev.Watcher(cluster, bob)
    watcher.start()
    settle(watcher, bob_id)
    watcher.stop()
    before = consumed(routers)
    pids = [cluster.pid(name) for name in routers]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    load = ev.Load(cluster, alice, targets, rate=2000)
    load.start()
    time.sleep(opts.freeze_secs)
    load.stop()
    began = time.time()
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    total, samples, deadline = len(load.acked()), [], time.time() + 120
    while time.time() < deadline:
        samples.append((time.time() - began, consumed(routers) - before, ev.cpu_seconds(cluster.run_dir)))
        if samples[-1][1] >= total:
            break
        time.sleep(0.1)
    low = next((s for s in samples if s[1] >= 0.1 * total), samples[0])
    high = next((s for s in samples if s[1] >= 0.9 * total), samples[-1])
    seconds = high[0] - low[0]
    cpu = {name: (used - low[2].get(name, 0)) / seconds * 100 for name, used in high[2].items()} if seconds else {}
    rate = (high[1] - low[1]) / seconds if seconds else 0
    return load, rate, cpu, [(t, done) for t, done, _ in samples]


def routers_scale():
    targets = [(f"ev-{run}-{i}", bob_id) for i in range(64)]
    runs = {}
    for routers in (("router-1",), ("router-1", "router-2")):
        runs[len(routers)] = drain(routers, targets)
        print(f"{len(routers)} router(s): {runs[len(routers)][1]:.0f} msg/s", flush=True)
    merged = ev.Load(cluster, alice, targets, rate=1)
    merged.sends = runs[1][0].sends + runs[2][0].sends
    figures, failures = ev.check(cluster, alice, merged, None)
    ratio = runs[2][1] / runs[1][1] if runs[1][1] else 0
    for n, (load, rate, cpu, progress) in runs.items():
        figures[f"{n} router(s): drain rate (10–90 % of the backlog)"] = (
            f"{rate:.0f} msg/s ({len(load.acked())} messages, all handled {progress[-1][0]:.1f} s after the resume)")
        busy = sorted(((v, k) for k, v in cpu.items() if v >= 1), reverse=True)
        figures[f"{n} router(s): CPU % by process (200 % = both cores)"] = ", ".join(f"{k} {v:.0f}" for v, k in busy)
        figures[f"{n} router(s): CPU % of the machine"] = f"{sum(cpu.values()) / 2:.0f} %"
    goals = [("2 routers drain ≥ 1.9 × as fast as 1", f"{ratio:.2f}×", ratio >= 1.9)]
    summary = (f"Router-bound work: one router runs, settled in its group, and is frozen (SIGSTOP) while the api "
               f"accepts {opts.freeze_secs:g} s of messages to {len(targets)} conversations into the log; then it "
               "resumes and drains them (stores each with its seq, routes it, publishes its notification), its rate "
               "read from its own `messages_consumed_total` between 10 % and 90 % of the backlog. The same again "
               "with two routers sharing the 8 partitions. (Stopping the routers instead would empty their group, "
               "which tansu 0.6 does not always reassign.)")
    summary += (" The CPU figures say what limits each run: on this 2-core machine every process of the "
               "cluster shares the same two cores, so a second router adds throughput only as far as CPU is left.")
    per_second = []
    for n in (1, 2):
        counts, last = [], 0.0
        for tenth in range(int(10 * max(t for t, _ in runs[n][3])) + 2):
            done = max([d for t, d in runs[n][3] if t <= tenth / 10] or [0])
            counts.append(done - last)
            last = done
        per_second.append(counts)
    width = max(len(c) for c in per_second)
    per_second = [c + [0] * (width - len(c)) for c in per_second]
    finish("Routers 1 → 2: draining a backlog", summary, goals, figures, failures, [], [], None, None, None, [],
           chart=(per_second[0], per_second[1], ("1 router: handled per 0.1 s", "2 routers: handled per 0.1 s"),
                  "tenths of a second since the routers resumed"))


def router_failure(sig):
    killed = sig == signal.SIGKILL
    targets = [(f"ev-{run}-{i}", bob_id) for i in range(32)]
    t0, load, watcher, figures, failures, marks = drive(
        targets, bob, [(opts.before, "router-2 " + ("killed (SIGKILL)" if killed else "stopped (SIGTERM)"),
                        lambda: cluster.signal("router-2", sig))], bob_id)
    event = marks[0][0]
    around = [s for s in load.acked() if s["first"] >= event - 2]
    latencies = latency_ms(load, watcher, around)
    before = latency_ms(load, watcher, [s for s in load.acked() if event - 7 <= s["first"] < event - 2])
    stalled = [watcher.pushed[s["message_id"]] for s in around
               if s["message_id"] in watcher.pushed and watcher.pushed[s["message_id"]] - s["first"] > 1.0]
    gap = max(latencies, default=None)
    resumed = (min(stalled) - event) if stalled else None
    drained = (max(stalled) - event) if stalled else None
    figures.update({"send-to-push p99 in the 5 s before the event": fmt(ev.percentile(before, 99)),
                    "largest send-to-push latency after the event (the delivery gap)": fmt(gap),
                    "messages held more than 1 s": len(stalled),
                    "from the event to the first held message pushed": fmt(resumed and resumed * 1000),
                    "from the event to the last held message pushed": fmt(drained and drained * 1000),
                    "WebSocket reconnects": watcher.disconnects})
    if killed:
        limit = opts.session_timeout_ms + 1000
        goals = [(f"delivery gap ≤ session timeout + 1 s = {limit / 1000:g} s", fmt(gap), gap is not None and gap <= limit)]
        summary = (f"Steady load of {opts.rate:g} msg/s to {len(targets)} conversations through nginx; two routers "
                   f"share the 8 partitions; router-2 is killed with SIGKILL {opts.before:g} s in. Its partitions "
                   "stay unread until the broker ends its session, then the survivor takes them over, resumes "
                   "from their last committed offsets and delivers what waited. Every message is then checked in "
                   "history and on the recipient's WebSocket.")
    else:
        goals = [("partitions handed over with no gap: largest send-to-push latency < 1 s", fmt(gap),
                  gap is not None and gap < 1000)]
        summary = (f"Steady load of {opts.rate:g} msg/s to {len(targets)} conversations through nginx; two routers "
                   f"share the 8 partitions; router-2 is stopped with SIGTERM {opts.before:g} s in: it finishes its "
                   "batch, commits and leaves the group, so the survivor is assigned its partitions at once.")
    queries = prometheus([(None, 'sum(rate(messages_processed_total{role="router"}[15s]))'),
                          (None, "max(kafka_consumer_lag)")], time.time() - t0)
    notes = [f"The routers' Kafka session timeout is {opts.session_timeout_ms} ms (kafka URL `session_timeout_ms`); "
             "docs/distributed.md explains the setting and the Apache Kafka values that bring the gap under 3 s."]
    title = "Router killed under load" if killed else "Router stopped gracefully under load"
    finish(title, summary, goals, figures, failures, queries, notes, t0, load, watcher, marks)


def connector_down():
    down = opts.down_secs or 60
    targets = [(f"ev-{run}-w{i}", f"whatsapp:+55119{run_digits}{i:02d}") for i in range(8)] + \
              [(f"ev-{run}-i{i}", f"instagram:@ev{run}{i}") for i in range(8)]
    events = [(opts.before, "connector-whatsapp-1 stopped", lambda: cluster.signal("connector-whatsapp-1", signal.SIGTERM)),
              (opts.before + down, "connector-whatsapp-1 back", lambda: cluster.start("connector-whatsapp-1"))]
    t0, load, watcher, figures, failures, marks = drive(targets, alice, events, targets[-1][1])
    stopped, back = marks[0][0], marks[1][0]
    whatsapp = [s for s in load.acked() if s["recipient"].startswith("whatsapp:")]
    instagram = [s for s in load.acked() if s["recipient"].startswith("instagram:")]
    quiet = lambda sends: [s for s in sends if s["first"] < stopped]
    during = lambda sends: [s for s in sends if stopped <= s["first"] < back]
    ig_before = ev.percentile(latency_ms(load, watcher, quiet(instagram), "DELIVERED"), 99)
    ig_during = ev.percentile(latency_ms(load, watcher, during(instagram), "DELIVERED"), 99)
    held = during(whatsapp)
    delivered_at = [watcher.statuses.get(s["message_id"], {}).get("DELIVERED") for s in held]
    all_delivered = bool(held) and all(delivered_at)
    drained = (max(delivered_at) - back) if all_delivered else None
    pending = sum(1 for s in held if "PENDING" in watcher.statuses.get(s["message_id"], {}))
    figures.update({"WhatsApp messages sent while its connector was down": len(held),
                    "of them seen PENDING": pending,
                    "of them DELIVERED after it returned": sum(1 for d in delivered_at if d),
                    "from its return to the last of them DELIVERED": fmt(drained and drained * 1000),
                    "Instagram send-to-DELIVERED p99 before the outage": fmt(ig_before),
                    "Instagram send-to-DELIVERED p99 during the outage": fmt(ig_during)})
    slower = ig_before is not None and ig_during is not None and ig_during <= max(ig_before * 1.5, ig_before + 50)
    goals = [("every WhatsApp message held during the outage DELIVERED after the connector returns",
              f"{sum(1 for d in delivered_at if d)}/{len(held)}", all_delivered),
             ("Instagram not slowed: p99 during ≤ max(1.5 × before, before + 50 ms)",
              f"{fmt(ig_before)} → {fmt(ig_during)}", slower)]
    summary = (f"Steady load of {opts.rate:g} msg/s, half to WhatsApp and half to Instagram recipients; the "
               f"WhatsApp connector process is stopped (SIGTERM) {opts.before:g} s in and started again {down:g} s "
               "later. Its messages wait in the channel's topic (the router has handed them over; no process of "
               "that channel is there to try them) and are delivered when it returns; Instagram's connector is "
               "another process and carries on.")
    queries = prometheus([(None, 'max by (group) (kafka_consumer_lag)'),
                          (None, 'sum by (channel) (rate(messages_sent_total[15s]))')], time.time() - t0)
    finish(f"Connector down for {down:g} s under load", summary, goals, figures, failures, queries, [], t0, load,
           watcher, marks)


def failed_attempts(load):
    """Failed send attempts by HTTP status (0: no answer), each retried with its Idempotency-Key."""
    errors = {}
    for s in load.sends:
        for status, n in s["errors"].items():
            errors[status] = errors.get(status, 0) + n
    return errors


RETRYABLE = {0, 429, 502, 503, 504}


def api_kill():
    down = opts.down_secs or 10
    targets = [(f"ev-{run}-{i}", bob_id) for i in range(16)]
    events = [(opts.before, "api-1 killed (SIGKILL)", lambda: cluster.signal("api-1", signal.SIGKILL)),
              (opts.before + down, "api-1 back", lambda: cluster.start("api-1"))]
    # The recipient listens on api-2, the survivor: what is measured here is the send path through nginx.
    t0, load, watcher, figures, failures, marks = drive(
        targets, bob, events, bob_id, watch_api=f"http://127.0.0.1:{cluster.ports['api-2']}")
    killed, back = marks[0][0], marks[1][0]
    errors = failed_attempts(load)
    retried = sum(1 for s in load.sends if s["errors"])
    during = [s for s in load.acked() if killed <= s["first"] < back]
    figures.update({"failed attempts by status (0 = connection or timeout), each retried": errors or "none",
                    "sends that needed a retry": retried,
                    "sends acknowledged while api-1 was down": len(during),
                    "send-to-acknowledgement p99 while api-1 was down": fmt(ev.percentile(
                        [(s["acked"] - s["first"]) * 1000 for s in during], 99))})
    unretryable = {k: v for k, v in errors.items() if int(k) not in RETRYABLE}
    goals = [("every failed attempt is retryable (no answer, 429, 502, 503, 504), never a 4xx or 500",
              str(unretryable or "none"), not unretryable)]
    summary = (f"Steady load of {opts.rate:g} msg/s through nginx to two api processes; api-1 is killed with "
               f"SIGKILL {opts.before:g} s in and started again {down:g} s later. Requests in flight on api-1 fail "
               "(nginx answers 502, or the connection drops); nginx sends new requests to api-2 "
               "(`proxy_next_upstream error timeout http_502 http_503`). Each client retries a failed send with its "
               "Idempotency-Key, so a send that was stored before its answer was lost is answered once, not stored "
               "twice. The recipient's WebSocket is held by api-2.")
    queries = prometheus([(None, 'sum by (instance_name, status) (rate(http_requests_total{path="/v1/messages"}[15s]))')],
                         time.time() - t0)
    finish("An api process killed under load", summary, goals, figures, failures, queries, [], t0, load, watcher,
           marks)


def backend_down(backend):
    """The broker (tansu) or the store (PostgreSQL: its postmaster and every backend process) frozen with SIGSTOP
    for --down-secs, then resumed."""
    down = opts.down_secs or 20
    health = Health("api-1")
    targets = [(f"ev-{run}-{i}", bob_id) for i in range(16)]
    frozen = []

    def freeze():
        # The processes as they are now: PostgreSQL forks a backend per connection the pools open under load.
        main = cluster.pid("tansu" if backend == "broker" else "postgres")
        children = subprocess.run(["pgrep", "-P", str(main)], capture_output=True, text=True).stdout.split()
        frozen.extend([main] + ([int(p) for p in children] if backend == "store" else []))
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)

    def thaw():
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)

    events = [(opts.before, f"{backend} frozen (SIGSTOP)", freeze), (opts.before + down, f"{backend} back (SIGCONT)", thaw)]
    t0, load, watcher, figures, failures, marks = drive(targets, bob, events, bob_id)
    health.stop()
    stopped, back = marks[0][0], marks[1][0]
    errors = failed_attempts(load)
    acked_during = [s for s in load.acked() if stopped + 1 < s["acked"] < back]
    first_ack = min((s["acked"] for s in load.acked() if s["acked"] > back), default=None)
    first_push = min((t for t in watcher.pushed.values() if t > back), default=None)
    transitions = [(round(t - t0, 1), status) for t, status in health.transitions]
    went_down = any(status != "UP" for t, status in health.transitions if stopped <= t <= back + 1)
    came_up = bool(health.transitions) and health.transitions[-1][1] == "UP"
    unretryable = {k: v for k, v in errors.items() if int(k) not in RETRYABLE}
    figures.update({"failed attempts by status (0 = connection or timeout), each retried": errors or "none",
                    f"acknowledged while the {backend} was down": len(acked_during),
                    f"from the {backend}'s return to the first acknowledgement":
                        fmt(first_ack and (first_ack - back) * 1000),
                    f"from the {backend}'s return to the first push (consumers resumed)":
                        fmt(first_push and (first_push - back) * 1000),
                    "api-1 /health transitions (s since the load began)": transitions})
    goals = [("/health goes DOWN and back UP", str(transitions), went_down and came_up),
             ("every failed attempt is retryable (no answer, 429, 502, 503, 504), never a 4xx or 500",
              str(unretryable or "none"), not unretryable),
             ("consumers resume by themselves", fmt(first_push and (first_push - back) * 1000), first_push is not None)]
    if backend == "broker":
        goals.insert(0, ("no 202 while the broker is down (the send path cannot make a record durable)",
                         f"{len(acked_during)} acknowledged", not acked_during))
        summary = (f"Steady load of {opts.rate:g} msg/s (clients retrying with their Idempotency-Key); the tansu "
                   f"broker is frozen with SIGSTOP {opts.before:g} s in and resumed with SIGCONT {down:g} s later: to "
                   "every client it is down (connections open, nothing answered, as with a crashed host or a "
                   "network partition). A stop and restart is not used because tansu 0.6.0 cannot take it: after a "
                   "restart its storage panics (\"more or less than one row\" in `idempotent_message_check`) as soon "
                   "as an idempotent producer resumes, and the broker stops answering.")
    else:
        summary = (f"Steady load of {opts.rate:g} msg/s (clients retrying with their Idempotency-Key); PostgreSQL "
                   f"(its postmaster and every backend) is frozen with SIGSTOP {opts.before:g} s in and resumed with "
                   f"SIGCONT {down:g} s later: connections stay open and nothing answers, as with a stalled disk or "
                   "a network partition. A send with an Idempotency-Key needs the store to reserve its key, so it "
                   "waits, or times out and is retried with its key; the routers cannot store, so they hold their "
                   "uncommitted batches and retry them. No 202 is given for a message that is not on the event log.")
    queries = prometheus([(None, 'sum by (status) (increase(http_requests_total{status=~"5.."}[1m]))')],
                         time.time() - t0)
    finish(f"{backend.capitalize()} down for {down:g} s under load", summary, goals, figures, failures, queries, [],
           t0, load, watcher, marks)


run_digits = f"{int(run, 16) % 100000:05d}"
if opts.scenario == "routers-scale":
    routers_scale()
elif opts.scenario == "router-kill":
    router_failure(signal.SIGKILL)
elif opts.scenario == "router-stop":
    router_failure(signal.SIGTERM)
elif opts.scenario == "api-kill":
    api_kill()
elif opts.scenario == "connector-down":
    connector_down()
elif opts.scenario == "broker-down":
    backend_down("broker")
else:
    backend_down("store")
