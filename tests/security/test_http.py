"""taskrtd --http: /metrics in the Prometheus text format, who may read it, and its
address rules (docs/SECURITY.md, README "Metrics and dashboard").

Every daemon is stopped by its fixture, by pid; traffic goes to 127.0.0.1 only.
"""
import os
import re
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import AS_NOBODY, cli, free_port, make_ca

PROMTOOL = os.environ.get("TASKRT_PROMTOOL", "")


def start_http(daemons, *args):
    """A daemon with --http on a free loopback port; returns (daemon, url, token)."""
    d = daemons("--http", f"127.0.0.1:{free_port()}", *args)
    url = wait_url(d)
    with open(os.path.join(d.state_dir, "token")) as f:
        token = f.read().split()[0]
    return d, url, token


def wait_url(d, timeout=10):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"http serving (https?://[0-9.]+:\d+)", d.output())
        if m:
            return m.group(1)
        time.sleep(0.05)
    raise AssertionError(f"no 'http serving' line: {d.output()}")


def get(url, token=None, context=None):
    """(status, headers, body) of a GET."""
    req = urllib.request.Request(url)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=20, context=context) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def samples(text, daemon=None):
    """{'name{labels}': value} of the exposition text (comments skipped). Every series
    must carry the label daemon="<daemon>" (any daemon name when None), which is taken
    out of the key."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            m = re.search(r'daemon="([^"]*)",?', key)
            assert m, f"series without a daemon label: {line}"
            assert daemon is None or m.group(1) == daemon, line
            key = (key[:m.start()] + key[m.end():]).replace(",}", "}").replace("{}", "")
            out[key] = float(value)
    return out


def test_metrics_need_a_token(daemons):
    d, url, token = start_http(daemons)
    status, headers, body = get(url + "/metrics")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer TOKEN" in body
    status, _, _ = get(url + "/metrics", token="x" * 64)
    assert status == 401
    status, headers, body = get(url + "/metrics", token=token)
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")


def test_another_user_can_neither_read_the_token_nor_the_metrics(daemons):
    d, url, token = start_http(daemons)
    probe = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n"
        "    open(sys.argv[2]).read(); print('read the token')\n"
        "except PermissionError:\n"
        "    pass\n"
        "try:\n"
        "    urllib.request.urlopen(sys.argv[1], timeout=20); print('got metrics')\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n")
    r = subprocess.run([*AS_NOBODY, "/usr/bin/python3", "-c", probe, url + "/metrics",
                        os.path.join(d.state_dir, "token")], capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.strip() == "401", r


def test_metrics_count_what_ran_and_name_no_task(daemons):
    d, url, token = start_http(daemons, "--id-prefix", "node-a")
    ids = []
    for _ in range(3):
        r = cli("--socket", d.socket, "submit", "sys.noop", "--wait", "-o", "json")
        assert r.code == 0, r
        ids.append(r.json()["id"])
    r = cli("--socket", d.socket, "submit", "sys.sleep", "--json", '{"ms": 5000}', "--timeout",
            "200ms", "--wait")
    assert r.code == 1, r
    status, _, body = get(url + "/metrics", token=token)
    assert status == 200
    m = samples(body, daemon="node-a")
    assert all(i.startswith("node-a-") for i in ids), ids
    assert m['taskrt_tasks_finished_total{executor="async",handler="sys.noop",state="succeeded"}'] == 3
    timed_out = [v for k, v in m.items()
                 if k.startswith("taskrt_tasks_finished_total{") and 'handler="sys.sleep"' in k
                 and 'state="timed_out"' in k]
    assert timed_out == [1], body
    assert m["taskrt_tasks_submitted_total"] == 4
    assert m['taskrt_tasks{state="succeeded"}'] == 3
    assert m['taskrt_tasks{state="timed_out"}'] == 1
    assert m['taskrt_workers{pool="cpu",state="idle"}'] == 1  # --cpu-workers 1
    for pool in ("cpu", "io"):
        for lane in ("sync", "async"):
            assert f'taskrt_queue_depth{{lane="{lane}",pool="{pool}"}}' in m, body
    assert m['taskrt_queue_wait_seconds_count{lane="async",pool="io"}'] >= 3
    assert m['taskrt_journal_commit_seconds_count{synced="true"}'] >= 1
    assert sum(v for k, v in m.items() if k.startswith("taskrt_classifier_decisions_total")) == 4
    for task_id in ids:
        assert task_id not in body


def test_a_crashed_worker_is_counted(daemons):
    d, url, token = start_http(daemons)
    stats = cli("--socket", d.socket, "stats", "-o", "json")
    assert stats.code == 0, stats
    pid = next(w["pid"] for w in stats.json()["workers"] if w["pool"] == "cpu")
    os.kill(pid, 9)
    import time
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = samples(get(url + "/metrics", token=token)[2])
        if m.get('taskrt_worker_exits_total{pool="cpu",reason="crashed"}') == 1:
            return
        time.sleep(0.1)
    raise AssertionError(f"the killed worker was not counted: {m}")


def test_metrics_pass_promtool(daemons):
    if not (PROMTOOL and os.access(PROMTOOL, os.X_OK)):
        if os.environ.get("CI"):
            pytest.fail(f"promtool not found at {PROMTOOL!r}: scripts/promtool.sh puts it there")
        pytest.skip(f"promtool not found at {PROMTOOL!r} (run scripts/promtool.sh)")
    d, url, token = start_http(daemons)
    for handler, spec in (("sys.noop", "{}"), ("math.primes", '{"below": 1000}')):
        assert cli("--socket", d.socket, "submit", handler, "--json", spec, "--wait").code == 0
    _, _, body = get(url + "/metrics", token=token)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout + r.stderr == "", r.stdout + r.stderr  # no lint warning either


def test_http_off_loopback_needs_tls(daemons):
    d = daemons("--http", f"0.0.0.0:{free_port()}", ready=False)
    assert d.exited() == 1
    assert "needs TLS" in d.output(), d.output()


@pytest.mark.parametrize("address,says", [
    ("nonsense", "expected HOST:PORT"),
    ("127.0.0.1:99999", "expected HOST:PORT"),
    ("example.com:80", "is not an IP address"),
])
def test_a_bad_http_address_is_refused(daemons, address, says):
    d = daemons("--http", address, ready=False)
    assert d.exited() == 1
    assert says in d.output() and "--http" in d.output(), d.output()


def test_an_http_port_in_use_fails_the_start(daemons):
    d, url, _ = start_http(daemons)
    second = daemons("--http", url.split("//")[1], ready=False)
    assert second.exited() == 1
    assert "cannot listen" in second.output(), second.output()


def test_http_with_tls(daemons, tmp_root):
    pki = os.path.join(tmp_root, "pki")
    os.makedirs(pki)
    make_ca(pki)
    p = lambda f: os.path.join(pki, f)
    d, url, token = start_http(daemons, "--tls-cert", p("server.pem"), "--tls-key", p("server.key"))
    assert url.startswith("https://"), url
    context = ssl.create_default_context(cafile=p("ca.pem"))
    status, _, body = get(url + "/metrics", token=token, context=context)
    assert status == 200 and "taskrt_tasks" in body
    # Clear text to the TLS port gets no metrics.
    with pytest.raises(Exception):
        get(url.replace("https://", "http://") + "/metrics", token=token)


def test_dashboard_data_is_the_callers_own(daemons, tmp_root):
    tokens = os.path.join(tmp_root, "tokens")
    root_token, bob_token = "r" * 40, "b" * 40
    with open(tokens, "w") as f:
        f.write(f"{root_token}\n{bob_token} bob\n")
    os.chmod(tokens, 0o600)
    d = daemons("--http", f"127.0.0.1:{free_port()}", "--token-file", tokens)
    url = wait_url(d)
    r = cli("--socket", d.socket, "submit", "sys.noop", "--wait", "-o", "json")
    assert r.code == 0, r
    task_id = r.json()["id"]
    # The page itself needs no token; every /api/ route does.
    status, headers, body = get(url + "/")
    assert status == 200 and "taskrt dashboard" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    for path in ("/api/stats", "/api/tasks", f"/api/task?id={task_id}", "/api/events"):
        assert get(url + path)[0] == 401, path
    # root's token is the daemon's uid (an admin); bob's is token:bob.
    status, _, body = get(url + f"/api/task?id={task_id}", token=root_token)
    assert status == 200 and task_id in body
    status, _, body = get(url + f"/api/task?id={task_id}", token=bob_token)
    assert status == 404, body
    status, _, body = get(url + "/api/tasks", token=bob_token)
    assert status == 200 and task_id not in body, body
    status, _, body = get(url + "/api/stats", token=bob_token)
    assert '"caller":"token:bob"' in body and '"owners"' not in body, body
    status, _, body = get(url + "/api/tasks?limit=0", token=root_token)
    assert status == 400 and "limit" in body


def test_event_streams_are_bounded_and_end_with_the_daemon(daemons):
    import http.client
    d, url, token = start_http(daemons)
    host, port = url.split("//")[1].split(":")
    streams = []
    for _ in range(4):
        c = http.client.HTTPConnection(host, int(port), timeout=20)
        c.request("GET", "/api/events", headers={"Authorization": f"Bearer {token}"})
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
        assert r.readline().startswith(b": taskrt events")
        streams.append((c, r))
    status, _, body = get(url + "/api/events", token=token)
    assert status == 503 and "limit" in body, body
    # An event for the open streams, then the daemon stops: each stream ends.
    assert cli("--socket", d.socket, "submit", "sys.noop", "--wait").code == 0
    c, r = streams[0]
    lines = b""
    while b"TASK_STATE_SUCCEEDED" not in lines:
        line = r.readline()
        assert line, lines
        lines += line
    d.stop()
    for c, r in streams:
        r.read()  # returns once the daemon ended the stream (timeout 20 s otherwise)
        c.close()
