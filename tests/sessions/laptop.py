"""What the user does on the laptop, once the tunnel line runs: run inside the laptop's network namespace.

    python tests/web/laptop.py --jupyter URL --dashboard URL --shots DIR

Through the forwarded ports only: checks that JupyterLab wants its token,
runs code in a kernel (``dask_hpc.connect()`` with no arguments, and a plain
``Client()``), opens JupyterLab and the dashboard in headless Chromium (and
the dashboard link a notebook shows), saves screenshots, and prints what it
saw as JSON. Exit code 0 even when a check fails: the test asserts on the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

#: Bounds of every wait here.
ANSWER_TIMEOUT = 60.0
PAGE_TIMEOUT = 120.0

KERNEL_CODE = """
import dask_hpc, distributed
client = dask_hpc.connect()
print("connect", client.submit(sum, [1, 2, 3]).result())
print("plain", distributed.Client().submit(sum, [4, 5]).result())
print("link", client.dashboard_link)
"""


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def wait_answering(url: str) -> float:
    t0 = time.monotonic()
    while True:
        try:
            http_status(url)
            return time.monotonic() - t0
        except (urllib.error.URLError, OSError):
            if time.monotonic() - t0 > ANSWER_TIMEOUT:
                raise
            time.sleep(0.2)


def run_in_kernel(base: str, token: str, code: str) -> str:
    """Start a kernel through JupyterLab's REST API, run ``code``, return its output."""
    from tornado.websocket import websocket_connect

    auth = {"Authorization": f"token {token}"}
    request = urllib.request.Request(f"{base}/api/kernels", data=b"{}", method="POST", headers=auth)
    with urllib.request.urlopen(request, timeout=60) as response:
        kernel = json.load(response)["id"]

    async def execute() -> str:
        channels = f"{base.replace('http', 'ws', 1)}/api/kernels/{kernel}/channels?token={token}"
        ws = await websocket_connect(channels)
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "username": "laptop",
            "session": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "version": "5.3",
        }
        content = {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
        message["channel"] = "shell"
        await ws.write_message(json.dumps(message))
        out: list[str] = []
        deadline = time.monotonic() + PAGE_TIMEOUT
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(ws.read_message(), deadline - time.monotonic())
            if raw is None:
                break
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                out.append(f"error {msg['content']['ename']}: {msg['content']['evalue']}\n")
            elif kind == "execute_reply":
                break
        ws.close()
        return "".join(out)

    try:
        return asyncio.run(execute())
    finally:
        request = urllib.request.Request(f"{base}/api/kernels/{kernel}", method="DELETE", headers=auth)
        with contextlib.suppress(OSError):  # JupyterLab may be gone with the cluster the code shut down
            urllib.request.urlopen(request, timeout=30).close()


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"  # Debian's; nothing is downloaded
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait_for(driver: Any, script: str) -> bool:
    deadline = time.monotonic() + PAGE_TIMEOUT
    while time.monotonic() < deadline:
        if driver.execute_script(script):
            return True
        time.sleep(0.5)
    return False


LAUNCHER = "return document.querySelectorAll('.jp-LauncherCard').length"
#: bokeh renders the dashboard into document roots (inside shadow DOM, so ask bokeh itself).
BOKEH_ROOTS = "return (window.Bokeh && Bokeh.documents.length) ? Bokeh.documents[0].roots().length : 0"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jupyter", required=True, help="JupyterLab's URL with its token")
    parser.add_argument("--dashboard", required=True)
    parser.add_argument("--shots", type=Path, required=True)
    args = parser.parse_args()
    args.shots.mkdir(parents=True, exist_ok=True)
    url = urllib.parse.urlsplit(args.jupyter)
    base = f"{url.scheme}://{url.netloc}"
    token = urllib.parse.parse_qs(url.query)["token"][0]
    seen: dict[str, Any] = {"waited": wait_answering(f"{base}/api/status")}
    seen["status_without_token"] = http_status(f"{base}/api/status")
    seen["status_with_token"] = http_status(f"{base}/api/status", {"Authorization": f"token {token}"})
    seen["kernel"] = run_in_kernel(base, token, KERNEL_CODE)
    links = [line.split(" ", 1)[1] for line in seen["kernel"].splitlines() if line.startswith("link ")]
    link = links[0] if links else ""
    driver = browser()
    try:
        driver.get(args.jupyter)
        seen["jupyter_title"] = driver.title
        seen["launcher_cards"] = driver.execute_script(LAUNCHER) if wait_for(driver, LAUNCHER) else 0
        driver.save_screenshot(str(args.shots / "jupyterlab.png"))
        driver.get(args.dashboard)
        seen["dashboard_title"] = driver.title
        seen["dashboard_roots"] = driver.execute_script(BOKEH_ROOTS) if wait_for(driver, BOKEH_ROOTS) else 0
        driver.save_screenshot(str(args.shots / "dashboard.png"))
        if link:  # what a notebook's dashboard link opens (same browser: JupyterLab's login cookie)
            target = link if link.startswith("http") else f"{base}{link}"
            driver.get(target)
            seen["notebook_link"] = target
            rendered = wait_for(driver, BOKEH_ROOTS)
            seen["notebook_link_roots"] = driver.execute_script(BOKEH_ROOTS) if rendered else 0
            driver.save_screenshot(str(args.shots / "dashboard-from-notebook-link.png"))
    finally:
        driver.quit()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
