"""Drives a real Home Assistant for scripts/ha-screenshot.sh: onboarding, the
MQTT integration pointed at the lab's broker, and a screenshot of the
homewarden device's page through Chromium's DevTools protocol.

  ha_screenshot.py onboard TOKEN_FILE            (HA reachable on 127.0.0.1:8123)
  ha_screenshot.py mqtt TOKEN_FILE BROKER USER PASSWORD
  ha_screenshot.py mqtt ... prints the homewarden device's id
  ha_screenshot.py shot TOKEN_FILE DEVICE OUT.png (Chromium on 127.0.0.1:9222)

Runs with the Home Assistant venv's python (aiohttp comes with it).
"""

import asyncio
import base64
import json
import sys
import time
import urllib.parse
import urllib.request

HA = "http://127.0.0.1:8123"
CLIENT = HA + "/"


def call(method, path, body=None, token=None, form=False):
    headers, data = {}, None
    if body is not None:
        if form:
            data, headers["Content-Type"] = urllib.parse.urlencode(body).encode(), "application/x-www-form-urlencoded"
        else:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(HA + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def access(token_file):
    refresh = open(token_file).read().strip()
    return call("POST", "/auth/token", {"grant_type": "refresh_token", "refresh_token": refresh,
                                        "client_id": CLIENT}, form=True)["access_token"]


def onboard(token_file):
    code = call("POST", "/api/onboarding/users", {"client_id": CLIENT, "name": "Owner", "username": "owner",
                                                  "password": "homewarden-screenshot", "language": "en"})["auth_code"]
    tok = call("POST", "/auth/token", {"grant_type": "authorization_code", "code": code, "client_id": CLIENT},
               form=True)
    for step, body in [("core_config", {}), ("analytics", {}),
                       ("integration", {"client_id": CLIENT, "redirect_uri": CLIENT})]:
        call("POST", f"/api/onboarding/{step}", body, token=tok["access_token"])
    open(token_file, "w").write(tok["refresh_token"])


def mqtt(token_file, broker, user, password):
    t = access(token_file)
    flow = call("POST", "/api/config/config_entries/flow", {"handler": "mqtt"}, token=t)
    r = call("POST", f"/api/config/config_entries/flow/{flow['flow_id']}",
             {"broker": broker, "port": 1883, "username": user, "password": password}, token=t)
    assert r["type"] == "create_entry", r
    # The appliance's device, once discovery has run.
    template = json.dumps({"template": "{{ device_id('sensor.homewarden_threat_state') }}"}).encode()
    for _ in range(60):
        req = urllib.request.Request(HA + "/api/template", method="POST", data=template,
                                     headers={"Authorization": f"Bearer {t}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            device = resp.read().decode().strip()
        if device and device != "None":
            print(device)
            return
        time.sleep(1)
    raise SystemExit("Home Assistant never saw the homewarden device")


async def shot(token_file, device, out):
    import aiohttp
    t = access(token_file)
    # The frontend shows "Loading data" until Home Assistant has finished starting.
    for _ in range(120):
        if call("GET", "/api/config", token=t).get("state") == "RUNNING":
            break
        time.sleep(1)
    async with aiohttp.ClientSession() as s:
        for _ in range(50):
            try:
                async with s.get("http://127.0.0.1:9222/json") as r:
                    tabs = await r.json()
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.2)
        page = next(tab for tab in tabs if tab["type"] == "page")
        async with s.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            n = 0

            async def cmd(method, **params):
                nonlocal n
                n += 1
                await ws.send_json({"id": n, "method": method, "params": params})
                async for m in ws:
                    d = json.loads(m.data)
                    if d.get("id") == n:
                        return d.get("result", d)

            await cmd("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
            await cmd("Page.navigate", url=HA + "/auth/authorize")
            await asyncio.sleep(2)
            # The tokens where the frontend keeps them ("keep me logged in").
            tokens = {"access_token": t, "token_type": "Bearer", "expires_in": 1800,
                      "refresh_token": open(token_file).read().strip(), "hassUrl": HA, "clientId": CLIENT}
            await cmd("Runtime.evaluate", expression="t=" + json.dumps(tokens) +
                      ";t.expires=Date.now()+1700000;localStorage.setItem('hassTokens',JSON.stringify(t));")
            await cmd("Page.navigate", url=f"{HA}/config/devices/device/{device}")
            await asyncio.sleep(20)
            png = await cmd("Page.captureScreenshot", format="png")
            open(out, "wb").write(base64.b64decode(png["data"]))


if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    if what == "onboard":
        onboard(*args)
    elif what == "mqtt":
        mqtt(*args)
    elif what == "shot":
        asyncio.run(shot(*args))
    else:
        raise SystemExit(__doc__)
