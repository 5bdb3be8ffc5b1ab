"""The test node hub's jupyterhub_config.py: what z2jh 4.4.0's hub configuration makes of the
chart's values, for the keys the secured hubs' values use.

z2jh's own jupyterhub_config.py ships inside its chart, which no registry this project may
use serves; this is the project's model of it, written from z2jh's documented behaviour and
checked by hand against z2jh 4.4.0's files/hub/jupyterhub_config.py. The KubeSpawner part is
kubespawner_pods.configure, the same model the pod-builder tests run (so the pods this hub
spawns are the pods those tests judge). The hub's Deployment mounts this file where z2jh's
goes, the ConfigMap `hub` (this file, kubespawner_pods.py, chart_values.py and the values)
at config/, and the Secret `hub` (the secret values and tokens, under z2jh's key names) at
secret/.
"""

import os
import sys

import yaml

HERE = "/usr/local/etc/jupyterhub"
sys.path.insert(0, f"{HERE}/config")

from chart_values import get  # noqa: E402
from kubespawner_pods import configure, merged  # noqa: E402


def load(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def secret(key):
    with open(f"{HERE}/secret/{key}") as f:
        return f.read().strip()


values = merged(load(f"{HERE}/config/values.yaml"), load(f"{HERE}/secret/values.yaml"))
namespace = os.environ["POD_NAMESPACE"]
release = os.environ["HELM_RELEASE_NAME"]

c = get_config()  # noqa: F821 (JupyterHub's config loader provides it)

# The hub behind z2jh's Services: it binds every address, is reached as `hub`, and talks to
# the proxy's API at `proxy-api` (the proxy runs in its own pod: the hub never starts one).
c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.JupyterHub.hub_bind_url = "http://:8081"
c.JupyterHub.hub_connect_url = f"http://hub:{os.environ['HUB_SERVICE_PORT']}"
c.ConfigurableHTTPProxy.api_url = f"http://proxy-api:{os.environ['PROXY_API_SERVICE_PORT']}"
c.ConfigurableHTTPProxy.should_start = False
c.JupyterHub.cleanup_servers = False
c.JupyterHub.last_activity_interval = 60
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}
c.JupyterHub.db_url = "sqlite:////srv/jupyterhub/jupyterhub.sqlite"
c.JupyterHub.cookie_secret = bytes.fromhex(secret("hub.config.JupyterHub.cookie_secret"))
c.CryptKeeper.keys = [secret("hub.config.CryptKeeper.keys").encode()]
c.KubeSpawner.events_enabled = True
pull_policy = get(values, "singleuser.image.pullPolicy")
if pull_policy:
    c.KubeSpawner.image_pull_policy = pull_policy

# hub.services: each registered with its token from the Secret, routed by the proxy where it
# has a url.
services = []
for name, service in (get(values, "hub.services") or {}).items():
    entry = {"name": name, "api_token": secret(f"hub.services.{name}.apiToken")}
    for key, field in [("url", "url"), ("display", "display"), ("admin", "admin"),
                       ("oauthRedirectUri", "oauth_redirect_uri"), ("oauthNoConfirm", "oauth_no_confirm")]:
        if service.get(key) is not None:
            entry[field] = service[key]
    services.append(entry)

# cull: the idle culler as a hub-managed service with only the scopes it needs.
roles = []
if get(values, "cull.enabled"):
    culler = [sys.executable, "-m", "jupyterhub_idle_culler", "--url=http://localhost:8081/hub/api"]
    for flag, key in [("timeout", "cull.timeout"), ("cull-every", "cull.every"),
                      ("concurrency", "cull.concurrency"), ("max-age", "cull.maxAge")]:
        if get(values, key) is not None:
            culler.append(f"--{flag}={get(values, key)}")
    scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
    if get(values, "cull.users"):
        culler.append("--cull-users")
        scopes.append("admin:users")
    if get(values, "cull.removeNamedServers"):
        culler.append("--remove-named-servers")
    services.append({"name": "jupyterhub-idle-culler", "command": culler})
    roles.append({"name": "jupyterhub-idle-culler", "scopes": scopes,
                  "services": ["jupyterhub-idle-culler"]})
c.JupyterHub.services = services
c.JupyterHub.load_roles = roles

# Everything KubeSpawner takes from singleuser and scheduling, then hub.config last.
c.merge(configure(values, namespace, release))
