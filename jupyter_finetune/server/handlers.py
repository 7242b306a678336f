"""The routes under ``<base_url>/jupyter-finetune/api/``: every handler authenticated, every answer JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import IOLoop

from ..runs import Run, RunStore
from ..runs.readers import CachedReader
from .resources import probe
from .views import finite, open_run, run_detail, run_metrics, runs_list

NAME = r"([^/]+)"


def encode(build: Callable[..., Any], *args: Any) -> str:
    return json.dumps(finite(build(*args)))


class JsonHandler(APIHandler):
    async def reply(self, build: Callable[..., Any], *args: Any) -> None:
        """Builds and encodes the answer in a thread: a long metrics record or a slow nvidia-smi must not
        stall the server's other requests."""
        self.set_header("Content-Type", "application/json")
        self.finish(await IOLoop.current().run_in_executor(None, encode, build, *args))


class StoreHandler(JsonHandler):
    """A handler that reads the run store (its root resolved once, when the extension loads) through the
    one CachedReader that every handler shares."""

    def initialize(self, store: RunStore) -> None:
        self.store = store

    def find_run(self, name: str) -> Run:
        """400 for a malformed name (separators, ``..``, absolute), 404 for one that is not a run in the store."""
        try:
            return open_run(self.store, name)
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from e
        except FileNotFoundError as e:
            raise web.HTTPError(404, str(e)) from e


class RunsHandler(StoreHandler):
    @web.authenticated
    async def get(self) -> None:
        await self.reply(runs_list, self.store)


class RunHandler(StoreHandler):
    @web.authenticated
    async def get(self, name: str) -> None:
        await self.reply(run_detail, self.find_run(name))


class MetricsHandler(StoreHandler):
    @web.authenticated
    async def get(self, name: str) -> None:
        """``?after=<step>``: only newer records, so a poller fetches each record once; ``&attempt=<n>``: the
        attempt of the records it holds, so it also hears of a newer attempt that replaced some of them."""
        run = self.find_run(name)
        await self.reply(run_metrics, run, self.whole("after", "the last step already seen", "-1"),
                         self.whole("attempt", "the attempt of the records already seen", None))

    def whole(self, key: str, meaning: str, default: str | None) -> int | None:
        value = self.get_query_argument(key, default)
        try:
            return None if value is None else int(value)
        except ValueError as e:
            raise web.HTTPError(400, f"{key}={value!r}: give {meaning}, a whole number") from e


class ResourcesHandler(JsonHandler):
    @web.authenticated
    async def get(self) -> None:
        await self.reply(probe)


def setup_handlers(web_app: web.Application, root: Path) -> None:
    api = url_path_join(web_app.settings["base_url"], "jupyter-finetune", "api")
    store = {"store": RunStore(root, CachedReader())}
    web_app.add_handlers(".*$", [
        (url_path_join(api, "runs"), RunsHandler, store),
        (url_path_join(api, "runs", NAME), RunHandler, store),
        (url_path_join(api, "runs", NAME, "metrics"), MetricsHandler, store),
        (url_path_join(api, "resources"), ResourcesHandler),
    ])
