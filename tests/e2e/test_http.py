"""The scheduler's HTTP routes that tools call: `/json/identity.json` and the API of
`distributed/http/scheduler/api.py` (`/api/v1`, `get_workers`, `adaptive_target`,
`check_idle`, `retire_workers`), which the Kubernetes operator scales through. The stock
scheduler serves the API only when its configuration lists the route; rask always does, so
the tests turn it on for both."""

import json
import urllib.error
import urllib.parse
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


def families(text):
    """`{name: family}` as prometheus_client parses the exposition text."""
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}


def value(family, **labels):
    (sample,) = [
        s
        for s in family.samples
        if all(s.labels.get(k) == v for k, v in labels.items()) and not s.name.endswith("_created")
    ]
    return sample.value


def test_metrics_have_the_stock_families_with_true_values(cluster_factory, scheduler_kind):
    cluster = cluster_factory()
    cluster.add_workers(1)
    with cluster.client() as c:
        from distributed import Semaphore

        futures = c.map(lambda x: x + 1, range(10), key=[f"inc-{i}" for i in range(10)])
        assert c.gather(futures) == list(range(1, 11))
        sem = Semaphore(max_leases=2, name="sem")
        assert sem.acquire(timeout=30)
        sem.release()
        base = f"http://127.0.0.1:{c.scheduler_info()['services']['dashboard']}"
        fams = families(fetch(f"{base}/metrics"))

        # every family the stock scheduler serves, with the same type and labels; the
        # Python process' own (python_gc_*, python_info) have no counterpart in rask
        stock = {
            "dask_scheduler_clients": ("gauge", set()),
            "dask_scheduler_client_connections_added": ("counter", set()),
            "dask_scheduler_client_connections_removed": ("counter", set()),
            "dask_scheduler_desired_workers": ("gauge", set()),
            "dask_scheduler_workers": ("gauge", {"state"}),
            "dask_scheduler_workers_added": ("counter", set()),
            "dask_scheduler_workers_removed": ("counter", set()),
            "dask_scheduler_gc_collection_seconds": ("counter", set()),
            "dask_scheduler_last_time": ("counter", set()),
            "dask_scheduler_tasks_suspicious": ("counter", {"task_prefix_name"}),
            "dask_scheduler_tasks_forgotten": ("counter", set()),
            "dask_scheduler_tasks": ("gauge", {"state"}),
            "dask_scheduler_task_groups": ("gauge", set()),
            "dask_scheduler_tasks_compute_seconds": ("counter", {"task_prefix_name"}),
            "dask_scheduler_tasks_transfer_seconds": ("counter", {"task_prefix_name"}),
            "dask_scheduler_tasks_output_bytes": ("gauge", {"task_prefix_name"}),
            "dask_scheduler_prefix_state_totals": ("counter", {"task_prefix_name", "state"}),
            "dask_scheduler_tick_duration_maximum_seconds": ("gauge", set()),
            "dask_scheduler_tick_count": ("counter", set()),
            "dask_semaphore_max_leases": ("gauge", {"name"}),
            "dask_semaphore_active_leases": ("gauge", {"name"}),
            "dask_semaphore_pending_leases": ("gauge", {"name"}),
            "dask_semaphore_acquire": ("counter", {"name"}),
            "dask_semaphore_release": ("counter", {"name"}),
            "dask_semaphore_average_pending_lease_time_s": ("gauge", {"name"}),
            "dask_stealing_request_count": ("counter", {"cost_multiplier"}),
            "dask_stealing_request_cost": ("counter", {"cost_multiplier"}),
            "process_cpu_seconds": ("counter", set()),
            "process_resident_memory_bytes": ("gauge", set()),
            "process_start_time_seconds": ("gauge", set()),
            "process_open_fds": ("gauge", set()),
        }
        for name, (kind, labels) in stock.items():
            assert name in fams, name
            assert fams[name].type == kind, name
            for s in fams[name].samples:
                assert set(s.labels) == labels, (name, s.labels)

        # values a user can check against what they ran
        assert value(fams["dask_scheduler_clients"]) >= 1
        assert value(fams["dask_scheduler_client_connections_added"]) >= 1
        assert value(fams["dask_scheduler_workers_added"]) == 1
        assert value(fams["dask_scheduler_workers"], state="idle") == 1
        assert value(fams["dask_scheduler_tasks"], state="memory") == 10
        assert value(fams["dask_scheduler_tasks"], state="processing") == 0
        totals = fams["dask_scheduler_prefix_state_totals"]
        assert value(totals, task_prefix_name="inc", state="memory") == 10
        assert value(totals, task_prefix_name="inc", state="processing") == 10
        assert value(fams["dask_scheduler_tasks_compute_seconds"], task_prefix_name="inc") > 0
        assert value(fams["dask_scheduler_tasks_output_bytes"], task_prefix_name="inc") > 0
        assert value(fams["dask_scheduler_tasks_suspicious"], task_prefix_name="inc") == 0
        assert value(fams["dask_semaphore_max_leases"], name="sem") == 2
        assert value(fams["dask_semaphore_acquire"], name="sem") == 1
        assert value(fams["dask_semaphore_release"], name="sem") == 1
        assert value(fams["dask_semaphore_active_leases"], name="sem") == 0
        assert value(fams["dask_scheduler_tick_count"]) > 0
        assert value(fams["process_resident_memory_bytes"]) > 0

        if scheduler_kind == "rask":
            # rask's own: the state task's turns and the graph helpers
            turns = fams["rask_state_task_turn_seconds"]
            assert turns.type == "histogram"
            assert value(turns, le="+Inf") > 0
            assert value(fams["rask_messages"]) > 0
            assert value(fams["rask_graphs"]) >= 1
            assert value(fams["rask_graph_helpers"]) >= 1
            stages = fams["rask_graph_helper_seconds"]
            assert value(stages, stage="round_trip") > 0

        # forgetting the futures: the tasks go, their group with them
        del futures
        wait_until(
            lambda: value(families(fetch(f"{base}/metrics"))["dask_scheduler_tasks"], state="memory")
            == 0,
            "the released tasks to leave /metrics",
        )


def test_counts_sitemap_and_info_pages(cluster_factory):
    cluster = cluster_factory()
    cluster.add_workers(2)
    with cluster.client() as c:
        futures = c.map(lambda x: x * 2, range(6), key=[f"double-{i}" for i in range(6)])
        c.gather(futures)
        base = f"http://127.0.0.1:{c.scheduler_info()['services']['dashboard']}"
        counts = json.loads(fetch(f"{base}/json/counts.json"))
        assert counts["workers"] == 2
        assert counts["cores"] == sum(w["nthreads"] for w in c.scheduler_info()["workers"].values())
        assert counts["memory"] == 6
        assert counts["tasks"] == 6
        assert counts["processing"] == 0
        assert counts["clients"] >= 1
        assert counts["bytes"] > 0
        assert "counts.json" in fetch(f"{base}/json/index.html")

        # the info pages name each worker and task, with links between them
        page = fetch(f"{base}/info/main/workers.html")
        workers = list(c.scheduler_info()["workers"])
        for w in workers:
            assert w in page
        quote = urllib.parse.quote
        assert f"Worker: {workers[0]}" in fetch(f"{base}/info/worker/{quote(workers[0], safe='')}.html")
        task = fetch(f"{base}/info/task/{quote('double-3', safe='')}.html")
        assert "double-3" in task and "memory" in task
        with pytest.raises(urllib.error.HTTPError) as e:
            fetch(f"{base}/info/worker/{quote('tcp://127.0.0.1:1', safe='')}.html")
        assert e.value.code == 404


def test_rask_routes_and_prefix(cluster_factory, scheduler_kind):
    """What rask serves where stock needs Bokeh (the panels) or has a bug (`/sitemap.json`
    is a 500 in 2026.8.0): the single panels JupyterLab embeds, the sitemap, and all of it
    under `--dashboard-prefix`."""
    if scheduler_kind != "rask":
        pytest.skip("the stock scheduler's panels need Bokeh and its sitemap fails")
    args = ["--dashboard", "--dashboard-address", "127.0.0.1:0", "--dashboard-prefix", "/proxy/8787/"]
    cluster = cluster_factory(scheduler_args=args)
    with cluster.client() as c:
        base = f"http://127.0.0.1:{c.scheduler_info()['services']['dashboard']}"
        plots = json.loads(fetch(f"{base}/proxy/8787/individual-plots.json"))
        assert plots["Individual Task Stream"] == "/proxy/8787/individual-task-stream"
        assert plots["Individual Progress"] == "/proxy/8787/individual-progress"
        for path in plots.values():
            assert "rask dashboard" in fetch(f"{base}{path}")
        paths = json.loads(fetch(f"{base}/proxy/8787/sitemap.json"))["paths"]
        assert "/proxy/8787/metrics" in paths and "/proxy/8787/status" in paths
        assert fetch(f"{base}/proxy/8787/health") == "ok"
        # the root leads to the dashboard under the prefix
        assert "rask dashboard" in fetch(f"{base}/")
        assert "dask_scheduler_clients" in fetch(f"{base}/proxy/8787/metrics")
