"""A user of a JupyterHub, through its proxy's HTTP port only, as a browser would be.

Reads JSON on stdin: {"hub": "http://ADDRESS", "user": NAME, "password": PASSWORD,
"cells": [CODE, ...], "stop": true|false}, or {"hub": ..., "login": "tmp", "cells": ...} for a
visitor of a hub with tmpauthenticator, and prints JSON: what each step answered
({"user": NAME, "steps": [[step, status, seconds], ...], "outputs": [{"stdout", "error"}, ...]}).
The steps: the login form (with its XSRF token), or tmpauthenticator's login link and the
hub's home page (which sets the XSRF cookie) and the hub's word on who the visitor is, spawning the default server from the hub's spawn page,
waiting for it in the hub's API (as the spawn-pending page does), opening JupyterLab (the
server's OAuth round trip through the hub), starting a kernel, running each cell over the
kernel's websocket (the Jupyter messaging protocol), and, with "stop", stopping the server.
Any step that answers otherwise exits non-zero naming it.
"""

import json
import re
import sys
import time
import uuid
from datetime import datetime, timezone

import httpx
from httpx_ws import connect_ws

STEPS = []


def step(name, response, *expected):
    STEPS.append([name, response.status_code, round(time.monotonic() - START, 1)])
    if response.status_code not in expected:
        sys.exit(f"{name}: {response.request.method} {response.request.url} answered "
                 f"{response.status_code}, not {expected}: {response.text[:2000]}")
    return response


def cookie(client, name, path):
    for c in client.cookies.jar:
        if c.name == name and c.path.rstrip("/") == path.rstrip("/"):
            return c.value
    sys.exit(f"no {name} cookie for {path}: {[(c.name, c.path) for c in client.cookies.jar]}")


def run_cell(ws, user, session, code, timeout):
    msg_id = uuid.uuid4().hex
    ws.send_json({
        "header": {"msg_id": msg_id, "username": user, "session": session,
                   "msg_type": "execute_request", "version": "5.3",
                   "date": datetime.now(timezone.utc).isoformat()},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    })
    stdout, error, replied, idle = [], None, False, False
    deadline = time.monotonic() + timeout
    while not (replied and idle):
        left = deadline - time.monotonic()
        if left <= 0:
            sys.exit(f"the cell did not finish in {timeout}s: {code[:200]!r}; so far {''.join(stdout)!r}")
        message = ws.receive_json(timeout=left)
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            stdout.append(content["text"])
        elif kind == "error":
            error = f"{content['ename']}: {content['evalue']}"
        elif kind == "execute_reply":
            replied = True
        elif kind == "status" and content["execution_state"] == "idle":
            idle = True
    return {"stdout": "".join(stdout), "error": error}


def main(request):
    hub = request["hub"].rstrip("/")
    out = {"steps": STEPS, "outputs": []}
    with httpx.Client(base_url=hub, timeout=30) as client:
        if request.get("login") == "tmp":
            # A fresh random user on every visit; the home page sets the XSRF cookie.
            step("log in (tmpauthenticator)", client.get("/hub/tmplogin"), 302)
            step("home page", client.get("/hub/home"), 200)
            xsrf = cookie(client, "_xsrf", "/hub/")
            api = {"X-XSRFToken": xsrf}
            user = step("who am I", client.get("/hub/api/user", headers=api), 200).json()["name"]
        else:
            user = request["user"]
            step("login page", client.get("/hub/login"), 200)
            xsrf = cookie(client, "_xsrf", "/hub/")
            step("log in", client.post("/hub/login", data={
                "username": user, "password": request["password"], "_xsrf": xsrf}), 302)
            api = {"X-XSRFToken": xsrf}
        out["user"] = user
        step("spawn", client.get("/hub/spawn"), 302)
        deadline = time.monotonic() + request.get("spawn_timeout", 300)
        while True:
            model = step("the hub's view", client.get(f"/hub/api/users/{user}", headers=api), 200).json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                break
            if time.monotonic() > deadline:
                sys.exit(f"{user}'s server was not ready in time: {model}")
            time.sleep(1)
        out["server_url"] = server["url"]
        lab = step("JupyterLab", client.get(f"/user/{user}/lab", follow_redirects=True), 200)
        out["lab_url"] = str(lab.url)
        out["lab_title"] = (re.search(r"<title>(.*?)</title>", lab.text) or [None, None])[1]
        server_xsrf = {"X-XSRFToken": cookie(client, "_xsrf", f"/user/{user}/")}
        kernel = step("start a kernel", client.post(
            f"/user/{user}/api/kernels", json={"name": "python3"}, headers=server_xsrf), 201).json()
        session = uuid.uuid4().hex
        with connect_ws(f"{hub}/user/{user}/api/kernels/{kernel['id']}/channels?session_id={session}",
                        client) as ws:
            for code in request.get("cells", []):
                out["outputs"].append(run_cell(ws, user, session, code, request.get("cell_timeout", 300)))
                STEPS.append(["cell", 0, round(time.monotonic() - START, 1)])
        step("stop the kernel", client.delete(
            f"/user/{user}/api/kernels/{kernel['id']}", headers=server_xsrf), 204)
        if request.get("stop"):
            # The OAuth round trip through the hub sets a new XSRF cookie there.
            api = {"X-XSRFToken": cookie(client, "_xsrf", "/hub/")}
            step("stop the server", client.delete(f"/hub/api/users/{user}/server", headers=api), 202, 204)
    return out


if __name__ == "__main__":
    START = time.monotonic()
    print(json.dumps(main(json.load(sys.stdin))))
