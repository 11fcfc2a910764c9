"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, with aiohttp's websocket.

Only what the browser tests need: open a page, evaluate JavaScript, wait for a condition,
dispatch input, take screenshots, and collect the page's uncaught exceptions and console errors.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserError(RuntimeError):
    pass


class Chromium:
    """One headless browser with one page; use as a context manager."""

    def __init__(self, width: int = 1600, height: int = 1000, timeout: float = 60.0) -> None:
        executable = chromium_path()
        if executable is None:
            raise BrowserError("no chromium on PATH: run scripts/setup-browser.sh")
        self.profile = Path(tempfile.mkdtemp(prefix="p2p-chromium-"))
        self.log_path = self.profile / "chromium.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [executable, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.loop = asyncio.new_event_loop()
        self.ids = itertools.count(1)
        self.events: list[dict] = []
        try:
            port = self._port(timeout)
            self.loop.run_until_complete(self._connect(port, width, height))
        except BaseException:
            self.close()
            raise

    def _port(self, timeout: float) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.1)
        raise BrowserError("chromium did not open its DevTools port")

    async def _connect(self, port: int, width: int, height: int) -> None:
        self.http = aiohttp.ClientSession()
        async with self.http.get(f"http://127.0.0.1:{port}/json/list") as response:
            pages = [t for t in await response.json() if t["type"] == "page"]
        self.ws = await self.http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        for domain in ("Page", "Runtime"):
            await self._send(f"{domain}.enable", {})
        await self._send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    async def _send(self, method: str, params: dict, timeout: float = 60.0) -> dict:
        message_id = next(self.ids)
        await self.ws.send_str(json.dumps({"id": message_id, "method": method, "params": params}))

        async def answer() -> dict:
            while True:
                message = await self.ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise BrowserError(f"DevTools connection closed ({message.type})")
                data = json.loads(message.data)
                if data.get("id") == message_id:
                    if "error" in data:
                        raise BrowserError(f"{method}: {data['error']}")
                    return data["result"]
                if data.get("method") == "Page.javascriptDialogOpening":
                    # A page's alert or "leave this page?" (beforeunload) would block navigation and
                    # script until answered; answer it as a user pressing OK / Leave.
                    await self._answer_dialog()
                if "method" in data:
                    self.events.append(data)

        return await asyncio.wait_for(answer(), timeout)

    async def _answer_dialog(self) -> None:
        command = {"id": next(self.ids), "method": "Page.handleJavaScriptDialog", "params": {"accept": True}}
        await self.ws.send_str(json.dumps(command))

    def send(self, method: str, timeout: float = 60.0, **params) -> dict:
        return self.loop.run_until_complete(self._send(method, params, timeout))

    def evaluate(self, expression: str, timeout: float = 60.0):
        """The value of a JavaScript expression (promises awaited); its exception as a BrowserError."""
        result = self.send(
            "Runtime.evaluate",
            timeout=timeout,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error: {text}")
        return result["result"].get("value")

    def call(self, function: str, *args, timeout: float = 60.0):
        """The value of a JavaScript function's source applied to JSON arguments."""
        return self.evaluate(f"({function})(...{json.dumps(args)})", timeout)

    def wait_for(self, expression: str, timeout: float = 30.0, what: str | None = None) -> None:
        """Poll a JavaScript expression until it is truthy."""
        deadline = time.monotonic() + timeout
        while True:
            if self.evaluate(f"!!({expression})"):
                return
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout} s waiting for {what or expression}")
            time.sleep(0.2)

    def goto(self, url: str, timeout: float = 60.0) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", timeout, what=f"{url} to load")

    def screenshot(self, path: Path, clip: dict | None = None) -> Path:
        params = {"format": "png"}
        if clip:
            params["clip"] = {**clip, "scale": 1}
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def errors(self) -> list[str]:
        """Uncaught exceptions and console errors the page reported so far."""
        self.send("Runtime.evaluate", expression="0")  # drain pending events
        out = []
        for event in self.events:
            if event["method"] == "Runtime.exceptionThrown":
                details = event["params"]["exceptionDetails"]
                out.append(details.get("exception", {}).get("description") or details.get("text", ""))
            elif event["method"] == "Runtime.consoleAPICalled" and event["params"]["type"] == "error":
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in event["params"]["args"]))
        return out

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        async def shut() -> None:
            if getattr(self, "ws", None) is not None:
                await self.ws.close()
            if getattr(self, "http", None) is not None:
                await self.http.close()

        self.loop.run_until_complete(shut())
        self.loop.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)
