"""The test node gateway's dask_gateway_config.py: what the dask-gateway chart 2026.3.0's
config files make of its values, for the api server and the controller alike.

The chart's templates (gateway/configmap.yaml, controller/configmap.yaml) are not on PyPI;
this is the project's model of them, checked by hand against the chart at its 2026.3.0 tag.
The cluster part is dask_pods.gateway_config, the same model the pod-builder tests run. Both
Deployments mount the ConfigMap holding this file, dask_pods.py, chart_values.py and the
release's name with its `dask-gateway` values (values.json) at /etc/dask-gateway/; each
server reads its own settings and ignores the other's.
"""

import json
import os
import sys

HERE = "/etc/dask-gateway"
sys.path.insert(0, HERE)

from chart_values import get  # noqa: E402
from dask_pods import gateway_config  # noqa: E402

# {"release": NAME, "values": <the layered values' dask-gateway part>}
with open(f"{HERE}/values.json") as f:
    chart = json.load(f)
values, release = chart["values"], chart["release"]
namespace = os.environ.get("POD_NAMESPACE") or open(
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace").read().strip()
fullname = f"{release}-dask-gateway"
prefix = get(values, "gateway.prefix", "/")

c = get_config()  # noqa: F821 (the server's config loader provides it)

# The api server: listens on 8000, makes clusters through the kubernetes backend, and asks
# the hub who a token belongs to.
c.DaskGateway.address = ":8000"
c.DaskGateway.backend_class = "dask_gateway_server.backends.kubernetes.KubeBackend"
c.DaskGateway.log_level = get(values, "gateway.loglevel", "INFO")
auth = get(values, "gateway.auth.type")
if auth != "jupyterhub":
    raise ValueError(f"the test node's gateway models only JupyterHub auth, not {auth!r}")
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.JupyterHubAuthenticator"
c.JupyterHubAuthenticator.jupyterhub_api_url = get(values, "gateway.auth.jupyterhub.apiUrl")

# The controller: routes each cluster through traefik under the gateway's prefix (dashboards
# on the web entrypoint, schedulers by TLS SNI on the same one, as the chart's traefik Service
# gives the tcp port as "web").
c.KubeController.address = ":8000"
c.KubeController.proxy_prefix = prefix
c.KubeController.proxy_web_middlewares = [
    {"name": f"clusters-prefix-{fullname}"[:63].rstrip("-"), "namespace": namespace}]
c.KubeController.proxy_tcp_entrypoint = "web"

# The backend's and the clusters' configuration, gateway.extraConfig last.
c.merge(gateway_config(values, namespace, release))
