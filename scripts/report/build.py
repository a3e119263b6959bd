#!/usr/bin/env python3
"""Builds docs/report.md from scripts/report/template.md and the measured runs kept in docs/results/.

The template holds the prose; each `<!-- insert: NAME -->` line is replaced by a block generated here from the
results files, the ADRs, the dashboards, the alert rules and the code (crates, ports, metric names), so that the
report cannot say what the repository does not. Every figure carries a source tag [Sn]; the sources table at the
end names each one's commit, machine and command. A backticked repository path in the template must exist.

    python3 scripts/report/build.py            # writes docs/report.md
    python3 scripts/report/build.py --check    # exits 1 when docs/report.md is not what the results give
"""

import argparse
import difflib
import glob
import json
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TEMPLATE = "scripts/report/template.md"
OUTPUT = "docs/report.md"
EVIDENCE = "docs/results/evidence"
LOAD_TESTS = "docs/results/load-tests"


class Missing(Exception):
    """A results file lacks what the report needs from it."""


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def link(rel):
    """A link from docs/report.md to a repository file."""
    return os.path.relpath(os.path.join(ROOT, rel), os.path.join(ROOT, "docs"))


def cells(line):
    """The cells of a Markdown table row; a `|` inside backticks stays in its cell."""
    out, cell, code = [], "", False
    for ch in line.strip().strip("|"):
        if ch == "`":
            code = not code
        if ch == "|" and not code:
            out.append(cell.strip())
            cell = ""
        else:
            cell += ch
    out.append(cell.strip())
    return out


def tables(text):
    """Every Markdown table in `text`: a list of rows, the header first."""
    found, rows = [], []
    for line in text.splitlines() + [""]:
        if line.lstrip().startswith("|"):
            row = cells(line)
            if not all(re.fullmatch(r":?-+:?", c) for c in row):
                rows.append(row)
        elif rows:
            found.append(rows)
            rows = []
    return found


def table_with(text, first_header, rel):
    for table in tables(text):
        if table[0][0] == first_header:
            return table
    raise Missing(f"{rel}: no table whose first column is {first_header!r}")


def render(table):
    head, *rows = table
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def block(text, name, rel):
    match = re.search(rf"<!-- {name}:[^>]*-->\n(.*?)<!-- end of {name} -->", text, re.S)
    if not match:
        raise Missing(f"{rel}: no generated block {name!r}")
    return match.group(1).strip()


def k6_throughput(record, run_dir):
    """A k6 run's throughput for the summary: its messages, or its uploads when it sent none (04-file-upload)."""
    if record["send p95"] != "-":
        return f"{record['messages/s']} msg/s, send p95 {record['send p95']}"
    metrics = json.loads(read(f"{LOAD_TESTS}/{run_dir}/summary.json"))["metrics"]
    upload = metrics.get("http_req_duration{endpoint:upload}")
    if not upload or not upload.get("p(95)"):
        raise Missing(f"{LOAD_TESTS}/{run_dir}/summary.json: neither sends nor uploads")
    return (f"{metrics['iterations']['rate']:,.1f} uploads/s ({metrics['data_sent']['rate'] / 1e6:,.0f} MB/s), "
            f"upload p95 {upload['p(95)']:.2f} ms")


def rebase_links(markdown, rel_dir):
    """Rewrites the relative links and images of a results file for docs/report.md."""

    def fix(match):
        target = match.group(2)
        if re.match(r"[a-z]+:|#|/", target):
            return match.group(0)
        return f"{match.group(1)}({link(os.path.normpath(os.path.join(rel_dir, target)))})"

    return re.sub(r"(!?\[[^\]]*\])\(([^)]+)\)", fix, markdown)


class Sources:
    """The results files the report quotes, each with the commit, machine and command behind its figures."""

    def __init__(self):
        self.entries = []

    def tag(self, rel, commit, machine, command, date=""):
        for i, entry in enumerate(self.entries):
            if entry[0] == rel and entry[4] == command:
                return f"[S{i + 1}](#sources)"
        self.entries.append((rel, commit, machine, date, command))
        return f"[S{len(self.entries)}](#sources)"

    def of_report(self, rel, text):
        """A results file that states its own provenance (`- command:`, `- commit:`, `- machine:`, `- date:`)."""
        fields = dict(re.findall(r"^- (command|commit|machine|date): (.+)$", text, re.M))
        if not {"command", "commit", "machine"} <= fields.keys():
            raise Missing(f"{rel}: no '- command:', '- commit:' and '- machine:' lines")
        return self.tag(rel, fields["commit"], fields["machine"], fields["command"].strip("`"), fields.get("date", ""))

    def of_goals_line(self, rel, text):
        """A block headed by "`COMMAND` on commit C, MACHINE, DATE UTC, ..." (scripts/perf/goals.py)."""
        match = re.search(r"^`([^`]+)` on commit (\w+[^,]*), ([^,]+, [^,]+), ([\d-]+ [\d:]+ UTC)", text, re.M)
        if not match:
            raise Missing(f"{rel}: no '`command` on commit ...' line")
        command, commit, machine, date = match.groups()
        return self.tag(rel, commit, machine, command, date)

    def of_prose(self, rel, text, command=None):
        """A hand-kept results file: its 'Machine:' sentence, its first command, and the commit that last changed it
        (the figures were measured at or just before it)."""
        flat = " ".join(text.split())
        machine = re.search(r"Machine: (.+?)\.(?:\s|$)", flat) or re.search(r"(\d+-core, \d+ GiB) machine", flat)
        commit = git("log", "-1", "--format=%h", "--", rel) or "(not committed yet)"
        if command is None:
            shell = re.search(r"```sh\n(.*?)\n```", text, re.S)
            command = shell.group(1).splitlines()[-1].split("  #")[0].strip() if shell else ""
        return self.tag(rel, f"figures committed in `{commit}`", machine.group(1) if machine else "see the file",
                        command)

    def render(self):
        lines = ["| source | results file | commit | machine | date | command |", "|---|---|---|---|---|---|"]
        for i, (rel, commit, machine, date, command) in enumerate(self.entries):
            lines.append(f"| S{i + 1} | [{rel}]({link(rel)}) | {commit} | {machine} | {date} | `{command}` |")
        return "\n".join(lines)


def git(*args):
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def verdict(text):
    return "**FAIL**" if "FAIL" in text.upper() else "pass" if "pass" in text.lower() else text


class Report:
    def __init__(self):
        self.sources = Sources()
        self.summary = []  # (area, goal, measured, result, source)
        self.blocks = {}
        self.collect()

    # Results -----------------------------------------------------------------------------------------------

    def collect(self):
        self.performance()
        self.evidence()
        self.k6()
        self.capacity()
        self.files()
        self.crash_loop()
        self.security()
        self.blocks["observability"] = observability()
        self.blocks["crates"] = crates()
        self.blocks["ports"] = ports()
        self.blocks["adrs"] = adrs()

    def performance(self):
        rel = "docs/results/performance.md"
        text = read(rel)
        for name, area in (("goals", "performance, embedded"), ("soak", "soak, embedded")):
            part = block(text, name, rel)
            source = self.sources.of_goals_line(rel, part)
            table = table_with(part, "goal", rel)
            for goal, measured, target, result in table[1:]:
                self.summary.append((area, f"{goal}: {target}", measured, verdict(result), source))
            self.blocks["performance" if name == "goals" else name] = f"{render(table)}\n\nSource: {source}."

    def evidence(self):
        index = read(f"{EVIDENCE}/README.md")
        parts = []
        for title, name in re.findall(r"^\| \[([^\]]+)\]\(([\w-]+)\.md\)", index, re.M):
            rel = f"{EVIDENCE}/{name}.md"
            text = read(rel)
            source = self.sources.of_report(rel, text)
            goals = table_with(text, "goal", rel)
            for goal, measured, result in goals[1:]:
                self.summary.append((f"[{title}]({link(rel)})", goal, measured, verdict(result), source))
            # Tables beyond the goals, the check's figures and the queries: a scenario's own results (the sizing).
            extra = "".join(f"\n\n{render(t)}" for t in tables(text) if t[0][0] not in ("goal", "figure", "query"))
            intro = text.split("\n\n")[2] if text.count("\n\n") > 2 else ""
            chart = f"\n\n![{title}]({link(f'{EVIDENCE}/{name}.svg')})" if os.path.exists(
                os.path.join(ROOT, EVIDENCE, f"{name}.svg")) else ""
            parts.append(f"### {title}\n\n{rebase_links(intro, EVIDENCE)}\n\n{render(goals)}{extra}\n\nSource: {source}; "
                         f"the full figures and the Prometheus queries: [{name}.md]({link(rel)}).{chart}")
        if not parts:
            raise Missing(f"{EVIDENCE}/README.md: no scenario rows")
        self.blocks["evidence"] = "\n\n".join(parts)

    def k6(self):
        rel = "docs/results/load-tests.md"
        text = read(rel)
        summary = read(f"{LOAD_TESTS}/SUMMARY.md")
        table = table_with(summary, "run", f"{LOAD_TESTS}/SUMMARY.md")
        source = self.sources.of_prose(rel, text, "scripts/load-tests/run.sh SCENARIO; "
                                                  "chat4all loadtest report --summary-dir ... RUN_DIRS")
        head = table[0]
        charts = []
        for row in table[1:]:
            record = dict(zip(head, row))
            run_dir = re.search(r"\]\(([^/]+)/", record["run"]).group(1)
            self.summary.append(("k6, embedded", f"{run_dir.split('-2')[0]}: the script's thresholds",
                                 f"{k6_throughput(record, run_dir)}, errors {record['errors']}",
                                 verdict(record["thresholds"]), source))
            chart = f"{LOAD_TESTS}/{run_dir}/latency-over-time.svg"
            if os.path.exists(os.path.join(ROOT, chart)):
                charts.append(f"![{run_dir}: latency over time]({link(chart)})")
        recorded = {re.sub(r"-\d{8}T\d{6}Z$", "", os.path.basename(d))
                    for d in glob.glob(os.path.join(ROOT, LOAD_TESTS, "*")) if os.path.isdir(d)}
        scripts = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "scripts/load-tests/0*.js")))
        missing = [s for s in scripts if s not in recorded]
        note = (f"\n\nNot recorded in `{LOAD_TESTS}/` yet: {', '.join(f'`{m}`' for m in missing)}."
                if missing else "")
        self.blocks["k6"] = (f"{rebase_links(render(table), LOAD_TESTS)}\n\nSource: {source}. Each run's report "
                             f"(latency per endpoint, statuses, thresholds) is linked from its name.{note}\n\n"
                             + "\n".join(charts))

    def capacity(self):
        rel = "docs/results/capacity/capacity.md"
        text = read(rel)
        knee = re.search(r"\*\*Knee \(POST /v1/messages\): (\d+) msg/s\*\*", text)
        slo = re.search(r"SLO (p99 ≤ [\d.]+ ms, errors ≤ [\d.]+ %)", text)
        if not knee or not slo:
            raise Missing(f"{rel}: no knee or SLO line")
        command = re.search(r"^(chat4all loadtest capacity [^\n]+)", read("docs/results/load-tests.md"), re.M)
        source = self.sources.of_prose(rel, read("docs/results/load-tests.md"),
                                       command.group(1) if command else "chat4all loadtest capacity")
        self.summary.append(("capacity, embedded", f"knee: the highest rate within {slo.group(1)}",
                             f"{int(knee.group(1)):,} msg/s", "reported", source))
        steps = table_with(text, "rate/s", rel)
        chart = f"\n\n![capacity ramp]({link('docs/results/capacity/capacity.svg')})" if os.path.exists(
            os.path.join(ROOT, "docs/results/capacity/capacity.svg")) else ""
        self.blocks["capacity"] = (f"Knee of `POST /v1/messages` ({slo.group(1)}): **{int(knee.group(1)):,} msg/s**."
                                   f"\n\n{render(steps)}\n\nSource: {source}.{chart}")

    def files(self):
        rel = "docs/results/files.md"
        text = read(rel)
        table = table_with(text, "run", rel)
        target = re.search(r"Targets: ([^.]+)\.", text)
        source = self.sources.of_prose(rel, text)

        def mbs(cell):
            return float(re.search(r"([\d,.]+) MB/s", cell).group(1).replace(",", ""))

        up = min(mbs(r[1]) for r in table[1:])
        down = min(mbs(r[2]) for r in table[1:])
        rss = max(float(re.search(r"([\d.]+) MiB", r[3]).group(1)) for r in table[1:])
        held = up >= 500 and down >= 500 and rss < 64
        self.summary.append(("files, embedded", target.group(1) if target else "≥ 500 MB/s both ways",
                             f"upload ≥ {up:,.0f} MB/s, download ≥ {down:,.0f} MB/s, RSS growth ≤ {rss} MiB "
                             f"({len(table) - 1} runs)", "pass" if held else "**FAIL**", source))
        self.blocks["files"] = f"{render(table)}\n\n{target.group(0) if target else ''} Source: {source}."

    def crash_loop(self):
        rel = "docs/results/reliability.md"
        text = read(rel)
        match = re.search(r"`(kills=\d+ acked=\d+ stored=\d+ distinct=\d+ lost=(\d+) duplicated=(\d+)[^`]*)`", text)
        if not match:
            raise Missing(f"{rel}: no crash-loop result line")
        source = self.sources.of_prose(rel, text)
        held = match.group(2) == "0" and match.group(3) == "0"
        self.summary.append(("crash loop, embedded", "kill -9 under load: 0 acknowledged lost, 0 duplicated",
                             " ".join(match.group(1).split()), "pass" if held else "**FAIL**", source))

    def security(self):
        rel = "docs/results/security.md"
        text = read(rel)
        source = self.sources.of_prose(rel, text)
        self.blocks["security"] = f"{render(table_with(text, 'attack', rel))}\n\nSource: {source}."

    # Assembly ----------------------------------------------------------------------------------------------

    def summary_table(self):
        lines = ["| area | goal | measured | result | source |", "|---|---|---|---|---|"]
        lines += [f"| {a} | {g} | {m} | {r} | {s} |" for a, g, m, r, s in self.summary]
        passed = sum(1 for row in self.summary if row[3] == "pass")
        failed = sum(1 for row in self.summary if "FAIL" in row[3])
        return (f"{passed} goals held and {failed} missed in the latest runs; rows marked *reported* have no target."
                f"\n\n" + "\n".join(lines))

    def misses(self):
        rows = [f"- **{area}**: {goal}: measured {measured} ({source})"
                for area, goal, measured, result, source in self.summary if "FAIL" in result]
        return "\n".join(rows) if rows else "None: every goal held in the latest runs."

    def build(self):
        template = read(TEMPLATE)
        check_paths(template)
        blocks = dict(self.blocks)
        blocks["summary"] = self.summary_table()
        blocks["misses"] = self.misses()
        blocks["banner"] = (f"> Generated by `scripts/report.sh` from `{TEMPLATE}` and the results in `docs/results/`;"
                            " do not edit it by hand.")

        def insert(match):
            name = match.group(1)
            if name not in blocks:
                raise Missing(f"{TEMPLATE}: unknown insert {name!r}")
            return blocks[name]

        body = re.sub(r"^<!-- insert: ([\w-]+) -->$", insert, template, flags=re.M)
        return f"{body.rstrip()}\n\n## Sources\n\n{self.sources.render()}\n"


# Code-derived blocks ---------------------------------------------------------------------------------------

def observability():
    text = read("crates/server/src/telemetry/mod.rs")
    metrics = re.findall(r'describe_(counter|gauge|histogram)!\(\s*"(\w+)",\s*(?:Unit::\w+,\s*)?"([^"]+)"', text)
    if not metrics:
        raise Missing("crates/server/src/telemetry/mod.rs: no described metrics")
    parts = ["**Metrics** (described in `crates/server/src/telemetry/mod.rs`):", "",
             "| metric | kind | meaning |", "|---|---|---|"]
    parts += [f"| `{name}` | {kind} | {help_} |" for kind, name, help_ in metrics]
    parts += ["", "**Dashboards** (`monitoring/grafana/dashboards/`):", "", "| dashboard | panels |", "|---|---|"]
    for path in sorted(glob.glob(os.path.join(ROOT, "monitoring/grafana/dashboards/*.json"))):
        with open(path, encoding="utf-8") as f:
            dashboard = json.load(f)
        panels = ", ".join(p["title"] for p in dashboard.get("panels", []) if p.get("title"))
        parts.append(f"| {dashboard['title']} | {panels} |")
    with open(os.path.join(ROOT, "monitoring/alerts.yml"), encoding="utf-8") as f:
        rules = [r for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "alert" in r]
    parts += ["", "**Alerts** (`monitoring/alerts.yml`; what to check first: [docs/operations.md](operations.md)):", "",
              "| alert | severity | after | when |", "|---|---|---|---|"]
    for rule in rules:
        summary = rule.get("annotations", {}).get("summary", "").replace("{{ $labels.", "<").replace(" }}", ">")
        parts.append(f"| {rule['alert']} | {rule.get('labels', {}).get('severity', '')} | {rule.get('for', '0s')} "
                     f"| {summary} |")
    return "\n".join(parts)


def crates():
    rows = ["| crate | job |", "|---|---|"]
    for order in ("core", "embedded", "kafka", "postgres", "s3", "connectors", "server", "client", "loadtest"):
        manifest = f"crates/{order}/Cargo.toml"
        description = re.search(r'^description = "(.+)"$', read(manifest), re.M)
        rows.append(f"| [`{order}`]({link(f'crates/{order}')}) | {description.group(1) if description else ''} |")
    listed = {os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(ROOT, "crates/*/Cargo.toml"))}
    if len(listed) != len(rows) - 2:
        raise Missing(f"crates/: the report lists {len(rows) - 2} crates, the workspace has {sorted(listed)}")
    return "\n".join(rows)


def ports():
    rows = ["| port | what it is for |", "|---|---|"]
    for path in sorted(glob.glob(os.path.join(ROOT, "crates/core/src/ports/*.rs"))
                       + glob.glob(os.path.join(ROOT, "crates/core/src/ports/store/mod.rs"))):
        rel = os.path.relpath(path, ROOT)
        if rel.endswith("ports/mod.rs"):
            continue
        doc = " ".join(line[4:] for line in read(rel).splitlines() if line.startswith("//! "))
        rows.append(f"| [`{rel.removeprefix('crates/core/src/ports/')}`]({link(rel)}) | {doc} |")
    return "\n".join(rows)


def adrs():
    rows = []
    for path in sorted(glob.glob(os.path.join(ROOT, "docs/adr/[0-9]*.md"))):
        rel = os.path.relpath(path, ROOT)
        title = read(rel).splitlines()[0].lstrip("# ")
        rows.append(f"- [{title}]({link(rel)})")
    return "\n".join(rows)


def check_paths(template):
    """Every backticked repository path the prose names exists."""
    for path in re.findall(r"`((?:crates|scripts|monitoring|docs|deploy)/[\w./-]*)`", template):
        if not os.path.exists(os.path.join(ROOT, path)):
            raise Missing(f"{TEMPLATE} names {path}, which does not exist")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"compare with {OUTPUT} instead of writing it")
    args = parser.parse_args()
    try:
        report = Report().build()
    except (Missing, OSError, KeyError, AttributeError) as e:
        sys.exit(f"report: {e}")
    target = os.path.join(ROOT, OUTPUT)
    if args.check:
        # The commit that last changed a hand-kept results file moves when the report is committed with it.
        def stable(text):
            return re.sub(r"figures committed in `[^`]+`", "figures committed in `…`", text)

        current = read(OUTPUT) if os.path.exists(target) else ""
        if stable(current) != stable(report):
            diff = difflib.unified_diff(current.splitlines(), report.splitlines(), OUTPUT, "regenerated", lineterm="")
            print("\n".join(list(diff)[:40]))
            sys.exit(f"report: {OUTPUT} is out of date; run scripts/report.sh")
        print(f"report: {OUTPUT} matches the results")
        return
    with open(target, "w", encoding="utf-8") as f:
        f.write(report)
    print(f"report: wrote {OUTPUT} ({len(report.splitlines())} lines, {len(report_sources(report))} sources)")


def report_sources(text):
    return re.findall(r"^\| S\d+ \|", text, re.M)


if __name__ == "__main__":
    main()
