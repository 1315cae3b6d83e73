"""The helper's ``run_function`` op (``Client.run_on_scheduler`` on rask).

Requests carry the three pickles a stock client puts in the ``run_function`` RPC
(``Client._run_on_scheduler``, client.py:3057-3068: ``dumps(function)``, ``dumps(args)``,
``dumps(kwargs)``); replies must be what the client turns into a result or an exception.

Run: /work/venv/bin/python -m pytest tests/helper -q
"""

from __future__ import annotations

import operator

import pytest
from test_graph_helper import Helper, _poisoned_cwd

from distributed.core import clean_exception
from distributed.protocol.pickle import dumps, loads

pytestmark = pytest.mark.timeout(120)

# Defined as if in a script's __main__, so they are pickled by value like a user's
# interactive functions (the helper cannot import this test module).
USER_CODE = '''
import os

def add(x, y, z=0):
    return x + y + z

def pid():
    return os.getpid()

def fails():
    raise ZeroDivisionError("boom in user code")

def wants_scheduler(dask_scheduler=None):
    return dask_scheduler.address

async def coro(x):
    return x * 2
'''
NS: dict = {"__name__": "__main__"}
exec(USER_CODE, NS)


@pytest.fixture(scope="module")
def helper(tmp_path_factory):
    h = Helper(_poisoned_cwd(tmp_path_factory.mktemp("helper-cwd")))
    yield h
    assert h.close() == 0


def run(helper, function, *args, wait=True, **kwargs):
    return helper.call(
        "run_function",
        function=dumps(function),
        args=dumps(args),
        kwargs=dumps(kwargs),
        wait=wait,
    )


def test_result_is_a_pickle(helper):
    r = run(helper, NS["add"], 1, 2, z=3)
    assert r["status"] == "OK"
    assert loads(r["result"]) == 6
    assert loads(run(helper, operator.mul, 6, 7)["result"]) == 42


def test_runs_in_the_helper_process(helper):
    assert loads(run(helper, NS["pid"])["result"]) == helper.proc.pid


def test_empty_args_and_kwargs(helper):
    # the RPC fields may be missing or None
    r = helper.call("run_function", function=dumps(NS["pid"]), args=None, kwargs=None)
    assert r["status"] == "OK"


def test_coroutine_function(helper):
    assert loads(run(helper, NS["coro"], 21)["result"]) == 42


def test_user_exception_is_reraised_by_the_client(helper):
    r = run(helper, NS["fails"])
    assert r["status"] == "error"
    _, exc, _ = clean_exception(**r)
    assert isinstance(exc, ZeroDivisionError) and "boom in user code" in str(exc)
    assert helper.call("ping")["status"] == "OK"


def test_a_function_taking_dask_scheduler_is_left_to_the_plugin_host(helper):
    """rask runs it again in its plugin host, where a facade of the scheduler is kept."""
    r = run(helper, NS["wants_scheduler"])
    assert r["status"] == "need-scheduler"
    assert helper.call("ping")["status"] == "OK"


def test_plain_function_without_wait_is_refused_like_stock(helper):
    r = run(helper, NS["add"], 1, 2, wait=False)
    assert r["status"] == "error"
    _, exc, _ = clean_exception(**r)
    assert isinstance(exc, AssertionError)
