"""Loads an HTML file in headless Chromium and reports what the browser saw, as JSON.

Usage: browser_check.py PAGE.html [SCREENSHOT.png]

Drives Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe: fd 3 in,
fd 4 out, NUL-terminated JSON), with the standard library only. Prints:
  requests  every URL the page asked for other than itself (Network.requestWillBeSent)
  console   console messages of level error/warning, uncaught exceptions, log errors
  charts    per svg.chart: its aria-label, its declared data-points, and how many of its
            .pt elements the browser laid out with a non-empty box
  loaded    whether the load event fired
The browser is `NINES_CHROMIUM` or `chromium`; everything stops after 90 s.
"""

import base64
import fcntl
import json
import os
import select
import subprocess
import sys
import tempfile
import time

DEADLINE = time.monotonic() + 90


def high_fd(fd):
    """A copy of fd numbered 10 or above, so dup2 onto 3 and 4 cannot clobber it."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new


class Browser:
    def __init__(self, profile):
        to_child_r, self.to_child = map(high_fd, os.pipe())
        self.from_child, from_child_w = map(high_fd, os.pipe())

        def wire():
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self.proc = subprocess.Popen(
            [
                os.environ.get("NINES_CHROMIUM", "chromium"),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--hide-scrollbars",
                "--mute-audio",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=wire,
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.buffer = b""
        self.next_id = 0
        self.events = []

    def read_message(self):
        while b"\0" not in self.buffer:
            left = DEADLINE - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium within 90 s")
            ready, _, _ = select.select([self.from_child], [], [], left)
            if ready:
                chunk = os.read(self.from_child, 1 << 20)
                if not chunk:
                    raise EOFError("chromium closed the pipe")
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method, params=None, session=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_child, json.dumps(message).encode() + b"\0")
        while True:
            m = self.read_message()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_for(self, method):
        while True:
            for i, m in enumerate(self.events):
                if m.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self.read_message())


CHARTS = """JSON.stringify([...document.querySelectorAll('svg.chart')].map(s => ({
  label: s.getAttribute('aria-label'),
  declared: Number(s.dataset.points),
  laid_out: [...s.querySelectorAll('.pt')].filter(p => {
    const b = p.getBBox(); return b.width > 0 && isFinite(b.x) && isFinite(b.y);
  }).length,
  width: s.getBoundingClientRect().width,
})))"""


def main():
    page = os.path.abspath(sys.argv[1])
    screenshot = sys.argv[2] if len(sys.argv) > 2 else None
    url = "file://" + page
    with tempfile.TemporaryDirectory() as profile:
        b = Browser(profile)
        try:
            target = b.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = b.call(
                "Target.attachToTarget", {"targetId": target, "flatten": True}
            )["sessionId"]
            for domain in ("Network", "Runtime", "Log", "Page"):
                b.call(f"{domain}.enable", session=session)
            b.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            b.call("Page.navigate", {"url": url}, session=session)
            b.wait_for("Page.loadEventFired")
            charts = json.loads(
                b.call(
                    "Runtime.evaluate",
                    {"expression": CHARTS, "returnByValue": True},
                    session=session,
                )["result"]["value"]
            )
            if screenshot:
                shot = b.call(
                    "Page.captureScreenshot",
                    {
                        "format": "png",
                        "captureBeyondViewport": True,
                        "clip": {"x": 0, "y": 0, "width": 1280, "height": 1500, "scale": 1},
                    },
                    session=session,
                )
                with open(screenshot, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
            requests, console = [], []
            for m in b.events:
                p = m.get("params", {})
                method = m.get("method")
                if method == "Network.requestWillBeSent" and p["request"]["url"] != url:
                    requests.append(p["request"]["url"])
                elif method == "Runtime.consoleAPICalled" and p["type"] in (
                    "error",
                    "warning",
                    "assert",
                ):
                    console.append(json.dumps(p.get("args")))
                elif method == "Runtime.exceptionThrown":
                    console.append(json.dumps(p["exceptionDetails"]))
                elif method == "Log.entryAdded" and p["entry"]["level"] in (
                    "error",
                    "warning",
                ):
                    console.append(p["entry"]["text"])
            print(
                json.dumps(
                    {"loaded": True, "requests": requests, "console": console, "charts": charts}
                )
            )
            try:
                b.call("Browser.close")
            except (EOFError, RuntimeError):
                pass
        finally:
            try:
                b.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                b.proc.kill()


if __name__ == "__main__":
    main()
