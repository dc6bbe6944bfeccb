#!/usr/bin/env python3
"""page_check.py CHROMIUM URL OUT.png: opens URL in headless Chromium,
driven over the DevTools protocol on a pipe (--remote-debugging-pipe;
standard library only), waits (at most 120 s of real time) until the chat
page shows a finished streamed answer (its stats line), prints the page's
state as JSON and saves a screenshot. Used by server_page_screenshot.sh."""
import base64
import json
import os
import subprocess
import sys
import time

chromium, url, out_png = sys.argv[1], sys.argv[2], sys.argv[3]
to_browser_r, to_browser_w = os.pipe()
from_browser_r, from_browser_w = os.pipe()
# the child's ends at fds that cannot be 3 or 4, so the shell below can move them there
for low, high in ((to_browser_r, 100), (from_browser_w, 101)):
    os.dup2(low, high, inheritable=False)
    os.close(low)
to_browser_r, from_browser_w = 100, 101
profile = out_png + ".profile"
# Chromium reads commands on fd 3 and writes replies on fd 4: a shell puts the pipes there.
proc = subprocess.Popen(
    ["bash", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-',
     chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--remote-debugging-pipe",
     f"--user-data-dir={profile}", "--window-size=900,560", "about:blank"],
    pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL)
os.close(to_browser_r)
os.close(from_browser_w)
buffer = b""
next_id = 0


def call(method, params=None, session=None):
    """Sends one command and returns its result (events are skipped)."""
    global buffer, next_id
    next_id += 1
    message = {"id": next_id, "method": method, "params": params or {}}
    if session:
        message["sessionId"] = session
    os.write(to_browser_w, json.dumps(message).encode() + b"\0")
    while True:
        while b"\0" not in buffer:
            part = os.read(from_browser_r, 1 << 20)
            if not part:
                raise RuntimeError("chromium closed the pipe")
            buffer += part
        raw, buffer = buffer.split(b"\0", 1)
        reply = json.loads(raw)
        if reply.get("id") == next_id:
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply["result"]


try:
    target = call("Target.createTarget", {"url": url})["targetId"]
    session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    state_js = """JSON.stringify({
        model: document.getElementById("model").textContent,
        user: Array.from(document.querySelectorAll(".msg.user")).map(e => e.textContent),
        answer: (document.querySelector(".msg.assistant") || {}).textContent || "",
        stats: (document.querySelector(".stats") || {}).textContent || "",
        error: (document.querySelector(".msg.error") || {}).textContent || ""})"""
    state = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        value = call("Runtime.evaluate", {"expression": state_js, "returnByValue": True}, session)["result"].get("value")
        state = json.loads(value) if value else {}
        if state.get("stats") or state.get("error"):
            break
        time.sleep(0.25)
    shot = call("Page.captureScreenshot", {"format": "png"}, session)["data"]
    with open(out_png, "wb") as f:
        f.write(base64.b64decode(shot))
    print(json.dumps(state))
finally:
    try:
        call("Browser.close")
    except Exception:  # noqa: BLE001 - the browser may be gone already
        pass
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    subprocess.run(["rm", "-rf", profile])
