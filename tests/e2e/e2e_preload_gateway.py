"""A scheduler ``--preload`` like dask-gateway's: a click-configurable ``dask_setup`` (so it
takes the preload argv, ``dask scheduler --preload PATH -- --http-port N --token T``) starts a
small HTTP server beside the scheduler and a periodic heartbeat; ``dask_teardown`` stops both.

``GET /status`` answers JSON: the token, the scheduler's worker count and addresses (from
``scheduler.workers`` at the time of the request) and how many heartbeats ran.
"""

import asyncio
import json

import click
from tornado.ioloop import PeriodicCallback

_state: dict = {}


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass  # headers
        parts = request.decode("latin-1").split()
        scheduler = _state["scheduler"]
        if len(parts) >= 2 and parts[1] == "/status":
            status = "200 OK"
            body = json.dumps(
                {
                    "token": _state["token"],
                    "workers": len(scheduler.workers),
                    "addresses": sorted(scheduler.workers),
                    "ticks": _state["ticks"],
                }
            ).encode()
        else:
            status, body = "404 Not Found", b"{}"
        writer.write(
            f"HTTP/1.0 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
        )
        await writer.drain()
    finally:
        writer.close()


def _tick() -> None:
    _state["ticks"] += 1


@click.command()
@click.option("--http-port", type=int, required=True)
@click.option("--token", type=str, default="")
async def dask_setup(scheduler, http_port, token):
    _state.update(scheduler=scheduler, token=token, ticks=0)
    _state["server"] = await asyncio.start_server(_serve, "127.0.0.1", http_port)
    _state["heartbeat"] = PeriodicCallback(_tick, 50)  # ms
    _state["heartbeat"].start()


async def dask_teardown(scheduler):
    if "heartbeat" in _state:
        _state["heartbeat"].stop()
    if "server" in _state:
        _state["server"].close()
