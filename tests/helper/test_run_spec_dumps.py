"""The helper's ``run_spec_dumps`` (python/rask_graph_helper.py) against
``distributed.protocol.pickle.dumps``, in one process: the same bytes for every node of
the graphs users send, including the ones that take the slow paths (a function of
``__main__``, one only cloudpickle pickles, pickle-5 buffers, a module registered to be
pickled by value).

Run: .venv/bin/python -m pytest tests/helper -q
"""

from __future__ import annotations

import operator

import cloudpickle
import numpy as np
import pandas as pd
from test_graph_helper import collection_expr
from test_linear_cull import HELPER

import dask.array as da
import dask.dataframe as dd
from dask import delayed
from dask._task_spec import DataNode, Task, TaskRef

from distributed.protocol.pickle import dumps
from distributed.scheduler import _materialize_graph


def helper_dumps(nodes):
    h = HELPER["GraphHelper"]()
    for node in nodes:
        h._kind(type(node))
    return h.run_spec_dumps()


def materialized(*collections) -> list:
    expr, _ = collection_expr(*collections)
    dsk, _ = _materialize_graph(expr, validate=False)
    return list(dsk.values())


def in_main(x):
    return x


in_main.__module__ = "__main__"  # what a function of the user's script looks like


def users_graphs() -> list:
    df = dd.from_pandas(pd.DataFrame({"a": range(40), "b": range(40)}), npartitions=4)
    xs = [delayed(operator.add)(i, 1) for i in range(20)]
    return [
        *materialized(delayed(sum)(xs)),
        *materialized(da.ones((20, 20), chunks=5).T.sum(axis=0)),
        *materialized(df.groupby("a").b.sum()),
        Task("main", in_main, 1),
        Task("lambda", lambda x: x + 1, TaskRef("x")),
        DataNode("array", np.arange(100_000)),
    ]


def test_same_bytes_as_distributed():
    nodes = users_graphs()
    fast = helper_dumps(nodes)
    assert fast is not dumps  # the fast path is on
    for node in nodes:
        assert fast(node) == dumps(node), node.key


def test_module_pickled_by_value_takes_the_full_path():
    """With dask._task_spec registered to be pickled by value, every node goes through
    distributed's own function."""
    import dask._task_spec as spec

    cloudpickle.register_pickle_by_value(spec)
    try:
        assert helper_dumps(users_graphs()) is dumps
    finally:
        cloudpickle.unregister_pickle_by_value(spec)
