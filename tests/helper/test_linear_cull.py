"""The helper's linear-time ``HighLevelGraph.cull`` (``linear_hlg_cull`` in
python/rask_graph_helper.py) against Dask's own, in one process.

Dask's cull is quadratic on wide delayed graphs; the helper replaces it. The replacement
must give what Dask gives: the same layers in the same order, each with the same keys
mapped to the same nodes, the same layer dependencies and annotations; and, through
``_materialize_graph``, byte-identical pickled run_specs, the same annotations and the
same ``dask.order`` priorities. Checked on random high-level graphs built to hit Dask's
corner cases (a layer as large as the wanted set, keys wanted by their own layer, keys
outside the graph, layers nobody wants), and on random delayed graphs as a client sends
them. test_graph_helper.py checks wide delayed graphs through the helper process against
the stock scheduler.

Run: .venv/bin/python -m pytest tests/helper -q
"""

from __future__ import annotations

import operator
import random
from pathlib import Path

import pytest
from test_graph_helper import collection_expr

import dask
from dask import delayed
from dask._task_spec import Task, TaskRef
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from dask.order import order

from distributed.protocol.pickle import dumps, loads
from distributed.scheduler import _materialize_graph

pytestmark = pytest.mark.timeout(120)

SOURCE = (Path(__file__).resolve().parents[2] / "python" / "rask_graph_helper.py").read_text()
HELPER: dict = {"__name__": "rask_graph_helper"}
exec(compile(SOURCE, "rask_graph_helper.py", "exec"), HELPER)

DASK_CULL = HighLevelGraph.cull
LINEAR_CULL = HELPER["linear_hlg_cull"](DASK_CULL)


def _f(*args):
    return args


def random_hlg(rng: random.Random) -> tuple[HighLevelGraph, set]:
    """Layers of 1-4 Tasks; a task depends on keys of earlier layers, on earlier keys of
    its own layer, or on keys outside the graph (existing futures)."""
    layers: dict = {}
    deps: dict = {}
    keys_so_far: list = []
    n_layers = rng.randint(1, 30)
    for i in range(n_layers):
        name = f"layer-{i}"
        tasks = {}
        for j in range(rng.choice([1, 1, 1, 2, 3, 4])):
            key = f"{name}-{j}"
            refs = []
            pool = keys_so_far + list(tasks)
            for _ in range(rng.randint(0, 3)):
                if pool and rng.random() < 0.9:
                    refs.append(rng.choice(pool))
                else:
                    refs.append(f"external-{rng.randint(0, 3)}")
            tasks[key] = Task(key, _f, *(TaskRef(r) for r in dict.fromkeys(refs)))
        layer_deps = {
            k.rsplit("-", 1)[0]
            for t in tasks.values()
            for k in t.dependencies
            if not k.startswith("external") and not k.startswith(name + "-")
        }
        annotations = {"priority": rng.randint(0, 3)} if rng.random() < 0.3 else None
        layers[name] = MaterializedLayer(tasks, annotations=annotations)
        deps[name] = layer_deps
        keys_so_far.extend(tasks)
    wanted = set(rng.sample(keys_so_far, rng.randint(0, min(5, len(keys_so_far)))))
    if rng.random() < 0.2:
        wanted.add("not-in-the-graph")
    return HighLevelGraph(layers, deps), wanted


def assert_same_hlg(mine: HighLevelGraph, theirs: HighLevelGraph) -> None:
    assert list(mine.layers) == list(theirs.layers)
    assert mine.dependencies == theirs.dependencies
    for name, layer in theirs.layers.items():
        other = mine.layers[name]
        assert dict(other) == dict(layer), name  # same keys, equal nodes
        assert all(other[k] is layer[k] for k in layer)
        assert other.annotations == layer.annotations


@pytest.mark.parametrize("seed", range(400))
def test_random_graphs_cull_like_dask(seed):
    rng = random.Random(seed)
    hlg, wanted = random_hlg(rng)
    assert_same_hlg(LINEAR_CULL(hlg, set(wanted)), DASK_CULL(hlg, set(wanted)))


def test_a_layer_as_large_as_the_wanted_set_is_kept_whole():
    # Dask's _task_spec.cull returns the layer uncut when it has as many keys as are
    # wanted: "b" wants "a1" and an outside key, so layer "a" (2 keys) keeps "a2".
    a = {"a1": Task("a1", _f, 1), "a2": Task("a2", _f, 2)}
    b = {"b": Task("b", _f, TaskRef("a1"), TaskRef("outside"))}
    hlg = HighLevelGraph(
        {"a": MaterializedLayer(a), "b": MaterializedLayer(b)}, {"a": set(), "b": {"a"}}
    )
    theirs = DASK_CULL(hlg, {"b"})
    assert "a2" in {k for layer in theirs.layers.values() for k in layer}
    assert_same_hlg(LINEAR_CULL(hlg, {"b"}), theirs)


def test_legacy_layers_take_dask_cull():
    # Tuples are legacy tasks: Dask's cull goes through get_all_external_keys for them.
    hlg = HighLevelGraph(
        {"x": MaterializedLayer({"x": (operator.add, 1, 2)}),
         "y": MaterializedLayer({"y": (operator.add, "x", 1), "z": (operator.add, 1, 1)})},
        {"x": set(), "y": {"x"}},
    )
    assert_same_hlg(LINEAR_CULL(hlg, {"y"}), DASK_CULL(hlg, {"y"}))


def random_delayed(rng: random.Random) -> list:
    """Delayed calls over earlier results: fan-in merges, chains, unused results, literal
    arguments, nested containers, names, annotations."""
    done: list = []
    for i in range(rng.randint(5, 200)):
        k = rng.randint(0, min(len(done), 40))
        args = rng.sample(done, k)
        kind = rng.random()
        if kind < 0.2:
            value = delayed(sum)(args + [i])
        elif kind < 0.3:
            value = delayed(_f)({"parts": args, "i": i}, [i, args[:2]])
        elif kind < 0.4:
            with dask.annotate(retries=rng.randint(0, 2), priority=rng.randint(-1, 1)):
                value = delayed(_f, pure=True)(*args, i)
        elif kind < 0.5:
            value = delayed(_f, name=f"named-{rng.getrandbits(32)}")(*args)
        else:
            value = delayed(_f)(*args, i)
        done.append(value)
    return rng.sample(done, rng.randint(1, 4))


def materialized(expr) -> tuple[dict, dict, dict]:
    dsk, annotations = _materialize_graph(expr=expr, validate=True)
    priorities = order(dsk)
    return {k: dumps(v) for k, v in dsk.items()}, dict(annotations), priorities


def materialized_both_ways(expr, monkeypatch) -> tuple[tuple, tuple]:
    """``materialized`` with the linear cull and with Dask's, each on its own copy of the
    expression (it caches its optimized graph)."""
    wire = dumps(expr)
    theirs = materialized(loads(wire))
    monkeypatch.setattr(HighLevelGraph, "cull", LINEAR_CULL)
    return materialized(loads(wire)), theirs


@pytest.mark.parametrize("seed", range(60))
def test_random_delayed_graphs_materialize_like_dask(seed, monkeypatch):
    expr, _ = collection_expr(*random_delayed(random.Random(seed)))
    mine, theirs = materialized_both_ways(expr, monkeypatch)
    assert mine == theirs  # keys, byte-identical run_spec pickles, annotations, priorities


def test_a_wide_merge_materializes_like_dask(monkeypatch):
    parts = [delayed(operator.add)(i, 1) for i in range(3_000)]
    expr, _ = collection_expr(delayed(sum)(parts), delayed(_f)(*parts[:10]))
    mine, theirs = materialized_both_ways(expr, monkeypatch)
    assert len(mine[0]) == 3_002
    assert mine == theirs
