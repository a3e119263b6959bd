"""wrk driving scripts/perf/send.lua (the performance goals and the evidence scenarios share it): POSTs of a message
to one of 1,000 conversations, each to the user `recipient`, parsed into figures."""
import os, re, shutil, subprocess, sys

SEND_LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "send.lua")


def ensure_wrk():
    """Installs Debian's wrk when it is missing (as root, like the cluster's nginx and Prometheus)."""
    if shutil.which("wrk"):
        return
    print("installing Debian's wrk", file=sys.stderr)
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(install, check=True, capture_output=True)


def wrk(base, path, seconds, token, recipient, connections=64, prefix="perf"):
    """wrk's figures (requests, errors, duration_us, p50_us, p99_us, rate). Conversations are named `prefix`-N."""
    ensure_wrk()
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", SEND_LUA,
                          base],
                         env={**os.environ, "TOKEN": token, "RECIPIENT": recipient, "SEND_PATH": path,
                              "PREFIX": prefix},
                         capture_output=True, text=True, check=True).stdout
    fields = dict(kv.split("=") for kv in re.search(r"RESULT (.*)", out).group(1).split())
    fields = {k: int(v) for k, v in fields.items()}
    fields["rate"] = fields["requests"] / (fields["duration_us"] / 1e6)
    return fields
