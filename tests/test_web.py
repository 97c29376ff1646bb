"""The planning web page (``hwsim serve``): its JSON API through FastAPI's TestClient, and the
page itself end to end in a real headless browser (Debian's chromium, driven by Selenium)."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hwsim.cli.main import app as cli_app
from hwsim.web.app import LOOPBACK_HOSTS, create_app
from hwsim.web.service import Service

ROOT = Path(__file__).resolve().parent.parent
CHAT = ROOT / "examples" / "chat-service.yaml"
SINGLE = ROOT / "examples" / "llama2-7b-a100.yaml"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy for 127.0.0.1


def small_chat_scenario() -> dict:
    """examples/chat-service.yaml with fewer candidates and no simulator run: ~0.1 s."""
    sc = yaml.safe_load(CHAT.read_text())
    sc["candidates"].update(hardware=["h100-sxm", "l40s"], tp=[1, 2], kv_dtype=["fp8"])
    sc["serving"] = {"simulate_top": 0}
    return sc


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(Service()))


@pytest.fixture(scope="module")
def planned(client):
    response = client.post("/api/plan", json={"scenario": small_chat_scenario()})
    assert response.status_code == 200, response.text
    return response.headers["X-Hwsim-Plan-Id"], response.json()


# -- the API ---------------------------------------------------------------------------------


def test_profiles_list_the_shipped_models_and_hardware(client):
    data = client.get("/api/profiles").json()
    models = {m["id"] for m in data["models"]}
    hardware = {h["id"]: h for h in data["hardware"]}
    assert {"llama-3.1-8b", "mistral-7b"} <= models
    assert {"h100-sxm", "l40s", "mi300x"} <= set(hardware)
    assert hardware["h100-sxm"]["memory_bytes"] > 70e9
    assert data["artifacts"] == ["vllm", "sglang", "trtllm", "k8s"]
    assert "roofline" in data["plots"] and data["schema_version"] == 1


def test_a_plan_is_the_cli_json(planned):
    """POST /api/plan answers what `hwsim plan --json` prints for the same scenario."""
    _plan_id, data = planned
    assert data["schema_version"] == 1
    assert data["recommendation"]["sentence"].startswith("Run ")
    best = data["recommendation"]["candidate"]
    assert best["feasible"] and best["candidate"]["hardware"] in ("h100-sxm", "l40s")
    assert {c["candidate"]["tp"] for c in data["candidates"]} == {1, 2}
    assert data["pareto"] and data["workload"]["peak_rate_per_s"] == 40


def test_the_api_and_the_cli_give_the_same_plan(tmp_path, planned):
    _plan_id, data = planned
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(small_chat_scenario()))
    result = CliRunner().invoke(cli_app, ["plan", str(path), "--json", "--workers", "1"])
    assert result.exit_code == 0, result.output
    cli = json.loads(result.output)
    assert cli["recommendation"] == data["recommendation"]
    assert [c["candidate"]["label"] for c in cli["candidates"]] == [
        c["candidate"]["label"] for c in data["candidates"]
    ]


def test_a_scenario_yaml_posts_as_it_is(client, planned):
    """A pasted YAML (application/yaml or the "scenario" text) is the same plan, and the same
    plan id: the server plans a request once."""
    plan_id, data = planned
    text = yaml.safe_dump(small_chat_scenario())
    as_yaml = client.post("/api/plan", content=text, headers={"Content-Type": "application/yaml"})
    as_text = client.post("/api/plan", json={"scenario": text})
    for response in (as_yaml, as_text):
        assert response.status_code == 200, response.text
        assert response.headers["X-Hwsim-Plan-Id"] == plan_id
        assert response.json()["recommendation"] == data["recommendation"]
    assert client.get(f"/api/plans/{plan_id}").json() == data


def test_the_summary_is_the_first_screen(client, planned):
    plan_id, data = planned
    rows = client.get(f"/api/plans/{plan_id}/summary").json()["rows"]
    labels = [r["label"] for r in rows]
    assert labels[0] == "recommendation" and rows[0]["text"] == data["recommendation"]["sentence"]
    assert {"SLO TTFT p95", "SLO TPOT p95", "cost", "price"} <= set(labels)
    assert rows[-1]["text"].startswith("vllm serve ")


def test_the_plots_and_the_report_download(client, planned):
    plan_id, data = planned
    png = client.get(f"/api/plans/{plan_id}/plots/latency_vs_load.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    html = client.get(f"/api/plans/{plan_id}/report.html")
    assert html.headers["content-disposition"] == 'attachment; filename="report.html"'
    assert data["recommendation"]["sentence"].split(":")[0] in html.text
    report = zipfile.ZipFile(io.BytesIO(client.get(f"/api/plans/{plan_id}/report.zip").content))
    names = set(report.namelist())
    assert {"hwsim-plan/report.html", "hwsim-plan/report.md"} <= names
    assert "hwsim-plan/plots/roofline.png" in names
    assert "![roofline](plots/roofline.png)" in report.read("hwsim-plan/report.md").decode()
    missing = client.get(f"/api/plans/{plan_id}/plots/nope.png")
    assert missing.status_code == 404 and "latency_vs_load" in missing.json()["error"]


def test_launch_artifacts_of_a_stored_plan(client, planned):
    plan_id, data = planned
    script = client.get(f"/api/plans/{plan_id}/artifacts/vllm")
    assert script.status_code == 200
    assert script.headers["content-disposition"] == 'attachment; filename="launch-vllm.sh"'
    assert script.text.startswith("#!/usr/bin/env bash")
    assert data["recommendation"]["sentence"] in script.text
    assert "vllm serve" in script.text.replace("exec ", "")
    k8s = client.get(f"/api/plans/{plan_id}/artifacts/k8s", params={"engine": "sglang"})
    docs = list(yaml.safe_load_all(k8s.text))
    assert {d["kind"] for d in docs} >= {"Deployment", "Service"}
    second = client.get(f"/api/plans/{plan_id}/artifacts/sglang", params={"rank": 2})
    assert "plan rank 2 of" in second.text
    too_far = client.get(f"/api/plans/{plan_id}/artifacts/vllm", params={"rank": 999})
    assert too_far.status_code == 400 and "choose 1 to" in too_far.json()["error"]
    unknown = client.get(f"/api/plans/{plan_id}/artifacts/ollama")
    assert unknown.status_code == 404
    assert (
        unknown.json()["error"] == "unknown artifact 'ollama'; allowed: vllm, sglang, trtllm, k8s"
    )


def test_post_artifacts_is_plan_emit(client):
    """POST /api/artifacts renders what `hwsim plan --emit` writes: for a planned scenario
    (its recommendation) and for a single deployment."""
    planned = client.post(
        "/api/artifacts", json={"scenario": small_chat_scenario(), "emit": ["vllm", "k8s"]}
    ).json()
    assert list(planned["files"]) == ["launch-vllm.sh", "deployment.yaml"]
    assert planned["label"].startswith("plan rank 1 of")
    single = client.post(
        "/api/artifacts", json={"scenario": SINGLE.read_text(), "emit": "trtllm"}
    ).json()
    assert list(single["files"]) == ["launch-trtllm.sh"]
    assert "a100-80gb-sxm" in single["label"]
    result = CliRunner().invoke(cli_app, ["plan", str(SINGLE), "--emit", "trtllm"])
    assert result.exit_code == 0
    assert single["files"]["launch-trtllm.sh"] == result.output


def test_estimate_is_the_single_deployment_json(client):
    response = client.post(
        "/api/estimate", content=SINGLE.read_text(), headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code == 200, response.text
    data = response.json()
    cli = CliRunner().invoke(cli_app, ["plan", str(SINGLE), "--json"])
    expected = json.loads(cli.output)
    assert data["latency"] == expected["latency"] and data["memory"] == expected["memory"]
    assert data["model"] == expected["model"] and data["ops"]["decode"]


def test_context_sweep_and_its_plot(client, planned):
    response = client.post(
        "/api/context",
        json={
            "model": "llama-3.1-8b",
            "hardware": "h100-sxm",
            "lengths": "1k,32k",
            "compare_models": ["mistral-7b"],
            "deployment": {"kv_dtype": "fp8"},
        },
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["length_tokens"] == [1000, 32000, 1000, 32000]
    assert data["variant"] == ["llama-3.1-8b"] * 2 + ["mistral-7b"] * 2
    assert data["deployment"]["kv_dtype"] == "fp8"
    plot = client.get(f"/api/contexts/{response.headers['X-Hwsim-Context-Id']}/plot.png")
    assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
    # a stored plan's recommendation, with the plan's TPOT SLO
    plan_id, plan_data = planned
    of_plan = client.post("/api/context", json={"plan": plan_id, "lengths": [4096]}).json()
    best = plan_data["recommendation"]["candidate"]["candidate"]
    assert of_plan["hardware"] == best["hardware"] and of_plan["tpot_slo_s"] == 0.05
    assert of_plan["deployment"]["tp"] == best["tp"]


@pytest.mark.parametrize(
    "body, status, message",
    [
        (
            {"scenario": {"model": "llama-3.1-8b", "hardware": "h100-sxm", "traffic": {"x": 1}}},
            400,
            "scenario traffic: field 'arrivals': Field required",
        ),
        (
            {"scenario": "model: llama-3.1-8b\nhardware: h100-sxm\nslo: {tpot_p95_s: fast}\n"},
            400,
            "scenario YAML: field 'slo.tpot_p95_s'",
        ),
        ({"scenario": "model: [\n"}, 400, "scenario YAML: not valid YAML at line 2"),
        (
            {**small_chat_scenario(), "model": "no-such-model"},
            400,
            "unknown model profile 'no-such-model'",
        ),
        (
            {"scenario": small_chat_scenario(), "simulate_top": -1},
            400,
            "field 'simulate_top': must be a whole number >= 0, got -1",
        ),
        ({"scenario": {}, "speed": 1}, 400, "unknown field(s) 'speed'; allowed: scenario"),
        ({"hardware": "h100-sxm"}, 400, "scenario: field 'model': Field required"),
    ],
)
def test_bad_scenarios_get_4xx_with_the_cli_message(client, body, status, message):
    response = client.post("/api/plan", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert message in error
    assert "Traceback" not in error


def test_the_error_text_is_what_the_cli_prints(client, tmp_path):
    sc = small_chat_scenario()
    sc["candidates"]["tp"] = [3]
    sc["model"] = "llama-3.1-8bb"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(sc))
    cli = CliRunner().invoke(cli_app, ["plan", str(path), "--json"])
    assert cli.exit_code == 2
    api = client.post("/api/plan", json={"scenario": sc}).json()["error"]
    assert " ".join(cli.output.split()) == f"error: {api}"


def test_other_request_errors(client):
    wrong_type = client.post("/api/plan", content="{}", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415 and "application/json" in wrong_type.json()["error"]
    no_traffic = client.post("/api/plan", json={"scenario": SINGLE.read_text()})
    assert no_traffic.status_code == 400 and "POST /api/estimate" in no_traffic.json()["error"]
    unknown_plan = client.get("/api/plans/0123456789abcdef/report.html")
    assert unknown_plan.status_code == 404 and "POST /api/plan again" in unknown_plan.text
    duplicate = client.post(
        "/api/plan",
        content='{"model": "a", "model": "b"}',
        headers={"Content-Type": "application/json"},
    )
    assert duplicate.status_code == 400 and "duplicate key 'model'" in duplicate.json()["error"]
    infeasible = small_chat_scenario()
    infeasible["slo"]["tpot_p95_s"] = "0.1 ms"
    nothing = client.post("/api/plan", json=infeasible)
    assert nothing.status_code == 422 and "no candidate meets the SLOs" in nothing.json()["error"]
    bad_lengths = client.post(
        "/api/context", json={"model": "llama-3.1-8b", "hardware": "h100-sxm", "lengths": "1q"}
    )
    assert bad_lengths.status_code == 400
    assert "cannot read '1q'; use integers with optional k, M, Ki, Mi suffix" in bad_lengths.text
    bad_setting = client.post(
        "/api/context",
        json={"model": "llama-3.1-8b", "hardware": "h100-sxm", "deployment": {"tq": 2}},
    )
    assert bad_setting.status_code == 400 and "unknown deployment setting" in bad_setting.text


def test_a_loopback_server_answers_only_loopback_host_names():
    guarded = TestClient(create_app(Service(), allowed_hosts=LOOPBACK_HOSTS))
    assert guarded.get("/api/profiles", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert guarded.get("/api/profiles", headers={"Host": "evil.example:8000"}).status_code == 400


def test_the_page_and_its_scripts_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="plan-form"' in page.text
    assert client.get("/static/app.js").status_code == 200


# -- the command -----------------------------------------------------------------------------


def test_serve_without_the_web_extra_says_how_to_install_it(monkeypatch):
    import hwsim.web

    monkeypatch.setattr(hwsim.web, "missing_packages", lambda: ["fastapi"])
    result = CliRunner().invoke(cli_app, ["serve"])
    assert result.exit_code == 2
    assert "hwsim serve needs fastapi: pip install 'hwsim[web]'" in result.output


def test_serve_on_a_busy_port_fails_cleanly():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli_app, ["serve", "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


# -- the page in a browser -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`hwsim serve` in a subprocess on a free port; its base URL."""
    port = free_port()
    code = "import sys; sys.argv[0] = 'hwsim'; from hwsim.cli.main import app; app()"
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    log = log_path.open("w")  # a file, not a pipe: the access log never blocks the server
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                with LOCAL.open(f"{url}/api/profiles", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"hwsim serve did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
            "apt-get install chromium chromium-driver (.ci/run installs them)"
        )
    from selenium import webdriver

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-proxy-server",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()


def _downloaded(folder: Path, name: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    path = folder / name
    while time.monotonic() < deadline:
        partial = list(folder.glob("*.crdownload"))
        if path.is_file() and not partial:
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{name} not downloaded; the folder holds {sorted(folder.iterdir())}")


def test_the_page_plans_in_a_browser(server, browser):
    """Fill the form, plan, see the recommendation, the candidate table, the plots and the
    context curves; download a launch script and the report; a bad YAML shows the error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(server + "/")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))

    Select(browser.find_element(By.ID, "model")).select_by_value("llama-3.1-8b")
    for box in browser.find_elements(By.CSS_SELECTOR, "input[name=hardware]"):
        if box.is_selected() != (box.get_attribute("value") in ("h100-sxm", "l40s")):
            box.click()
    for field, value in (("tp", "1,2"), ("rate", "20"), ("tpot-ms", "60"), ("simulate-top", "0")):
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)
    browser.find_element(By.ID, "plan-button").click()

    wait.until(lambda d: d.find_element(By.ID, "recommendation").text.startswith("Run "))
    recommendation = browser.find_element(By.ID, "recommendation").text
    assert "llama-3.1-8b" in recommendation and "20 requests/s" in recommendation
    rows = browser.find_elements(By.CSS_SELECTOR, "#candidates tr")
    assert len(rows) > 2  # a header and the candidates
    first = [td.text for td in rows[1].find_elements(By.TAG_NAME, "td")]
    assert first[0] == "1" and first[1].split()[0] in ("h100-sxm", "l40s")

    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#first-screen tr")) >= 4)
    first_screen = browser.find_element(By.ID, "first-screen").text
    assert "SLO TPOT p95 target 60.00 ms" in first_screen and "vllm serve" in first_screen

    loaded = (
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(i => i.complete && i.naturalWidth > 0)"
    )
    wait.until(lambda d: all(d.execute_script(loaded, "img.plot") or [False]))
    assert len(browser.execute_script(loaded, "img.plot")) == 5
    wait.until(lambda d: d.execute_script(loaded, "#context-plot") == [True])
    context_rows = browser.find_elements(By.CSS_SELECTOR, "#context-table tr")
    assert len(context_rows) == 5  # a header and 1k, 4k, 32k, 128k

    link = browser.find_element(By.ID, "download-vllm")
    api_text = LOCAL.open(link.get_attribute("href")).read().decode()
    link.click()
    script = _downloaded(browser.downloads, "launch-vllm.sh")
    assert script == api_text
    assert script.startswith("#!/usr/bin/env bash") and recommendation in script
    browser.find_element(By.ID, "download-report-html").click()
    assert recommendation in _downloaded(browser.downloads, "report.html")

    browser.find_element(By.ID, "to-yaml").click()  # the form as YAML, then broken
    yaml_box = browser.find_element(By.ID, "scenario-yaml")
    assert "rate_per_s: 20" in yaml_box.get_attribute("value")
    yaml_box.clear()
    yaml_box.send_keys("model: llama-3.1-8b\nhardware: h100-sxm\ntraffic: {rate: 1}\n")
    browser.find_element(By.ID, "plan-button").click()
    error = browser.find_element(By.ID, "error")
    wait.until(lambda d: error.is_displayed())
    assert error.text.startswith("error: scenario traffic: field 'arrivals': Field required")
