"""What every evidence scenario shares: the local cluster's processes (scripts/cluster/up.sh), paced load with
Idempotency-Key retries, a recipient's WebSocket, the message-by-message check, Prometheus queries and the Markdown
report with its chart. Bounded: every loop has a deadline."""
import http.client, json, os, platform, signal, socket, subprocess, threading, time, urllib.parse, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_env(path):
    values = {}
    for line in open(path):
        if line.startswith("export "):
            key, value = line[len("export "):].strip().split("=", 1)
            values[key] = value
    return values


class Cluster:
    """The processes of one cluster's RUN_DIR: stop, kill and start them by name, as processes.tsv lists them."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.env = read_env(os.path.join(run_dir, "cluster.env"))
        self.api = self.env["API_URL"]
        self.prometheus = self.env["PROMETHEUS_URL"]
        self.ports = {}
        for line in open(os.path.join(run_dir, "processes.tsv")):
            name, port = line.rstrip("\n").split("\t")[:2]
            self.ports[name] = int(port)

    def pid(self, name):
        with open(os.path.join(self.run_dir, name + ".pid")) as f:
            return int(f.read())

    def signal(self, name, sig, wait=15):
        """Sends `sig` to process `name` and waits (up to `wait` s) until it is gone."""
        pid = self.pid(name)
        os.kill(pid, sig)
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)
        raise RuntimeError(f"{name} (pid {pid}) still runs {wait} s after signal {sig}")

    def start(self, name, port=None, role=()):
        """Starts a role process again as processes.tsv lists it, or a new one on `port` with the `role` arguments;
        returns once it answers /health/live."""
        extra = [str(port), *role] if port else []
        subprocess.run(["bash", os.path.join(ROOT, "scripts/cluster/role.sh"), self.run_dir, name, *extra],
                       check=True, stdout=subprocess.DEVNULL)
        if port:
            self.ports[name] = port

    def counter(self, names, metric, label):
        """The sum of `metric`'s series that carry `label` (such as 'topic="messages"') on the named processes'
        /metrics; a process that does not answer counts 0."""
        return sum(self.reading(name, metric, label) or 0.0 for name in names)

    def reading(self, name, metric, label):
        """The sum of `metric`'s series that carry `label` on process `name`'s /metrics, or None when it does not
        answer (down, frozen, or held to a CPU quota so small that it misses the read's timeout)."""
        status, text = request(f"http://127.0.0.1:{self.ports[name]}", "GET", "/metrics", timeout=2)
        if status != 200 or not isinstance(text, str):
            return None
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(metric + "{") and label in line)

    def alive(self, name):
        try:
            os.kill(self.pid(name), 0)
            return True
        except (OSError, ValueError):
            return False

    def health(self, name):
        """The /health status of a role process ("UP", "DOWN", …), or "unreachable"."""
        status, body = request(f"http://127.0.0.1:{self.ports[name]}", "GET", "/health", timeout=2)
        return body.get("status", str(status)) if isinstance(body, dict) else "unreachable"

    def query(self, expr, at=None):
        """An instant Prometheus query: [(labels, value)]."""
        path = "/api/v1/query?query=" + urllib.parse.quote(expr) + (f"&time={at}" if at else "")
        _, body = request(self.prometheus, "GET", path)
        if not isinstance(body, dict) or body.get("status") != "success":
            return []
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]


class Psql:
    """One psql session kept open, for readings taken many times a second (a psql process each time would cost the
    machine more than the query)."""

    END = "-- end of answer --"

    def __init__(self, url):
        self.process = subprocess.Popen(["psql", url, "-At", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)

    def query(self, sql):
        """The rows `sql` returns, each a list of its columns as text (an error returns none)."""
        self.process.stdin.write(f"{sql};\n\\echo '{self.END}'\n")
        self.process.stdin.flush()
        rows = []
        for line in self.process.stdout:
            if line.rstrip("\n") == self.END:
                return rows
            rows.append(line.rstrip("\n").split("|"))
        raise RuntimeError("psql ended")

    def close(self):
        self.process.stdin.close()
        self.process.wait()


class CpuLimit:
    """Caps processes at a share of one core, each in its own cpu cgroup: what a container's CPU limit does, so a
    stage's CPU-bound work is bounded per process while the machine keeps cores for the rest. cgroup v1's cfs
    quota or v2's cpu.max; needs write access to the cgroup tree (root). `release` moves the processes back."""

    PERIOD_US = 100_000  # The kernel's default period; its smallest quota, 1 ms, is 0.01 of a core.

    def __init__(self, cores):
        if cores < 0.01:
            raise SystemExit(f"a CPU limit of {cores:g} core is below the 0.01 a cpu cgroup allows")
        self.cores, self.quota_us, self.groups = cores, int(cores * self.PERIOD_US), {}
        if os.path.exists("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
            self.root, self.v2 = "/sys/fs/cgroup/cpu", False
        elif "cpu" in open_or_empty("/sys/fs/cgroup/cgroup.controllers").split():
            self.root, self.v2 = "/sys/fs/cgroup", True
        else:
            raise SystemExit("no cpu cgroup controller is mounted (/sys/fs/cgroup/cpu or cgroup v2's cpu)")
        if not os.access(self.root, os.W_OK):
            raise SystemExit(f"{self.root} is not writable: the CPU limit needs root")

    def apply(self, name, pid):
        """Puts process `pid` (all its threads) under the limit, in a cgroup of its own named after `name`."""
        if name not in self.groups:
            self.groups[name] = self._create(f"chat4all-evidence-{name}")
        write(os.path.join(self.groups[name], "cgroup.procs"), str(pid))

    def _create(self, name):
        group = os.path.join(self.root, name)
        if self.v2:
            write(os.path.join(self.root, "cgroup.subtree_control"), "+cpu")
        os.makedirs(group, exist_ok=True)
        if self.v2:
            write(os.path.join(group, "cpu.max"), f"{self.quota_us} {self.PERIOD_US}")
        else:
            write(os.path.join(group, "cpu.cfs_period_us"), str(self.PERIOD_US))
            write(os.path.join(group, "cpu.cfs_quota_us"), str(self.quota_us))
        return group

    def throttling(self, name):
        """`name`'s group's counters: {periods, throttled (the periods that ran out of quota)}."""
        stat = dict(line.split() for line in open_or_empty(os.path.join(self.groups[name], "cpu.stat")).splitlines())
        return {"periods": int(stat.get("nr_periods", 0)), "throttled": int(stat.get("nr_throttled", 0))}

    def release(self):
        """Moves every limited process back to the root group and removes the groups."""
        for group in self.groups.values():
            for pid in open_or_empty(os.path.join(group, "cgroup.procs")).split():
                try:
                    write(os.path.join(self.root, "cgroup.procs"), pid)
                except OSError:
                    pass  # It exited meanwhile.
            os.rmdir(group)
        self.groups.clear()


def open_or_empty(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def request(base, method, path, body=None, token=None, headers=None, timeout=10, connection=None):
    """One HTTP exchange: (status, decoded JSON or text); status 0 when the connection failed."""
    split = urllib.parse.urlsplit(base)
    conn = connection or http.client.HTTPConnection(split.hostname, split.port, timeout=timeout)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if token:
        all_headers["Authorization"] = "Bearer " + token
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw or b"null")
        except ValueError:
            return response.status, raw.decode(errors="replace")
    except (OSError, http.client.HTTPException) as e:
        conn.close()
        return 0, str(e)
    finally:
        if connection is None:
            conn.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user(base, name):
    """Registers (or reuses) `name` and logs in: (token, user id)."""
    password = "password-" + name
    request(base, "POST", "/auth/register", {"username": name, "password": password})
    status, body = request(base, "POST", "/auth/token", {"username": name, "password": password})
    assert status == 200, f"login {name}: {status} {body}"
    return body["access_token"], body["user_id"]


class Load:
    """Paced sends (`rate` per second, by a pacer and a pool of senders) through the api, each with its own
    Idempotency-Key and retried with it on a connection error, a 5xx or a 429 until it is acknowledged (202) or
    `retry_for` seconds pass; `count` bounds the sends. Every send is recorded: key, target, first try, acknowledgement, attempts, errors."""

    def __init__(self, cluster, token, targets, rate, senders=16, retry_for=60, count=None):
        self.cluster, self.token, self.targets, self.rate, self.count = cluster, token, targets, rate, count
        self.retry_for = retry_for
        self.sends = []  # dicts, appended by the pacer
        self.queue = []
        self.lock = threading.Condition()
        self.stopping = False
        self.threads = [threading.Thread(target=self._sender, daemon=True) for _ in range(senders)]
        self.pacer = threading.Thread(target=self._pace, daemon=True)

    def start(self):
        for thread in self.threads:
            thread.start()
        self.pacer.start()

    def stop(self):
        """Stops scheduling, then waits for every scheduled send to be acknowledged or to give up."""
        self.stopping = True
        self.pacer.join()
        with self.lock:
            self.lock.notify_all()
        for thread in self.threads:
            thread.join(self.retry_for + 15)

    def _pace(self):
        began, n = time.time(), 0
        while not self.stopping and (self.count is None or n < self.count):
            due = began + n / self.rate
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            conversation, recipient = self.targets[n % len(self.targets)]
            send = {"n": n, "key": uuid.uuid4().hex, "conversation": conversation, "recipient": recipient,
                    "scheduled": due, "first": None, "acked": None, "attempts": 0, "errors": {}, "message_id": None}
            with self.lock:
                self.sends.append(send)
                self.queue.append(send)
                self.lock.notify()
            n += 1

    def _sender(self):
        split = urllib.parse.urlsplit(self.cluster.api)
        conn = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
        while True:
            with self.lock:
                while not self.queue and not self.stopping:
                    self.lock.wait(0.5)
                if not self.queue:
                    return
                send = self.queue.pop(0)
            body = {"conversation_id": send["conversation"], "content": f"evidence {send['n']}",
                    "recipient_id": send["recipient"]}
            backoff = 0.05
            send["first"] = time.time()
            while time.time() - send["first"] < self.retry_for:
                send["attempts"] += 1
                status, reply = request(self.cluster.api, "POST", "/v1/messages", body, self.token,
                                        {"Idempotency-Key": send["key"]}, connection=conn)
                if status == 202:
                    send["acked"], send["message_id"] = time.time(), reply["message_id"]
                    break
                send["errors"][status] = send["errors"].get(status, 0) + 1
                if status == 0:
                    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=10)
                elif status not in (429,) and status < 500:
                    break  # a 4xx other than 429 will not change by retrying
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    def acked(self):
        return [s for s in self.sends if s["acked"]]


class Watcher:
    """A recipient's WebSocket through the api (nginx, or the one api instance `api` names): when each message was
    pushed (`new_message`) and when it reached each status (`status_update`), with repeats counted. Reconnects when
    the socket drops (the server closes a socket that reads too slowly, 4002, or its api instance goes away) and then
    catches up from history as docs/api.md tells clients to: each conversation it has seen, and each of
    `conversations`, after the last `seq` it had."""

    def __init__(self, cluster, token, api=None, conversations=()):
        base = api or cluster.api
        self.cluster, self.token = cluster, token
        self.url = base.replace("http://", "ws://") + "/v1/ws?token=" + urllib.parse.quote(token)
        self.pushed, self.pushes, self.statuses = {}, {}, {}
        self.caught_up, self.last_seq = {}, {c: 0 for c in conversations}
        self.disconnects = 0
        self.ready = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._listen, daemon=True)

    def start(self):
        self.thread.start()
        assert self.ready.wait(15), "the WebSocket did not open"

    def stop(self):
        self.stopping = True
        self.thread.join(5)

    def _catch_up(self):
        for conversation, seq in list(self.last_seq.items()):
            for m in history(self.cluster, self.token, conversation, after=seq):
                now = time.time()
                if m["message_id"] not in self.pushed:
                    self.caught_up.setdefault(m["message_id"], now)
                self.statuses.setdefault(m["message_id"], {}).setdefault(m["status"], now)
                self.last_seq[conversation] = max(self.last_seq[conversation], m["seq"])

    def _listen(self):
        from websockets.sync.client import connect  # installed into .venv by run.sh
        while not self.stopping:
            try:
                with connect(self.url, open_timeout=10) as ws:
                    if self.ready.is_set():
                        self._catch_up()
                    self.ready.set()
                    while not self.stopping:
                        try:
                            frame = json.loads(ws.recv(timeout=0.5))
                        except TimeoutError:
                            continue
                        now = time.time()
                        kind, message = frame.get("type"), frame.get("message_id")
                        if kind == "new_message":
                            self.pushes[message] = self.pushes.get(message, 0) + 1
                            self.pushed.setdefault(message, now)
                            conversation = frame["conversation_id"]
                            self.last_seq[conversation] = max(self.last_seq.get(conversation, 0), frame["seq"])
                        elif kind == "status_update":
                            self.statuses.setdefault(message, {}).setdefault(frame["status"], now)
            except Exception:  # the socket dropped or did not open: count it, try again
                self.disconnects += 1
                time.sleep(0.2)


def history(cluster, token, conversation, after=0):
    messages = []
    for _ in range(10_000):
        status, body = request(cluster.api, "GET", f"/v1/conversations/{conversation}/messages?limit=100&after={after}",
                               token=token)
        if status != 200:
            raise RuntimeError(f"history of {conversation}: {status} {body}")
        messages += body["messages"]
        if not body["pagination"]["has_more"]:
            return messages
        after = body["pagination"]["next_cursor"]
    raise RuntimeError("history paging did not end")


FINAL = ("DELIVERED", "READ", "FAILED")


def check(cluster, token, load, watcher, settle=90):
    """Message by message: every acknowledged message is in its conversation's history exactly once, `seq` is
    gap-free, every message reaches a final status (waiting up to `settle` s) and, when a `watcher` is given, reached
    the recipient: pushed at most once, or caught up from history after the socket was closed.
    Returns (figures, failures)."""
    acked = load.acked()
    by_conversation = {}
    for send in acked:
        by_conversation.setdefault(send["conversation"], set()).add(send["message_id"])
    deadline = time.time() + settle
    while True:
        # Pushes first: a message pushed after its history was read is not missed by waiting for the next round.
        unpushed = sum(1 for s in acked if watcher and not received(watcher, s["message_id"]))
        views = {c: history(cluster, token, c) for c in by_conversation}
        open_ = sum(1 for c in views for m in views[c] if m["status"] not in FINAL)
        missing = sum(len(ids - {m["message_id"] for m in views[c]}) for c, ids in by_conversation.items())
        if (open_ == 0 and unpushed == 0 and missing == 0) or time.time() > deadline:
            break
        time.sleep(1)
    failures, stored, duplicates, gaps, lost = [], 0, 0, 0, 0
    statuses = {}
    for conversation, ids in by_conversation.items():
        messages = views[conversation]
        stored += len(messages)
        seen = [m["message_id"] for m in messages]
        duplicates += len(seen) - len(set(seen))
        lost += len(ids - set(seen))
        if [m["seq"] for m in messages] != list(range(1, len(messages) + 1)):
            gaps += 1
        for m in messages:
            statuses[m["status"]] = statuses.get(m["status"], 0) + 1
    not_received = sum(1 for s in acked if watcher and not received(watcher, s["message_id"]))
    caught_up = sum(1 for s in acked if watcher and s["message_id"] in watcher.caught_up)
    pushed_twice = sum(1 for n in watcher.pushes.values() if n > 1) if watcher else 0
    unacked = [s for s in load.sends if not s["acked"]]
    figures = {"scheduled": len(load.sends), "acknowledged": len(acked), "not acknowledged": len(unacked),
               "stored": stored, "lost": lost, "duplicate rows": duplicates, "conversations with seq gaps": gaps,
               "not in a final status": open_, "caught up from history after a reconnect": caught_up,
               "received neither live nor by catch-up": not_received, "pushed twice": pushed_twice,
               "statuses": ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))}
    if watcher is None:
        for name in ("caught up from history after a reconnect", "received neither live nor by catch-up",
                     "pushed twice"):
            del figures[name]
    for name in ("lost", "duplicate rows", "conversations with seq gaps", "not in a final status",
                 "received neither live nor by catch-up", "pushed twice", "not acknowledged"):
        if figures.get(name):
            failures.append(f"{figures[name]} {name}")
    return figures, failures


def received(watcher, message_id):
    return message_id in watcher.pushed or message_id in watcher.caught_up


def percentile(values, p):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def series(load, watcher, t0, until):
    """Per second from t0: acknowledged sends, pushed messages, and the p99 of send-to-push latency (ms) of the
    messages first sent in that second."""
    seconds = int(until - t0) + 1
    acked, pushed, latency = [0] * seconds, [0] * seconds, [[] for _ in range(seconds)]
    for send in load.sends:
        if send["acked"] and 0 <= send["acked"] - t0 < seconds:
            acked[int(send["acked"] - t0)] += 1
        at = watcher.pushed.get(send["message_id"])
        if at and 0 <= at - t0 < seconds:
            pushed[int(at - t0)] += 1
        if at and send["first"] and 0 <= send["first"] - t0 < seconds:
            latency[int(send["first"] - t0)].append((at - send["first"]) * 1000)
    return acked, pushed, [percentile(v, 99) for v in latency]


def chart(path, acked, pushed, p99, events, title, names=("acknowledged/s", "pushed/s"),
          x_axis="seconds since the load began"):
    """An SVG of the per-second series: throughput above, the p99 latency below (log scale; left out when `p99`
    is None), events marked."""
    width, height, left, panel = 900, (420 if p99 is not None else 230), 60, 150
    n = max(len(acked), 2)
    x = lambda i: left + (width - left - 20) * i / (n - 1)
    top_max = max(acked + pushed + [1]) * 1.15
    lat = [v for v in (p99 or []) if v]
    import math
    lo, hi = 0.0, math.log10(max(lat + [10]) * 1.5)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{left}" y="16" font-size="13">{title}</text>']

    def axis(y0, label, ticks):
        parts.append(f'<line x1="{left}" y1="{y0 + panel}" x2="{width - 20}" y2="{y0 + panel}" stroke="#999"/>')
        parts.append(f'<line x1="{left}" y1="{y0}" x2="{left}" y2="{y0 + panel}" stroke="#999"/>')
        parts.append(f'<text x="4" y="{y0 + 10}">{label}</text>')
        for value, y in ticks:
            parts.append(f'<text x="{left - 4}" y="{y + 4}" text-anchor="end">{value}</text>')
            parts.append(f'<line x1="{left}" y1="{y}" x2="{width - 20}" y2="{y}" stroke="#eee"/>')

    y1 = 30
    ty = lambda v: y1 + panel - panel * v / top_max
    axis(y1, "msg/s", [(int(top_max * f), ty(top_max * f)) for f in (0, 0.5, 1)])
    for values, color in ((acked, "#1f77b4"), (pushed, "#2ca02c")):
        points = " ".join(f"{x(i):.1f},{ty(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>')
    parts.append(f'<text x="{width - 300}" y="{y1 + 12}" fill="#1f77b4">{names[0]}</text>'
                 f'<text x="{width - 150}" y="{y1 + 12}" fill="#2ca02c">{names[1]}</text>')
    y2 = y1 + panel + 40
    if p99 is None:
        parts.append(f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">{x_axis}</text></svg>')
        with open(path, "w") as f:
            f.write("\n".join(parts) + "\n")
        return
    ly = lambda v: y2 + panel - panel * (math.log10(max(v, 1)) - lo) / (hi - lo)
    axis(y2, "p99 ms", [(f"{10 ** e:g}", ly(10 ** e)) for e in range(0, int(hi) + 1)])
    segment = []
    for i, v in enumerate(p99 + [None]):
        if v is None:
            if len(segment) > 1:
                parts.append(f'<polyline fill="none" stroke="#d62728" stroke-width="1.5" points="{" ".join(segment)}"/>')
            segment = []
        else:
            segment.append(f"{x(i):.1f},{ly(v):.1f}")
    parts.append(f'<text x="{width - 230}" y="{y2 + 12}" fill="#d62728">p99 send-to-push latency</text>')
    for at, label in events:
        ex = x(min(max(at, 0), n - 1))
        parts.append(f'<line x1="{ex:.1f}" y1="{y1}" x2="{ex:.1f}" y2="{y2 + panel}" stroke="#555" '
                     f'stroke-dasharray="4,3"/><text x="{ex + 3:.1f}" y="{y1 + 26}">{label}</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">{x_axis}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = next((int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    return f"{os.cpu_count()} cores ({cpu}), {mem / 1024 / 1024:.0f} GiB RAM, {platform.system()} {platform.release()}"


def commit():
    try:
        out = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + (" (with local changes)" if dirty else "")
    except OSError:
        return "?"


# The tree a scenario runs from, read as it starts: by its end its own chart has changed the tree.
STARTED_FROM = commit()


def report(path, title, command, summary, goals, figures, queries, chart_name, notes):
    """The Markdown report: what ran where, the goals with pass/fail, the figures, the Prometheus queries."""
    lines = [f"# {title}", "", f"- command: `{command}`", f"- commit: {STARTED_FROM}", f"- machine: {machine()}",
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "", summary, "",
             "| goal | measured | result |", "|---|---|---|"]
    lines += [f"| {goal} | {measured} | {'pass' if ok else '**FAIL**'} |" for goal, measured, ok in goals]
    lines += ["", f"![throughput and latency around the event]({chart_name})", "", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in figures.items()]
    if queries:
        lines += ["", "Prometheus over the run (the same queries as the dashboards):", "", "| query | value |",
                  "|---|---|"]
        lines += [f"| `{q}` | {v} |" for q, v in queries]
    if notes:
        lines += [""] + notes
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def cpu_seconds(run_dir):
    """CPU seconds used so far by each process of the cluster with a pid file in RUN_DIR, its descendants included
    (PostgreSQL's backends): {name: seconds}."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats, children = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
        children.setdefault(int(fields[1]), []).append(int(entry))
    used = {}
    for pid_file in sorted(os.listdir(run_dir)):
        if not pid_file.endswith(".pid"):
            continue
        with open(os.path.join(run_dir, pid_file)) as f:
            stack, total = [int(f.read().strip() or 0)], 0.0
        while stack:
            pid = stack.pop()
            total += stats.get(pid, 0.0)
            stack += children.get(pid, [])
        used[pid_file[:-4]] = total
    return used
