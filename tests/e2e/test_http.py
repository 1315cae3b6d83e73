"""The scheduler's HTTP routes that tools call: `/json/identity.json` and the API of
`distributed/http/scheduler/api.py` (`/api/v1`, `get_workers`, `adaptive_target`,
`check_idle`, `retire_workers`), which the Kubernetes operator scales through. The stock
scheduler serves the API only when its configuration lists the route; rask always does, so
the tests turn it on for both."""

import json
import urllib.error
import urllib.request

import pytest

from conftest import wait_until

# the stock default (distributed.yaml) plus the API
ROUTES = [
    "distributed.http.scheduler.prometheus",
    "distributed.http.scheduler.info",
    "distributed.http.scheduler.json",
    "distributed.http.health",
    "distributed.http.proxy",
    "distributed.http.statics",
    "distributed.http.scheduler.api",
]


def fetch(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as r:
        return r.read().decode()


def test_identity_and_the_api(cluster_factory, monkeypatch):
    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES", json.dumps(ROUTES))
    cluster = cluster_factory()
    cluster.add_workers(2)
    by_name = cluster.worker_addresses()
    with cluster.client() as c:
        base = f"http://127.0.0.1:{c.scheduler_info()['services']['dashboard']}"

        identity = json.loads(fetch(f"{base}/json/identity.json"))
        assert identity["type"] == "Scheduler"
        assert identity["address"] == cluster.address
        assert set(identity["workers"]) == set(by_name.values())

        assert fetch(f"{base}/api/v1") == "API V1"
        workers = json.loads(fetch(f"{base}/api/v1/get_workers"))
        assert workers["num_workers"] == 2
        assert {(w["name"], w["address"]) for w in workers["workers"]} == set(by_name.items())

        # the same answers as the RPCs a Cluster object calls
        target = json.loads(fetch(f"{base}/api/v1/adaptive_target"))
        assert target == {"workers": c.sync(c.scheduler.adaptive_target)}
        idle = json.loads(fetch(f"{base}/api/v1/check_idle"))
        assert set(idle) == {"idle_since"}
        assert idle["idle_since"] is None or isinstance(idle["idle_since"], float)

        # retiring one worker by address: its info comes back, and it leaves
        name, address = sorted(by_name.items())[0]
        retired = json.loads(fetch(f"{base}/api/v1/retire_workers", {"workers": [address]}))
        assert list(retired) == [address]
        assert retired[address]["name"] == name
        wait_until(lambda: len(c.scheduler_info()["workers"]) == 1, "the retired worker to leave")
        workers = json.loads(fetch(f"{base}/api/v1/get_workers"))
        assert workers["num_workers"] == 1

        # by count: the one left (workers_to_close picks it)
        retired = json.loads(fetch(f"{base}/api/v1/retire_workers", {"n": 1}))
        assert list(retired) == [by_name[sorted(by_name)[1]]]

        # a body that is not JSON: the stock handler's 500
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(
                urllib.request.Request(f"{base}/api/v1/retire_workers", data=b"not json"),
                timeout=30,
            )
        assert e.value.code == 500
        assert json.loads(e.value.read()) == {"Error": "Internal Server Error"}
