"""taskrt.Client over three taskrtd on 127.0.0.1 (docs/CLUSTER.md): spreading, routing ids
to their owner, keyed submits on the rendezvous owner, run_many across the daemons, and a
draining daemon left out.

Needs TASKRT_BIN_DIR (the build's bin/; ctest sets it). Every daemon is stopped by its pid;
every wait is bounded. The drain test is last: it leaves node-2 draining.
"""
from __future__ import annotations

import collections
import os
import secrets
import socket
import threading
import time

import pytest

import taskrt
import taskrt.aio
from taskrt import _cluster
from taskrtd_process import TaskrtdProcess

BIN_DIR = os.environ.get("TASKRT_BIN_DIR", "build/bin")
TASKRTD = os.path.join(BIN_DIR, "taskrtd")
NAMES = ["node-0", "node-1", "node-2"]
T = 30  # seconds: the bound of every wait


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    token_file = root / "tokens"
    token_file.write_text("cluster-test-token\n")
    os.chmod(token_file, 0o600)
    daemons, addresses = [], []
    try:
        for n, name in enumerate(NAMES):
            port = _free_port()
            directory = root / name
            directory.mkdir()
            daemons.append(TaskrtdProcess(
                TASKRTD, str(directory), ("--listen", "127.0.0.1:%d" % port, "--id-prefix",
                                          name, "--token-file", str(token_file))))
            addresses.append("127.0.0.1:%d" % port)
        yield {"daemons": daemons, "addresses": addresses, "token_file": str(token_file)}
    finally:
        for d in daemons:
            d.stop()


def _client(cluster, order=(0, 1, 2), **options) -> taskrt.Client:
    target = "ipv4:" + ",".join(cluster["addresses"][i] for i in order)
    return taskrt.Client(target, token_file=cluster["token_file"], **options)


def _owner(task_id: str) -> str:
    return task_id.rpartition("-")[0]


def test_names_and_stats(cluster, monkeypatch):
    monkeypatch.setenv("TASKRT_TARGET", "ipv4:" + ",".join(cluster["addresses"]))
    with taskrt.Client(token_file=cluster["token_file"]) as client:
        stats = client.cluster_stats()
        assert sorted(name for name, _ in stats) == NAMES
        assert all(isinstance(s, taskrt.Stats) and s.daemon == name for name, s in stats)


def test_round_robin_spreads_300_noops_evenly(cluster):
    with _client(cluster, spread="round-robin") as client:
        ids = [client.submit("sys.noop") for _ in range(300)]
        assert collections.Counter(_owner(i) for i in ids) == {name: 100 for name in NAMES}
        assert all(t.state == "succeeded" for t in client.wait_many(ids, timeout=T))
    with pytest.raises(ValueError, match="spread"):
        _client(cluster, spread="random")


def test_least_loaded_spreads_over_every_daemon(cluster):
    # No-ops (each daemon reports a load of 1 or 2 at random: noise the spread must not
    # follow, or one daemon starves), then tasks that stay queued, so that each daemon's
    # reported load grows with what it got.
    with _client(cluster) as client:
        noops = [client.submit("sys.noop") for _ in range(300)]
        per_daemon = collections.Counter(_owner(i) for i in noops)
        assert min(per_daemon.get(name, 0) for name in NAMES) >= 60, per_daemon
        ids = [client.submit("sys.sleep", {"ms": 20000}) for _ in range(300)]
        try:
            per_daemon = collections.Counter(_owner(i) for i in ids)
            assert min(per_daemon.get(name, 0) for name in NAMES) >= 60, per_daemon
        finally:
            client.cancel(ids)
        assert all(t.state == "cancelled" for t in client.wait_many(ids, timeout=T))


def test_ids_route_to_their_owner(cluster):
    with _client(cluster, spread="round-robin") as client:
        ids = [client.submit("sys.noop", {"n": n}) for n in range(6)]
        assert {_owner(i) for i in ids} == set(NAMES)
        shuffled = ids[::-1]
        assert [t.id for t in client.get_many(shuffled)] == shuffled
        assert [t.id for t in client.wait_many(shuffled, timeout=T)] == shuffled
        assert client.wait(ids[0], timeout=T).state == "succeeded"
        sleepers = [client.submit("sys.sleep", {"ms": 20000}) for _ in range(3)]
        assert {_owner(i) for i in sleepers} == set(NAMES)
        cancelled = client.cancel(sleepers)
        assert [t.id for t in cancelled] == sleepers
        assert all(t.state == "cancelled" for t in client.wait_many(sleepers, timeout=T))
        assert client.cancel(sleepers[1]).id == sleepers[1]
        with pytest.raises(taskrt.NotFound, match="'node-9'.*node-0"):
            client.get("node-9-1")
        newest = client.list(limit=5)
        assert len(newest) == 5
        stamps = [t.decision.submitted for t in newest]
        assert stamps == sorted(stamps, reverse=True)
        assert sleepers[-1] in [t.id for t in newest]


def test_watch_of_ids_on_several_daemons(cluster):
    with _client(cluster, spread="round-robin") as client:
        ids = [client.submit("sys.sleep", {"ms": 20000}) for _ in range(3)]
        assert {_owner(i) for i in ids} == set(NAMES)
        done = set()
        with client.watch(ids) as watch:
            timer = threading.Timer(T, watch.cancel)
            timer.start()
            try:
                client.cancel(ids)
                for event in watch:
                    if event.done:
                        done.add(event.task_id)
                        if done == set(ids):
                            break
            finally:
                timer.cancel()
        assert done == set(ids)


def test_keyed_submit_has_one_owner_whatever_the_order(cluster):
    key = "cluster-key-%d" % time.monotonic_ns()
    owner = _cluster.key_owner(NAMES, key)
    with _client(cluster) as first, _client(cluster, order=(2, 0, 1)) as second:
        a = first.submit("sys.noop", idempotency_key=key)
        b = second.submit("sys.noop", idempotency_key=key)
        assert a == b and _owner(a) == owner
        assert second.wait(a, timeout=T).state == "succeeded"
        ran = [t for t in first.list(limit=1000) if t.id == a]
        assert len(ran) == 1


def test_least_loaded_sees_another_clients_load(cluster):
    # 50 tasks queued on node-0 by a client of that daemon alone: a new cluster client
    # asks the daemons for their load before its first pick and sends node-0 nothing.
    single = taskrt.Client(cluster["addresses"][0], token_file=cluster["token_file"])
    busy = [single.submit("sys.sleep", {"ms": 20000}) for _ in range(50)]
    try:
        with _client(cluster) as client:
            ids = [client.submit("sys.noop") for _ in range(30)]
            per_daemon = collections.Counter(_owner(i) for i in ids)
            assert per_daemon["node-0"] == 0, per_daemon
            client.wait_many(ids, timeout=T)
    finally:
        single.cancel(busy)
        single.close()


def test_rendezvous_hash_is_fnv1a_64():
    assert _cluster.fnv1a64(b"") == 0xCBF29CE484222325
    assert _cluster.fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert _cluster.owner_of("node-2-17") == "node-2"
    # The owners client/cluster.cc pins (tests/integration/cluster_test.cc).
    assert "".join(str(NAMES.index(_cluster.key_owner(NAMES, "order-%d" % i)))
                   for i in range(8)) == "00220211"


def test_submit_many_splits_keys_by_owner(cluster):
    keys: list[str] = []
    per_owner: collections.Counter = collections.Counter()
    for _ in range(5000):  # 4 keys of each daemon
        key = "batch-" + secrets.token_hex(8)
        owner = _cluster.key_owner(NAMES, key)
        if per_owner[owner] < 4:
            per_owner[owner] += 1
            keys.append(key)
    assert per_owner == {name: 4 for name in NAMES}
    owners = [_cluster.key_owner(NAMES, k) for k in keys]
    with _client(cluster) as client:
        ids = client.submit_many([taskrt.TaskSpec("sys.noop", idempotency_key=k) for k in keys])
        assert [_owner(i) for i in ids] == owners
        again = client.submit_many([taskrt.TaskSpec("sys.noop", idempotency_key=k)
                                    for k in reversed(keys)])
        assert again == ids[::-1]
        # An unkeyed batch goes to one daemon, whole.
        unkeyed = client.submit_many([taskrt.TaskSpec("sys.noop")] * 10)
        assert len({_owner(i) for i in unkeyed}) == 1


def test_run_and_run_many_across_the_cluster(cluster):
    with _client(cluster) as client:
        assert client.run("sys.noop", timeout=T, check=True).state == "succeeded"
        specs = [taskrt.TaskSpec("sys.sleep", {"ms": 10 + n % 3}, labels={"n": str(n)})
                 for n in range(60)]
        tasks = list(client.run_many(specs, batch=7, timeout=T, check=True))
        assert len(tasks) == 60
        assert sorted(int(t.labels["n"]) for t in tasks) == list(range(60))
        assert {_owner(t.id) for t in tasks} == set(NAMES)
        assert len({t.id for t in tasks}) == 60


def test_dns_target(cluster):
    port = cluster["addresses"][0].rpartition(":")[2]
    with taskrt.Client("dns:///localhost:%s" % port, token_file=cluster["token_file"],
                       connect_timeout=2) as client:
        assert _owner(client.submit("sys.noop")) == "node-0"
        assert "node-0" in [name for name, _ in client.cluster_stats()]


def _aio_client(cluster, order=(0, 1, 2), **options) -> taskrt.aio.Client:
    target = "ipv4:" + ",".join(cluster["addresses"][i] for i in order)
    return taskrt.aio.Client(target, token_file=cluster["token_file"], **options)


def test_aio_spreads_and_routes_as_the_sync_client(cluster):
    import asyncio

    async def main() -> None:
        async with _aio_client(cluster, spread="round-robin") as client:
            ids = await asyncio.gather(*(client.submit("sys.noop") for _ in range(30)))
            assert collections.Counter(_owner(i) for i in ids) == {n: 10 for n in NAMES}
            shuffled = list(ids[::-1])
            assert [t.id for t in await client.wait_many(shuffled, timeout=T)] == shuffled
            assert [t.id for t in await client.get_many(shuffled)] == shuffled
            sleepers = [await client.submit("sys.sleep", {"ms": 20000}) for _ in range(3)]
            assert {_owner(i) for i in sleepers} == set(NAMES)
            assert [t.id for t in await client.cancel(sleepers)] == sleepers
            assert all(t.state == "cancelled"
                       for t in await client.wait_many(sleepers, timeout=T))
            with pytest.raises(taskrt.NotFound, match="'node-9'.*node-0"):
                await client.get("node-9-1")
            newest = await client.list(limit=5)
            stamps = [t.decision.submitted for t in newest]
            assert len(newest) == 5 and stamps == sorted(stamps, reverse=True)
            assert sleepers[-1] in [t.id for t in newest]
            assert sorted(name for name, _ in await client.cluster_stats()) == NAMES
            assert (await client.stats()).daemon in NAMES

    asyncio.run(main())


def test_aio_keys_runs_and_watches_across_the_cluster(cluster):
    import asyncio
    key = "aio-key-%d" % time.monotonic_ns()

    async def main() -> None:
        with _client(cluster) as sync:
            expected = sync.submit("sys.noop", idempotency_key=key)
        async with _aio_client(cluster, order=(1, 2, 0), spread="round-robin") as client:
            # The sync client's owner: a retry through either SDK finds the same task.
            assert await client.submit("sys.noop", idempotency_key=key) == expected
            keyed = await client.run("sys.noop", idempotency_key=key + "-run", timeout=T)
            assert _owner(keyed.id) == _cluster.key_owner(NAMES, key + "-run")
            ran = await asyncio.gather(*(client.run("sys.noop", timeout=T, check=True)
                                         for _ in range(12)))
            assert {_owner(t.id) for t in ran} == set(NAMES)
            specs = [taskrt.TaskSpec("sys.sleep", {"ms": 5 + n % 3}, labels={"n": str(n)})
                     for n in range(45)]
            tasks = [t async for t in client.run_many(specs, batch=4, timeout=T, check=True)]
            assert sorted(int(t.labels["n"]) for t in tasks) == list(range(45))
            assert {_owner(t.id) for t in tasks} == set(NAMES)
            ids = [await client.submit("sys.sleep", {"ms": 20000}) for _ in range(6)]
            assert {_owner(i) for i in ids} == set(NAMES)
            done = set()
            async with client.watch(ids) as events:
                await client.cancel(ids)

                async def drain() -> None:
                    async for event in events:
                        if event.done:
                            done.add(event.task_id)
                            if done == set(ids):
                                return

                await asyncio.wait_for(drain(), T)
            assert done == set(ids)

    asyncio.run(main())


def test_aio_cluster_errors(cluster):
    import asyncio

    async def main() -> None:
        with pytest.raises(ValueError, match="spread"):
            _aio_client(cluster, spread="random")
        dead = "127.0.0.1:%d" % _free_port()
        with pytest.raises(taskrt.Unavailable, match="no taskrtd of the cluster target"):
            await taskrt.aio.Client("ipv4:%s,%s" % (dead, dead.replace(".1:", ".2:")),
                                    token_file=cluster["token_file"],
                                    connect_timeout=0.5).connect()
        # One daemon down: the others serve, a key's owner and a list cannot be known.
        target = "ipv4:%s,%s" % (cluster["addresses"][0], dead)
        async with taskrt.aio.Client(target, token_file=cluster["token_file"],
                                     connect_timeout=0.5) as client:
            assert _owner(await client.submit("sys.noop")) == "node-0"
            with pytest.raises(taskrt.Unavailable, match=dead):
                await client.submit("sys.noop", idempotency_key="k")
            with pytest.raises(taskrt.Unavailable, match=dead):
                await client.list()

    asyncio.run(main())
    # The sync client says the same.
    target = "ipv4:%s,127.0.0.1:%d" % (cluster["addresses"][0], _free_port())
    with taskrt.Client(target, token_file=cluster["token_file"], connect_timeout=0.5) as c:
        with pytest.raises(taskrt.Unavailable, match="has answered once"):
            c.list()


def _cli(cluster, *args):
    import subprocess
    target = "ipv4:" + ",".join(cluster["addresses"])
    return subprocess.run([os.path.join(BIN_DIR, "taskrt"), "--target", target, "--token-file",
                           cluster["token_file"], *args], capture_output=True, text=True,
                          timeout=60)


def test_the_cli_against_the_cluster(cluster):
    import json
    r = _cli(cluster, "stats")
    assert r.returncode == 0, r
    for name, address in zip(NAMES, cluster["addresses"]):
        assert "== %s (ipv4:%s)" % (name, address) in r.stdout, r.stdout
    r = _cli(cluster, "stats", "-o", "json")
    assert r.returncode == 0, r
    assert sorted(s["daemon"] for s in json.loads(r.stdout)) == NAMES
    ids = []
    # One client per command, each starting the spread at random: 30 cover all three but
    # once in ~60,000 runs.
    for _ in range(30):
        r = _cli(cluster, "submit", "sys.noop", "--wait", "-o", "json")
        assert r.returncode == 0, r
        ids.append(json.loads(r.stdout)["id"])
    assert {_owner(i) for i in ids} == set(NAMES), ids
    r = _cli(cluster, "status", ids[0])
    assert r.returncode == 0 and "succeeded" in r.stdout, r
    r = _cli(cluster, "list", "-o", "json", "--limit", "1000")
    assert r.returncode == 0, r
    listed = {t["id"] for t in json.loads(r.stdout)}
    assert set(ids) <= listed
    r = _cli(cluster, "status", "node-7-1")
    assert r.returncode != 0 and "node-7" in r.stderr, r


def test_a_draining_daemon_gets_no_new_tasks(cluster):
    draining = cluster["daemons"][2]
    with taskrt.Client(cluster["addresses"][2], token_file=cluster["token_file"]) as one:
        long_task = one.submit("sys.sleep", {"ms": 3000})
        deadline = time.monotonic() + T
        while one.get(long_task).state != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        draining.proc.send_signal(15)  # SIGTERM: drain while the long task runs
        deadline = time.monotonic() + T
        while time.monotonic() < deadline:
            try:
                one.submit("sys.noop")
            except taskrt.Unavailable:
                break
            time.sleep(0.02)
        else:
            pytest.fail("node-2 kept accepting tasks after SIGTERM")
    with _client(cluster, spread="round-robin") as client:
        ids = [client.submit("sys.noop") for _ in range(12)]
        assert {_owner(i) for i in ids} == {"node-0", "node-1"}
        # Round-robin reached node-2, which refused as draining: the client paused it.
        node2 = client._cluster.members.named()["node-2"]
        assert node2.draining_until > time.monotonic()
        task = client.run("sys.noop", timeout=T, check=True)
        assert _owner(task.id) in ("node-0", "node-1")
