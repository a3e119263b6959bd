#!/usr/bin/env python3
"""Runs one evidence scenario against a running local cluster (scripts/cluster/up.sh; scripts/evidence/run.sh
starts a fresh one): steady load, the event, the message-by-message check, and a Markdown report with its chart
in the results directory. Exits non-zero when a goal is missed.

    python3 scripts/evidence/run.py SCENARIO RUN_DIR [--rate 100] [--results docs/results/evidence]

Scenarios: routers-scale (a backlog drained by one router, then by two, each held to a share of a core),
connectors-scale (one channel's DELIVERED rate with one connector, then two, each pacing its calls), api-scale
(closed-loop sends through nginx with one api process, then two), capacity-model (CPU per stage idle and at two
steady rates, fitted into a sizing table), rolling-restart (every role process stopped and started again in turn,
--down-secs apart, default 8), router-kill (SIGKILL a router while another runs), router-stop (SIGTERM), api-kill
(SIGKILL one of the two api processes behind nginx, started again after --down-secs, default 10), connector-down
(one channel's connector stopped for --down-secs, default 60), broker-down and store-down (the broker, or
PostgreSQL, frozen for --down-secs, default 20).
"""
import argparse, collections, math, os, signal, subprocess, sys, threading, time, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evidence as ev  # noqa: E402
sys.path.insert(0, os.path.join(ev.ROOT, "scripts/perf"))
from wrk import wrk  # noqa: E402

SCENARIOS = ("routers-scale", "connectors-scale", "api-scale", "capacity-model", "rolling-restart", "router-kill",
             "router-stop", "api-kill", "connector-down", "broker-down", "store-down")
opts = argparse.ArgumentParser(description=__doc__.splitlines()[0])
opts.add_argument("scenario", choices=SCENARIOS)
opts.add_argument("run_dir")
opts.add_argument("--rate", type=float, help="messages per second (default 100; 20 for connector-down, whose "
                  "simulated channels pace each partition's sends)")
opts.add_argument("--before", type=float, help="seconds of load before the event (default 10; 20 for "
                  "connectors-scale, whose first phase is measured over its last 12 s)")
opts.add_argument("--after", type=float, help="seconds of load after the event (default 25; 60 for "
                  "connectors-scale); api-scale: seconds of load with each count of api processes (default 15)")
opts.add_argument("--down-secs", type=float, help="how long the stopped part stays down")
opts.add_argument("--freeze-secs", type=float, default=45,
                  help="routers-scale: seconds of sends at 400/s while the routers are frozen; they stay frozen "
                  "until every send is answered, 10 s longer at most (default 45: a backlog of 18,000 that one "
                  "router drains in about 4 runs; 55 s and a heartbeat interval, 2 s, stay under the session "
                  "timeout run.sh gives this scenario, 75 s)")
opts.add_argument("--repeat", type=int, default=5,
                  help="routers-scale: pairs of drains timed, one router then two; the median of the pairs' ratios "
                  "counts (default 5)")
opts.add_argument("--router-cpu", type=float, default=0.015,
                  help="routers-scale: the share of a core each router may use (a cpu cgroup's quota, as a "
                  "container's CPU limit; needs root), so that routing is the limiting stage (default 0.015)")
opts.add_argument("--session-timeout-ms", type=int, default=6000,
                  help="the Kafka session timeout the routers run with (the kafka URL's default, 6000)")
opts.add_argument("--results", default=os.path.join(ev.ROOT, "docs/results/evidence"))
opts = opts.parse_args()
# A connector process paces its channel calls; run.sh starts the cluster with this pace for connectors-scale.
PACE = float(os.environ.get("CHAT4ALL_WHATSAPP_RATE_PER_SEC", "80"))
if opts.rate is None:
    opts.rate = {"connector-down": 20, "connectors-scale": 2.5 * PACE}.get(opts.scenario, 100)
if opts.after is None:
    opts.after = {"api-scale": 15, "connectors-scale": 60}.get(opts.scenario, 25)
if opts.before is None:
    opts.before = 20 if opts.scenario == "connectors-scale" else 10

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


def steady_assignment(routers, quiet=15, timeout=120):
    """Waits until each of `routers` owns an equal share of the 8 partitions of both topics its group reads and none
    of them has been assigned or revoked any for `quiet` s: after a member joins, tansu may hand partitions back and
    forth, even to two members at once, for half a minute. Both topics count: their consumers are members of one
    group, so a rebalance still running for status-updates when the routers are frozen can cost them their
    messages partitions at the resume. Returns the seconds it took, or None at the timeout."""
    consumers = ('consumer="router/messages"', 'consumer="router/status-updates"')
    owned = lambda name, consumer: cluster.counter([name], "consumer_partitions_owned", consumer)
    moves = lambda: cluster.counter(routers, "consumer_rebalances_total", 'consumer="router/')
    began = time.time()
    last, since = None, began
    while time.time() < began + timeout:
        state = (moves(), tuple(owned(name, consumer) for name in routers for consumer in consumers))
        if state != last:
            last, since = state, time.time()
        elif all(share == 8 / len(routers) for share in state[1]) and time.time() - since >= quiet:
            return time.time() - began
        time.sleep(0.25)
    return None


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


def finish(title, summary, goals, figures, failures, queries, notes, t0, load, watcher, marks, chart=None,
           first_goal=None):
    """Writes the chart (the load's series around the events, unless `chart` gives two series, their names and
    the x axis), the report and the index row; exits 0 when every goal held. `first_goal` (text, measured) replaces
    the message-by-message goal for a scenario that checks less."""
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
    first_goal = first_goal or ("0 acknowledged messages lost, 0 duplicate rows, 0 duplicate notifications, every "
                                "message final", "; ".join(failures) or "all held")
    goals = [(*first_goal, not failures)] + goals
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
        out.append((expr, ", ".join(f"{' '.join(labels.values())} {v:.3g}".lstrip() for labels, v in values)
                    or "no data") if label is None else (expr, label(values)))
    return out


def handled_each(names, patience=0.0):
    """{router: records of the messages topic it has handled}, from each one's /metrics. When one of them does not
    answer: None, or with `patience`, retries for that many seconds and then fails. A router held to its CPU quota
    can miss a read's timeout, and counting it 0 would read as a drain run backwards (one such read once made a drain
    read 8 times too fast)."""
    deadline = time.time() + patience
    while True:
        counts = {name: cluster.reading(name, "messages_consumed_total", 'topic="messages"') for name in names}
        if None not in counts.values():
            return counts
        if time.time() >= deadline:
            if patience:
                raise RuntimeError(f"{', '.join(names)}: /metrics did not answer for {patience:g} s")
            return None
        time.sleep(0.25)


Drain = collections.namedtuple("Drain", "loads rate cpu progress late split moved runs threads first quota")


def drain(routers, targets, limit, store):
    """Times `routers` draining a backlog. Only `routers` run, each held to its CPU limit, and their group's
    assignment is left to settle; one message to each conversation warms them up (a router started for this drain
    has not yet cached the conversations); then they are frozen (SIGSTOP) while the api accepts messages for
    --freeze-secs and until it has acknowledged them all, and resumed together (SIGCONT), within the session
    timeout. Their progress is read from the store (`store`, an ev.Psql) every 0.1 s. Returns a Drain: every load
    sent (the warm-up's and the backlog's), rate per s from the resume until the whole backlog is stored, CPU % per
    process over the drain, [(seconds since the resume, messages stored)], sends acknowledged after the resume,
    {router: records handled}, whether the group moved a partition between the freeze and the end, {router: runs of
    records (batches) routed}, {router: {thread name: µs of CPU a record}}, seconds from the resume until the first
    message was stored, {router: (share of its quota used, share of periods throttled)}."""
    for name in ("router-1", "router-2"):
        if name in routers and not cluster.alive(name):
            cluster.start(name)
        elif name not in routers and cluster.alive(name):
            cluster.signal(name, signal.SIGTERM)
    for name in routers:
        limit.apply(name, cluster.pid(name))
    watcher = ev.Watcher(cluster, bob)
    watcher.start()
    settle(watcher, bob_id)
    watcher.stop()
    took = steady_assignment(routers)
    print(f"assignment steady: {'after %.0f s' % took if took is not None else 'NO (going on)'}", flush=True)
    base = handled_each(routers, patience=30)
    warm_up = send(targets, len(targets))
    handled = sum(base.values()) + len(warm_up.acked())
    deadline = time.time() + 60
    while sum((handled_each(routers) or {}).values()) < handled and time.time() < deadline:
        time.sleep(0.25)
    moves = lambda: cluster.counter(routers, "consumer_rebalances_total", 'consumer="router/')
    # Read before the freeze: a frozen process does not answer /metrics.
    before, moves_before = handled_each(routers, patience=30), moves()
    runs_before = {name: runs_routed(name) for name in routers}
    pids = [cluster.pid(name) for name in routers]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    # The whole backlog is acknowledged before the resume (the api slows as the broker's database grows), so that
    # the drain is not paced by sends still arriving.
    load = send(targets, int(400 * opts.freeze_secs), grace=10)
    threads_before = {name: thread_cpu(name) for name in routers}
    throttling_before = {name: limit.throttling(name) for name in routers}
    stored_before, cpu_before = stored_seq(store, targets), ev.cpu_seconds(cluster.run_dir)
    began = time.time()
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    late = sum(1 for s in load.acked() if s["acked"] > began)
    total, samples, deadline = len(load.acked()), [], time.time() + 600
    # Progress is read from the store, not from the routers' /metrics: rendering it would spend their small CPU
    # share (about 2.5 ms a read under load: half of a 0.02-core quota at 4 reads a second).
    while True:
        done = stored_seq(store, targets) - stored_before
        samples.append((time.time() - began, done))
        if done >= total:
            break
        if time.time() > deadline:
            raise RuntimeError(f"{', '.join(routers)}: {done} of the {total} messages stored "
                               f"{samples[-1][0]:.0f} s after the resume")
        time.sleep(0.1)
    seconds = samples[-1][0]
    cpu = {name: (used - cpu_before.get(name, 0)) / seconds * 100
           for name, used in ev.cpu_seconds(cluster.run_dir).items()}
    throttling = {name: limit.throttling(name) for name in routers}
    threads_after = {name: thread_cpu(name) for name in routers}
    # Each router's share, once its counters have caught up with the store (they count a run after publishing its
    # notifications).
    split, until = {}, time.time() + 30
    while time.time() < until:
        counts = handled_each(routers, patience=30)
        split = {name: counts[name] - count for name, count in before.items()}
        if sum(split.values()) >= total:
            break
        time.sleep(0.1)
    else:
        print(f"the routers' counters show {sum(split.values())} of the {total} records stored", flush=True)
    threads = {name: {thread: (used - threads_before[name].get(thread, 0)) * 1e6 / max(split[name], 1)
                      for thread, used in threads_after[name].items()} for name in routers}
    # How much of its quota each router used over the drain, and how many periods ran out of it.
    quota = {}
    for name in routers:
        spent = sum(threads_after[name].values()) - sum(threads_before[name].values())
        periods = throttling[name]["periods"] - throttling_before[name]["periods"]
        quota[name] = (spent / (limit.cores * seconds),
                       (throttling[name]["throttled"] - throttling_before[name]["throttled"]) / max(periods, 1))
    return Drain([warm_up, load], total / seconds, cpu, samples, late, split, moves() != moves_before,
                 {name: runs_routed(name) - runs_before[name] for name in routers}, threads,
                 next((t for t, done in samples if done), seconds), quota)


def stored_seq(store, targets):
    """Messages stored in `targets`' conversations so far: the sum of their seq counters (`store`: an ev.Psql)."""
    prefix = targets[0][0].rsplit("-", 1)[0]
    rows = store.query(f"SELECT coalesce(sum(last_seq), 0) FROM conversations WHERE conversation_id LIKE '{prefix}-%'")
    if not rows:
        raise RuntimeError("PostgreSQL did not answer the stored-messages count")
    return int(rows[0][0])


def quota_use(quota):
    """A router's use of its CPU quota over a drain (`Drain.quota`), in words."""
    used, throttled = quota
    return f"{used * 100:.0f} % of its quota used, {throttled * 100:.0f} % of periods throttled"


def cpu_by_thread(spent):
    """A router's CPU a record by thread name (`Drain.threads`), the costliest first."""
    return ", ".join(f"{thread} {us:.0f}" for thread, us in sorted(spent.items(), key=lambda kv: -kv[1]) if us >= 1)


def runs_routed(router):
    """Runs of the messages topic's records (a batch of one or more partitions) `router` has routed."""
    return cluster.counter([router], "processing_duration_seconds_count", 'topic="messages"')


def thread_cpu(name):
    """CPU seconds of process `name`'s threads, summed by thread name (its digits dropped: a pool is one name)."""
    used, pid = {}, cluster.pid(name)
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            thread = open(f"/proc/{pid}/task/{tid}/comm").read().strip().rstrip("0123456789")
            used[thread] = used.get(thread, 0) + int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0]) / 1e9
        except OSError:
            continue
    return used


def send(targets, count, grace=1):
    """`count` sends at 400/s (what the api keeps up with early in a run) to `targets` in turn, stopped and returned
    once all are answered or their schedule and `grace` seconds more have passed."""
    load = ev.Load(cluster, alice, targets, rate=400, senders=64, count=count)
    load.start()
    until = time.time() + count / 400 + grace
    while time.time() < until and len(load.acked()) < count:
        time.sleep(0.05)
    load.stop()
    return load


def routers_scale():
    began_all = time.time()
    # Many conversations, so that each half of the 8 partitions gets about half of the backlog.
    targets = [(f"ev-{run}-{i}", bob_id) for i in range(1024)]
    drains, redone, sends_of_redone = {1: [], 2: []}, {1: 0, 2: 0}, []
    limit, store = ev.CpuLimit(opts.router_cpu), ev.Psql(cluster.env["POSTGRES_URL"])
    try:
        # In pairs, one router then two, so that what drifts over the run (the broker's growing database, the
        # machine's own speed) weighs alike on both drains of a pair.
        for _ in range(opts.repeat):
            for routers in (("router-1",), ("router-1", "router-2")):
                n = len(routers)
                for attempt in range(3):
                    result = drain(routers, targets, limit, store)
                    drains[n].append(result)
                    print(f"{n} router(s): {result.rate:.0f} msg/s, "
                          f"the first stored {result.first:.2f} s after "
                          "the resume; " + "; ".join(
                        f"{name} {result.split[name]:.0f}, "
                        f"{result.split[name] / max(result.runs[name], 1):.0f} a run, µs of CPU a record: "
                        + cpu_by_thread(result.threads[name]) + ", " + quota_use(result.quota[name])
                        for name in routers), flush=True)
                    if not result.moved or attempt == 2:
                        break
                    # tansu may take a member's partitions at the resume (a rebalance it ran during the freeze):
                    # that drain measured the broker's coordinator, not routing.
                    print("the group moved partitions inside this drain: done again", flush=True)
                    drains[n].pop()
                    redone[n] += 1
                    sends_of_redone.extend(s for load in result.loads for s in load.sends)
    finally:
        limit.release()
        store.close()
    merged = ev.Load(cluster, alice, targets, rate=1)
    merged.sends = sends_of_redone + [s for d in drains.values() for r in d for load in r.loads for s in load.sends]
    figures, failures = ev.check(cluster, alice, merged, None)
    ratios = sorted(two.rate / one.rate for one, two in zip(drains[1], drains[2]) if one.rate)
    ratio = ratios[len(ratios) // 2] if ratios else 0
    figures["each pair's ratio: two routers' drain over the one router's just before it"] = \
        ", ".join(f"{two.rate / one.rate:.2f}" for one, two in zip(drains[1], drains[2]) if one.rate)
    # Each count's median drain stands for it in the figures and the chart (a drain lasts seconds: one slow fetch
    # shows).
    runs = {n: sorted(d, key=lambda r: r.rate)[len(d) // 2] for n, d in drains.items()}
    for n, r in runs.items():
        figures[f"{n} router(s): drain rates (the backlog over the time from the resume until all of it is stored)"] = \
            ", ".join(f"{d.rate:.0f}" for d in drains[n]) + " msg/s"
        figures[f"{n} router(s): the first message stored, seconds after the resume"] = \
            ", ".join(f"{d.first:.2f}" for d in drains[n])
        figures[f"{n} router(s): the median drain"] = (
            f"{r.rate:.0f} msg/s ({len(r.loads[-1].acked())} messages, the first stored {r.first:.2f} s and all "
            f"{r.progress[-1][0]:.1f} s after the resume; {r.late} of them acknowledged after it; "
            + ", ".join(f"{k} {v:.0f}" for k, v in r.split.items())
            + " handled by each router)")
        busy = sorted(((v, k) for k, v in r.cpu.items() if v >= 1), reverse=True)
        figures[f"{n} router(s): CPU % by process (200 % = both cores)"] = ", ".join(f"{k} {v:.0f}" for v, k in busy)
        figures[f"{n} router(s): CPU % of the machine"] = f"{sum(r.cpu.values()) / 2:.0f} %"
        figures[f"{n} router(s), the median drain: records a run, µs of CPU a record by thread"] = "; ".join(
            f"{name} {r.split[name] / max(r.runs[name], 1):.0f} a run, {cpu_by_thread(r.threads[name])}"
            for name in r.split)
        figures[f"{n} router(s), each drain: the share of its quota each router used, of its periods throttled"] = \
            "; ".join(", ".join(f"{name} {used * 100:.0f} % / {throttled * 100:.0f} %"
                                for name, (used, throttled) in d.quota.items()) for d in drains[n])
        figures[f"{n} router(s): drains done again because the group moved partitions inside them"] = str(redone[n])
    goals = [(f"2 routers drain ≥ 1.9 × as fast as 1 (median of {len(ratios)} pairs' ratios)", f"{ratio:.2f}×",
              ratio >= 1.9)]
    summary = (f"Router-bound work, {opts.repeat} pairs of drains, one router then two, one after the other, so that "
               "what drifts over the run (the broker's growing database; the machine's own speed: this VM's steal "
               "time reached 12 % during runs) weighs alike on both drains of a pair; the median of the pairs' "
               "ratios counts. Each router process is held to "
               f"{opts.router_cpu:g} of a core by a cpu cgroup (`--router-cpu`), as a container's CPU limit would "
               "hold it: two processes on this 2-core machine cannot otherwise show CPU-bound scaling, because the "
               "broker (tansu, one storage thread) saturates long before a router does (unlimited, one router "
               "drained about 3,000 msg/s with 13 % of a core while tansu used 91 %). Held so, routing is the "
               "limiting stage and the broker has cores to spare (at 0.02 of a core two routers drained about "
               "1,400 msg/s where one drained 1,000: the broker's limit again). The routers run with "
               "`fetch_wait_ms=500`: an idle router spends 5.5 ms of CPU a second, 2.5 of them asking for empty "
               "partitions every 100 ms, and 3.7 with it, out of a quota of 15. In each drain only the routers "
               "being timed run, their group's assignment steady (both topics' partitions, unmoved for 15 s), "
               f"warmed up by one message to each of the {len(targets)} conversations; they are frozen (SIGSTOP) "
               f"while the api accepts {opts.freeze_secs:g} s of messages at 400/s to those conversations into the "
               "log, and stay frozen until every one is acknowledged (their session timeout is 75 s in this "
               "scenario, their heartbeat 2 s), then resume and drain them (store each with its seq, route it, "
               "publish its notification). Progress is read from the store every 0.1 s (the sum of the "
               "conversations' seq counters, one psql session), not from the routers' /metrics: under load a "
               "render cost a router about 2.5 ms of CPU, so reading it 4 times a second took half of a 0.02-core "
               "quota (the same drains ran at 414-489 msg/s on 0.02 of a core with those reads and 436-451 on "
               "0.01 without). A drain's rate is the backlog over the time from the resume until all of it is "
               "stored: the time to drain it, wake-up included. A router stores a run of records at once, and a "
               "run after a freeze holds thousands (every ready partition's fetched records, up to 2,048 each), so "
               "a window that starts later would start at a run's edge and miscount by up to a run. tansu "
               "sometimes takes the members' partitions at the resume all the same (a rebalance it ran during the "
               "freeze) and hands them back 10-20 s later: such a drain times the broker's coordinator, not "
               "routing, so it is done again (at most twice; counted below). The CPU figures name the limit: the "
               "share of its quota each router used over the drain and the share of its periods that ran out of "
               "it; the threads' figures say where a record's CPU goes (`tokio-rt-worker`: decoding, the store's "
               "queries, routing; `rdk:broker`: librdkafka's fetches). A router at its quota drains at its quota over "
               "its CPU a record, so a pair's ratio follows the CPU a record of its drains, which swings from drain "
               "to drain and between the two routers of one drain (docs/distributed.md). (Stopping the routers "
               "instead would empty their group, which tansu 0.6 does not always reassign.)")
    per_second = []
    for n in (1, 2):
        counts, last = [], 0.0
        for tenth in range(int(10 * max(t for t, _ in runs[n].progress)) + 2):
            done = max([d for t, d in runs[n].progress if t <= tenth / 10] or [0])
            counts.append(done - last)
            last = done
        per_second.append(counts)
    width = max(len(c) for c in per_second)
    per_second = [c + [0] * (width - len(c)) for c in per_second]
    queries = prometheus([(None, 'max by (group) (kafka_consumer_lag)'),
                          (None, 'sum by (instance_name) (rate(messages_consumed_total{topic="messages"}[15s]))'),
                          (None, 'sum by (consumer, change) (increase(consumer_rebalances_total[1m]))')],
                         time.time() - began_all)
    finish("Routers 1 → 2: draining a backlog", summary, goals, figures, failures, queries, [], None, None, None, [],
           chart=(per_second[0], per_second[1], ("1 router: handled per 0.1 s", "2 routers: handled per 0.1 s"),
                  "tenths of a second since the routers resumed"))


class Sampler:
    """Reads a counter of each process in `names` (a list that may grow) from its /metrics every 0.5 s, until stopped:
    the series behind a scaling scenario's rates and chart."""

    def __init__(self, names, metric, label):
        self.names, self.metric, self.label = names, metric, label
        self.samples, self.stopping = [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            self.samples.append((time.time(), {n: cluster.counter([n], self.metric, self.label)
                                               for n in list(self.names)}))
            self.stopping.wait(0.5)

    def stop(self):
        self.stopping.set()
        self.thread.join()

    def rate(self, start, stop):
        """The counters' summed increase per second between two times."""
        window = [(t, sum(c.values())) for t, c in self.samples if start <= t <= stop]
        return (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0]) if len(window) > 1 else 0.0

    def per_second(self, name, t0):
        """`name`'s increase in each second since `t0`."""
        series, last = [], None
        for second in range(int(self.samples[-1][0] - t0) + 1):
            seen = [c.get(name, 0) for t, c in self.samples if t <= t0 + second + 1]
            value = seen[-1] if seen else 0
            series.append(0 if last is None else max(0, value - last))
            last = value
        return series

    def total(self, name):
        return self.samples[-1][1].get(name, 0)


def connectors_scale():
    """WhatsApp's connectors 1 → 2 while more is offered than either can send: the rate of DELIVERED is the
    connectors' capacity, read from their own counters, before and after the second one joins the group."""
    targets = [(f"ev-{run}-w{i}", f"whatsapp:+55119{run_digits}{i:02d}") for i in range(64)]
    connectors = ["connector-whatsapp-1"]

    def second():
        cluster.start("connector-whatsapp-2", ev.free_port(), ("connector", "whatsapp"))
        connectors.append("connector-whatsapp-2")

    sampler = Sampler(connectors, "messages_sent_total", 'status="DELIVERED"')
    t0, load, watcher, figures, failures, marks = drive(
        targets, alice, [(opts.before, "connector-whatsapp-2 started", second)], targets[0][1])
    sampler.stop()
    joined, end = marks[0][0], t0 + opts.before + opts.after
    # tansu takes from seconds to about half a minute to hand the newcomer its partitions (it revokes them, then
    # may give them back to the first member after a timeout, and again): phase 2 is measured from 3 s after the
    # second connector's first delivery.
    took = next((t for t, c in sampler.samples if c.get("connector-whatsapp-2", 0) > 0), None)
    one, two = sampler.rate(joined - 12, joined), sampler.rate((took or joined + 5) + 3, end)
    ratio = two / one if one else 0
    figures.update({"pace of each connector process": f"{PACE:g} msg/s (CHAT4ALL_WHATSAPP_RATE_PER_SEC)",
                    "offered": f"{opts.rate:g} msg/s to {len(targets)} conversations",
                    "1 connector: DELIVERED per second (the 12 s before the second joined)": f"{one:.1f}",
                    "from the second connector's start to its first delivery (the group handing it partitions)":
                        fmt(took and (took - joined) * 1000),
                    "2 connectors: DELIVERED per second (from 3 s after that to the end of the load)": f"{two:.1f}",
                    "DELIVERED by each connector over the run": ", ".join(
                        f"{n} {sampler.total(n):.0f}" for n in connectors)})
    goals = [("2 connectors deliver ≥ 1.9 × as fast as 1", f"{ratio:.2f}× ({one:.1f} → {two:.1f} msg/s)",
              ratio >= 1.9)]
    summary = (f"Channel-bound work: every message goes to a WhatsApp recipient, and each connector process paces its "
               f"calls to the channel at {PACE:g} msg/s, as a provider limits each sender account (in production "
               f"each process would hold its own account's credentials). {opts.rate:g} msg/s are offered, more than "
               "one connector can send, so a backlog builds in the channel's topic and the DELIVERED rate shows "
               f"the connectors' capacity. A second connector process joins the channel's group {opts.before:g} s "
               "in and takes half of the topic's partitions. Rates are read from the connectors' own "
               "`messages_sent_total{status=\"DELIVERED\"}`; the backlog is delivered before the check.")
    queries = prometheus([(None, 'sum by (channel) (messages_pending)'),
                          (None, 'max by (group) (kafka_consumer_lag)'),
                          (None, 'sum by (consumer, change) (increase(consumer_rebalances_total[1m]))')],
                         time.time() - t0)
    notes = ["Prometheus scrapes the processes up.sh started: connector-whatsapp-2, started by the scenario, is "
             "read from its own /metrics."]
    finish("Connectors 1 → 2 for one channel", summary, goals, figures, failures, queries, notes, t0, load, watcher,
           marks,
           chart=(sampler.per_second("connector-whatsapp-1", t0), sampler.per_second("connector-whatsapp-2", t0),
                  ("connector-whatsapp-1: DELIVERED/s", "connector-whatsapp-2: DELIVERED/s"),
                  "seconds since the load began (the second connector starts at " f"{opts.before:g} s)"))


def stored(prefix):
    """(messages stored in conversations named `prefix`-N, of them not in a final status), read from PostgreSQL."""
    out = subprocess.run(["psql", cluster.env["POSTGRES_URL"], "-Atc",
                          "SELECT count(*), count(*) FILTER (WHERE status NOT IN ('DELIVERED', 'READ', 'FAILED')) "
                          f"FROM messages WHERE conversation_id LIKE '{prefix}-%'"],
                         capture_output=True, text=True, check=True).stdout
    total, open_ = out.strip().split("|")
    return int(total), int(open_)


def api_scale():
    """Closed-loop sends through nginx (wrk: one thread, 64 connections) with one api process, then with two."""
    prefix, phases, runs = f"ev-{run}", {}, []
    t0, sampler = time.time(), Sampler(["api-1", "api-2"], "messages_accepted_total", 'service="api"')
    cluster.signal("api-2", signal.SIGTERM)
    for count in (1, 2):
        if count == 2:
            cluster.start("api-2")
        # Unmeasured seconds first: nginx takes api-2 back once its fail_timeout (2 s) has passed.
        runs.append(wrk(cluster.api, "/v1/messages", 3, alice, bob_id, prefix=prefix))
        before = ev.cpu_seconds(cluster.run_dir)
        result = wrk(cluster.api, "/v1/messages", int(opts.after), alice, bob_id, prefix=prefix)
        runs.append(result)
        after = ev.cpu_seconds(cluster.run_dir)
        seconds = result["duration_us"] / 1e6
        cpu = {name: (used - before.get(name, 0)) / seconds * 100 for name, used in after.items()}
        phases[count] = (result, cpu)
        print(f"{count} api: {result['rate']:.0f} req/s, p99 {result['p99_us'] / 1000:.1f} ms, "
              f"errors {result['errors']}", flush=True)
    sampler.stop()
    # wrk counts the answers it read; the requests still in flight when it stops (at most one per connection) are
    # answered, and stored, after it stopped counting.
    accepted = sum(r["requests"] - r["errors"] for r in runs)
    in_flight = 64 * len(runs)
    deadline = time.time() + 120
    while (counts := stored(prefix))[0] < accepted or counts[1]:
        if time.time() > deadline:
            break
        time.sleep(1)
    total, open_ = counts
    failures = []
    if not accepted <= total <= accepted + in_flight:
        failures.append(f"{total} stored for {accepted} acknowledged (and at most {in_flight} in flight)")
    if open_:
        failures.append(f"{open_} not in a final status")
    figures = {"acknowledged (answers wrk counted, warm-ups included)": accepted,
               "stored (PostgreSQL; also the requests in flight when wrk stopped)": total,
               "not in a final status": open_}
    for count, (result, cpu) in phases.items():
        figures[f"{count} api: sends per second, p50 / p99, errors"] = (
            f"{result['rate']:.0f}/s, {result['p50_us'] / 1000:.1f} / {result['p99_us'] / 1000:.1f} ms, "
            f"{result['errors']}")
        busy = sorted(((v, k) for k, v in cpu.items() if v >= 1), reverse=True)
        figures[f"{count} api: CPU % by process (200 % = both cores; wrk not included)"] = \
            ", ".join(f"{k} {v:.0f}" for v, k in busy)
        figures[f"{count} api: CPU % of the machine used by the cluster"] = f"{sum(cpu.values()) / 2:.0f} %"
    ratio = phases[2][0]["rate"] / phases[1][0]["rate"]
    goals = [("the ratio of 2 api processes to 1, reported (issue 15 sets no target; the CPU figures say what "
              "limits it)", f"{ratio:.2f}× ({phases[1][0]['rate']:.0f} → {phases[2][0]['rate']:.0f} sends/s)", True)]
    summary = (f"Closed-loop sends through nginx for {opts.after:g} s, by wrk with one thread and 64 connections, "
               "each message to an internal user: first with api-1 alone (api-2 stopped), then with both. Every "
               "process of the cluster, nginx and wrk share the machine's two cores. Every acknowledged message is "
               "then counted in PostgreSQL.")
    queries = prometheus([(None, 'sum by (instance_name) (rate(http_requests_total{path="/v1/messages"}[15s]))'),
                          (None, 'sum by (instance_name) (rate(process_cpu_seconds_total[15s]))')],
                         time.time() - t0)
    finish("API 1 → 2 behind nginx", summary, goals, figures, failures, queries, [], None, None, None, [],
           chart=(sampler.per_second("api-1", t0), sampler.per_second("api-2", t0),
                  ("api-1: accepted/s", "api-2: accepted/s"), "seconds since the scenario began (api-2 stopped, "
                  "then started again)"),
           first_goal=("every acknowledged message stored (counted: acknowledged ≤ stored ≤ acknowledged + in "
                       "flight), every message final",
                       "; ".join(failures) or "all held"))


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


# Idle, then two rates well under the knee of sends with an Idempotency-Key (about 300/s here): past the knee the
# processes wait on each other and their CPU stops following the rate.
MODEL_RATES = (0, 100, 200)
MODEL_TARGETS = (10_000, 100_000, 1_000_000)
# The cores of a node the model may use: 2-core nodes kept at 70 % CPU.
NODE_CORES = 2 * 0.7
# Stages by process name prefix; "broker" is tansu, "store" PostgreSQL with its backends.
STAGES = {"api": "api-", "router": "router-", "broker": "tansu", "store": "postgres", "nginx": "nginx"}


def capacity_model():
    """Steady load at each of MODEL_RATES for --after s: the CPU each stage uses, fitted per stage as a fixed part plus
    a cost per message, and from it the cores, processes and partitions for 10^4, 10^5 and 10^6 messages a minute."""
    began_all = time.time()
    targets = [(f"ev-{run}-{i}", bob_id) for i in range(64)]
    watcher = ev.Watcher(cluster, bob)
    watcher.start()
    settle(watcher, bob_id)
    phases, sends = [], []
    for rate in MODEL_RATES:
        load = ev.Load(cluster, alice, targets, rate or 1, senders=32, count=None if rate else 0)
        before, began = ev.cpu_seconds(cluster.run_dir), time.time()
        load.start()
        time.sleep(opts.after)
        after, seconds = ev.cpu_seconds(cluster.run_dir), time.time() - began
        load.stop()
        sends += load.sends
        used = {stage: sum(v - before.get(n, 0) for n, v in after.items() if n.startswith(prefix)) / seconds
                for stage, prefix in STAGES.items()}
        measured = len([s for s in load.sends if s["first"] and s["first"] < began + seconds]) / seconds
        phases.append((measured, used))
        print(f"{rate}/s offered, {measured:.0f}/s sent: " + ", ".join(f"{k} {v:.2f}" for k, v in used.items()),
              flush=True)
    merged = ev.Load(cluster, alice, targets, rate=1)
    merged.sends = sends
    figures, failures = ev.check(cluster, alice, merged, watcher)
    watcher.stop()
    fits = {}
    for stage in STAGES:
        xs, ys = [r for r, _ in phases], [u[stage] for _, u in phases]
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
        fits[stage] = (max(0.0, mean_y - slope * mean_x), max(0.0, slope))
    rows = ["| stage | " + " | ".join(f"cores at {r:.0f}/s" for r, _ in phases) +
            " | fixed (cores) | CPU per message |", "|---|" + "---|" * (len(phases) + 2)]
    for stage, (fixed, slope) in fits.items():
        rows.append(f"| {stage} | " + " | ".join(f"{u[stage]:.2f}" for _, u in phases) +
                    f" | {fixed:.2f} | {slope * 1e6:.0f} µs |")
    model = ["| messages a minute | per second | " + " | ".join(f"{s} cores" for s in STAGES) +
             " | api + router processes (2-core nodes at 70 %) |", "|---|---|" + "---|" * (len(STAGES) + 1)]
    for per_minute in MODEL_TARGETS:
        rate = per_minute / 60
        cores = {stage: fixed + slope * rate for stage, (fixed, slope) in fits.items()}
        nodes = {stage: max(1, math.ceil(cores[stage] / NODE_CORES)) for stage in ("api", "router")}
        model.append(f"| {per_minute:,} | {rate:,.0f} | " + " | ".join(f"{cores[s]:.1f}" for s in STAGES) +
                     f" | {nodes['api']} + {nodes['router']} |")
    figures.update({"offered rates (msg/s, --after s each)": ", ".join(f"{r}" for r in MODEL_RATES) +
                    f" ({opts.after:g} s each)"})
    notes = ["CPU by stage (cores, from /proc of every process of the cluster), and the fit per stage:", ""] + rows + \
            ["", "The model: cores = fixed + CPU per message × rate, per stage, for each target:", ""] + model + [
        "",
        "How to read it:",
        "- It is an upper bound. The costs are measured at low rates, where the processes hand on records one or "
        "two at a time; at higher rates producers and routers batch and the cost per message falls (without an "
        "Idempotency-Key, the accept path of this same cluster took 1,500 sends a second, docs/distributed.md). The "
        "store's share is the largest: a send with an Idempotency-Key reserves it (a write and a commit), the api "
        "checks the sender's membership, the router writes the message and its status.",
        "- api and router processes scale out: each owns its share of the requests or of the partitions. The last "
        "column counts 2-core nodes kept at 70 % CPU. A router needs at least one partition, so the messages topic "
        "needs at least as many partitions as routers (8 by default: more routers than that sit idle). Leave "
        "headroom: twice the routers you plan, since the partition count cannot shrink later.",
        "- The broker figure is tansu's: one process, and mostly one thread, on SQLite. Past about one core it is "
        "the wall of this local cluster (uncapped, 2 routers drained a backlog no faster than 1). "
        "Apache Kafka spreads partitions across brokers and costs far less per record; its sizing is Kafka's own.",
        "- The store figure is one PostgreSQL. Past one server's cores, the store partitions by conversation "
        "(Citus, or Cassandra, the documented target; docs/adr/).",
        "- External channels are not in this load: a connector's throughput is its provider's pace (80 msg/s per "
        "WhatsApp sender account by default), so 10^6 messages a minute to WhatsApp needs 16,667 / 80 ≈ 209 sender "
        "accounts, one connector process or more each; connectors-scale shows two processes doubling a channel.",
    ]
    summary = (f"The cluster idle, then steady load at {', '.join(str(r) for r in MODEL_RATES if r)} msg/s, "
               f"{opts.after:g} s each, through nginx to two api processes and two routers, every message to an "
               "internal user and sent with an Idempotency-Key (as the retrying clients of the other scenarios do: "
               "the api reserves the key in the store, a write and a commit per send); the CPU time of every "
               "process of the cluster over each phase, grouped by stage. A straight line through the points gives "
               "each stage's fixed cost (polling, heartbeats) and its cost per message, from which the table below "
               "sizes 10^4, 10^5 and 10^6 messages a minute. Every message is then checked.")
    queries = prometheus([(None, 'sum by (role) (rate(process_cpu_seconds_total[15s]))'),
                          (None, 'sum by (instance_name) (rate(http_requests_total{path="/v1/messages"}[15s]))')],
                         time.time() - began_all)
    finish("Capacity model from measured per-stage costs", summary, [], figures, failures, queries, notes, None, None,
           None, [], chart=([u["broker"] * 100 for _, u in phases], [u["router"] * 100 for _, u in phases],
                            ("broker CPU % of a core", "routers CPU % of a core"),
                            "phases: " + ", ".join(f"{r}/s" for r in MODEL_RATES)))


ROLLING = ("router-1", "router-2", "connector-whatsapp-1", "connector-instagram-1", "api-1", "api-2")


def rolling_restart():
    """Every role process stopped (SIGTERM) and started again, one after the other, --down-secs apart."""
    gap = opts.down_secs or 8
    targets = [(f"ev-{run}-u{i}", bob_id) for i in range(16)] + \
              [(f"ev-{run}-w{i}", f"whatsapp:+55119{run_digits}{i:02d}") for i in range(8)] + \
              [(f"ev-{run}-i{i}", f"instagram:@ev{run}{i}") for i in range(8)]
    restarts = {}

    def restart(name):
        began = time.time()
        cluster.signal(name, signal.SIGTERM)
        stopped = time.time()
        cluster.start(name)
        restarts[name] = (stopped - began, time.time() - stopped)

    events = [(opts.before + i * gap, f"{name} restarted", lambda name=name: restart(name))
              for i, name in enumerate(ROLLING)]
    t0, load, watcher, figures, failures, marks = drive(targets, alice, events, bob_id)
    errors = failed_attempts(load)
    unretryable = {k: v for k, v in errors.items() if int(k) not in RETRYABLE}
    latencies = latency_ms(load, watcher, [s for s in load.acked() if s["recipient"] == bob_id])
    figures.update({"failed attempts by status (0 = connection or timeout), each retried": errors or "none",
                    "sends that needed a retry": sum(1 for s in load.sends if s["errors"]),
                    "send-to-push p50 / p99 / largest (internal recipients)": " / ".join(
                        fmt(v) for v in (ev.percentile(latencies, 50), ev.percentile(latencies, 99),
                                         max(latencies, default=None))),
                    "each process: stopping / starting until /health/live": ", ".join(
                        f"{name} {down:.1f} / {up:.1f} s" for name, (down, up) in restarts.items())})
    goals = [("every failed attempt is retryable (no answer, 429, 502, 503, 504), never a 4xx or 500",
              str(unretryable or "none"), not unretryable),
             ("every process restarted", f"{len(restarts)}/{len(ROLLING)}", len(restarts) == len(ROLLING))]
    summary = (f"Steady load of {opts.rate:g} msg/s through nginx to {len(targets)} conversations (internal users, "
               f"WhatsApp and Instagram recipients), clients retrying with their Idempotency-Key. {opts.before:g} s in, "
               f"every role process is stopped with SIGTERM and started again, one after the other, {gap:g} s "
               f"apart: {', '.join(ROLLING)}, as an orchestrator rolls out a new version. A stopping process "
               "finishes its batch, commits and leaves its group; nginx sends new requests to the other api.")
    queries = prometheus([(None, 'sum by (status) (increase(http_requests_total{path="/v1/messages"}[1m]))'),
                          (None, "max(kafka_consumer_lag)")], time.time() - t0)
    finish("Rolling restart of every role under load", summary, goals, figures, failures, queries, [], t0, load,
           watcher, marks)


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
        if backend == "store":
            # The postmaster's parent, runuser, stopped itself when its child stopped (as su does under job
            # control): it would stay stopped, and outlive the cluster.
            with open(f"/proc/{frozen[0]}/stat") as f:
                os.kill(int(f.read().rsplit(")", 1)[1].split()[1]), signal.SIGCONT)

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
elif opts.scenario == "connectors-scale":
    connectors_scale()
elif opts.scenario == "api-scale":
    api_scale()
elif opts.scenario == "capacity-model":
    capacity_model()
elif opts.scenario == "rolling-restart":
    rolling_restart()
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
