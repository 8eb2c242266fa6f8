"""A gateway's contract, served and kept: `/openapi.json` from the bees' hints, 422 with
each error located, a document that follows a changed bee, the offline `/docs` page in
a real browser, and a property-based tester nobody here wrote (schemathesis) throwing
generated requests at live gateways: no 5xx, every answer as documented."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pytest
from conftest import missing, wait_until
from pydantic import BaseModel

from bytewax_nb import Tensor
from bytewax_nb.gateway import apidocs


class Prompt(BaseModel):
    text: str
    n: int = 1


class Order(TypedDict):
    item: str
    qty: int


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def _post(url: str, body: bytes) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _base(swarm: Any, gateway: str) -> str:
    return swarm.url(gateway).rsplit("/gateways/", 1)[0]


@pytest.fixture
def typed(make_swarm: Any) -> Iterator[Any]:
    swarm = make_swarm("contract")
    swarm.gateway("prompt", timeout=10)

    @swarm.bee(input="prompt")
    def repeat(p: Prompt) -> list[str]:
        return [p.text] * max(0, min(p.n, 5))

    swarm.gateway("orders", timeout=10, cors="*")

    @swarm.bee(input="orders")
    def total(order: Order) -> Iterator[str]:
        yield from [order["item"]] * max(0, min(order["qty"], 3))

    swarm.gateway("free", timeout=10)
    swarm.bee(lambda payload: {"got": payload}, input="free", name="anything")
    swarm.gateway("iris", timeout=10, token="t0ken")

    @swarm.bee(input="iris")
    def model(x: Tensor[np.float32, -1, 4]) -> Tensor[np.float32, -1]:  # type: ignore[valid-type]
        return np.clip(x, -1e6, 1e6).sum(axis=1)  # finite: JSON has no Infinity

    swarm.start()
    yield swarm


def test_the_document_says_what_the_hints_promise_and_422_locates_each_error(typed: Any) -> None:
    status, kind, body = _get(_base(typed, "prompt") + "/openapi.json")
    assert status == 200 and kind.startswith("application/json")
    doc = json.loads(body)
    assert doc["openapi"] == "3.1.0"
    post = doc["paths"]["/gateways/prompt"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema["title"] == "Prompt" and schema["required"] == ["text"]
    answer = post["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"type": "array", "items": {"type": "string"}}
    assert {"400", "422", "500", "503", "504"} <= set(post["responses"]) and "401" not in post["responses"]
    streamed = json.loads(_get(_base(typed, "orders") + "/openapi.json")[2])["paths"]["/gateways/orders"][
        "post"
    ]
    assert set(streamed["responses"]["200"]["content"]) == {
        "application/json",
        "text/event-stream",
        "application/x-ndjson",
    }
    guarded = json.loads(_get(_base(typed, "iris") + "/openapi.json")[2])
    assert "401" in guarded["paths"]["/gateways/iris"]["post"]["responses"]
    assert guarded["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    # a payload that is not what the hint declares: 422, every reason located, no bee called
    handled = typed.status()["bees"]["repeat"]["handled"]
    status, err = _post(typed.url("prompt"), b'{"text": 3, "n": "many"}')
    assert status == 422 and err["request_id"] is None
    assert sorted((e["pointer"], e["message"]) for e in err["errors"]) == [
        ("/n", "'many' is not of type 'integer'"),
        ("/text", "3 is not of type 'string'"),
    ]
    status, err = _post(typed.url("orders"), b'{"item": "tea"}')
    assert status == 422 and err["errors"] == [{"pointer": "", "message": "'qty' is a required property"}]
    assert typed.status()["bees"]["repeat"]["handled"] == handled
    assert typed.request("prompt", {"text": "hi", "n": 2}) == ["hi", "hi"]  # made a Prompt in the bee
    assert list(typed.stream("orders", {"item": "tea", "qty": 2})) == ["tea", "tea"]


def test_the_document_follows_a_bee_changed_while_the_swarm_runs(typed: Any) -> None:
    url = _base(typed, "free") + "/openapi.json"

    def request_schema() -> Any:
        doc = json.loads(_get(url)[2])
        return doc["paths"]["/gateways/free"]["post"]["requestBody"]["content"]["application/json"]["schema"]

    assert request_schema() == {}

    def anything(payload: list[int]) -> int:
        return sum(payload)

    typed.bee(anything, input="free", name="anything")
    wait_until(
        lambda: request_schema() == {"type": "array", "items": {"type": "integer"}}, what="the new schema"
    )
    assert _post(typed.url("free"), b'["x"]')[0] == 422
    assert typed.request("free", [1, 2]) == 3


def test_a_gateway_with_cors_answers_browsers_of_other_origins(typed: Any) -> None:
    url = typed.url("orders")
    preflight = urllib.request.Request(url, method="OPTIONS", headers={"Origin": "http://lab.example"})
    with urllib.request.urlopen(preflight, timeout=10) as r:
        assert r.status == 204 and "POST" in r.headers["Access-Control-Allow-Methods"]
        assert r.headers["Access-Control-Allow-Origin"] == "*"
    for accept in ("application/json", "text/event-stream"):
        body = json.dumps({"item": "x", "qty": 1}).encode()
        req = urllib.request.Request(
            url, data=body, headers={"Accept": accept, "Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["Access-Control-Allow-Origin"] == "*", accept
    with urllib.request.urlopen(url + "?payload=" + urllib.parse.quote('{"item": "y", "qty": 2}')) as r:
        assert json.loads(r.read()) == ["y", "y"]  # GET, the payload in the query
    assert _get(url)[0] == 405  # a GET without one: POST it
    no_cors = urllib.request.Request(typed.url("prompt"), data=b'{"text": "a"}')
    with urllib.request.urlopen(no_cors, timeout=10) as r:
        assert "Access-Control-Allow-Origin" not in r.headers


def test_the_docs_page_ships_its_assets_and_needs_no_network(typed: Any) -> None:
    base = _base(typed, "prompt")
    status, kind, page = _get(base + "/docs")
    assert status == 200 and kind.startswith("text/html")
    assert b"docs/swagger-ui-bundle.js" in page and b"openapi.json" in page
    for name, kind_wanted in (("swagger-ui-bundle.js", "text/javascript"), ("swagger-ui.css", "text/css")):
        status, kind, body = _get(f"{base}/docs/{name}")
        assert status == 200 and kind.startswith(kind_wanted)
        assert body == (apidocs.ASSETS / name).read_bytes()  # from the installed package
    assert _get(base + "/docs/../openapi.json")[0] == 404  # nothing else under the folder
    assert _get(base + "/docs/package.json")[0] == 404


@pytest.mark.browser
@pytest.mark.slow
def test_the_docs_page_renders_every_route_in_a_browser_offline(typed: Any) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed", "pip install playwright (bash .ci/run does)", "--no-browser")
    if not os.path.exists("/usr/bin/chromium"):
        missing("no Chromium at /usr/bin/chromium", "apt-get install chromium", "--no-browser")
    base = _base(typed, "prompt")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page()
            outside: list[str] = []
            # anything not from this machine's gateways would need a network: refused, noted

            def local_only(route: Any) -> None:
                if route.request.url.startswith("http://127.0.0.1:"):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", local_only)
            page.goto(base + "/docs")
            page.locator(".opblock-post .opblock-summary-path[data-path='/gateways/prompt']").wait_for(
                timeout=30_000
            )
            page.locator(".opblock-summary-path[data-path='/v2/models/prompt/infer']").wait_for(
                timeout=30_000
            )
            assert page.locator(".info .title").inner_text().startswith("bytewax-nb gateway prompt")
            # a streamed answer read by the browser's own EventSource (GET, ?payload=)
            orders = _base(typed, "orders")
            page.goto(orders + "/docs")
            tokens = page.evaluate(
                """(url) => new Promise((resolve, reject) => {
                    const got = [];
                    const source = new EventSource(url);
                    source.onmessage = (e) => got.push(JSON.parse(e.data));
                    source.addEventListener("end", () => { source.close(); resolve(got); });
                    source.onerror = () => { source.close(); reject(new Error("EventSource failed")); };
                })""",
                "/gateways/orders?payload=" + urllib.parse.quote(json.dumps({"item": "tea", "qty": 3})),
            )
            assert tokens == ["tea", "tea", "tea"]
            assert outside == []
        finally:
            browser.close()


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_answer_the_document_does_not_allow(
    typed: Any, tmp_path: Path
) -> None:
    st = shutil.which("st") or shutil.which("schemathesis")
    if st is None:
        missing("schemathesis is not installed", "pip install schemathesis (the test extra has it)")
    for gateway, auth in (
        ("prompt", []),
        ("orders", []),
        ("free", []),
        ("iris", ["-H", "Authorization: Bearer t0ken"]),
    ):
        run = subprocess.run(
            [
                st,
                "run",
                _base(typed, gateway) + "/openapi.json",
                "--checks",
                "all",
                # a tensor's data must fill its shape, which JSON Schema cannot say: data the
                # document allows may still be refused (400), so that check does not apply
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                "40",
                "--seed",
                "7",
                "--workers",
                "1",
                *auth,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,  # where it keeps its cache
        )
        assert run.returncode == 0, f"schemathesis on gateway {gateway!r}:\n{run.stdout[-6000:]}"
        assert re.search(r"\d+ generated, \d+ passed", run.stdout), run.stdout[-2000:]
