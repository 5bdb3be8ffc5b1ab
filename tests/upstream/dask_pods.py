"""Dask pods as the real dask-gateway-server and dask-kubernetes build them.

Reads one JSON request on stdin and prints one JSON answer:

- {"gateway": {"values": <the layered values' `dask-gateway` part>, "namespace": NS,
  "release": NAME, "user": USER, "options": [{...}, ...], "overrides": {...}}}: for each set of
  cluster options a user may ask for, the scheduler and worker pods dask-gateway-server's
  kubernetes backend makes: the gateway's options handler turns them into the cluster's
  configuration (KubeBackend.process_cluster_options), the controller makes the pods from it
  (KubeController.make_pod). `overrides` are configuration fields set after the handler, as a
  lax handler that passed them from the user would. Each answer is {"options", "scheduler",
  "worker", "secret", "service"} (the cluster's credentials and its scheduler's Service, as
  the controller makes them) or {"options", "error"} where the gateway refuses the options
  itself.
- {"kubecluster": {"name", "image", "resources", "n_workers"}}: the DaskCluster a plain
  `KubeCluster(...)` creates (dask-kubernetes' make_cluster_spec).
- {"operator": {"cluster": <the DaskCluster as stored>, "workers": N}}: what the
  dask-kubernetes operator's own handlers create for it: the scheduler Deployment and Service,
  the default DaskWorkerGroup, and N worker Deployments for that group.

The packages are upstream's, pinned in requirements.txt. Two parts are not on PyPI and are
modelled here, checked by hand against upstream: how the dask-gateway chart 2026.3.0 turns its
values into configuration (its templates/gateway/configmap.yaml and controller/configmap.yaml),
and the Kubernetes API the operator's handlers create objects through — a recording stand-in
at that protocol boundary (FakeApi): nothing here talks to a cluster.
"""

import asyncio
import copy
import json
import logging
import sys

from traitlets.config import Config

from chart_values import get

# The chart's name: it names its objects <kind>-<release>-dask-gateway (its fullname helper).
CHART = "dask-gateway"


def gateway_config(values, namespace, release):
    """The configuration the dask-gateway chart gives its api server and its controller."""
    fullname = f"{release}-{CHART}"
    api_url = f"http://api-{fullname}.{namespace}:8000/api"
    c = Config()
    c.KubeBackend.api_url = api_url
    c.KubeBackend.gateway_instance = fullname
    c.KubeController.api_url = api_url
    c.KubeController.gateway_instance = fullname
    image = get(values, "gateway.backend.image.name")
    if image:
        tag = get(values, "gateway.backend.image.tag")
        c.KubeClusterConfig.image = f"{image}:{tag}" if tag else image
        c.KubeClusterConfig.image_pull_secrets = get(values, "gateway.backend.imagePullSecrets") or []
    for field, key in [
        ("scheduler_cores", "scheduler.cores.request"),
        ("scheduler_cores_limit", "scheduler.cores.limit"),
        ("scheduler_memory", "scheduler.memory.request"),
        ("scheduler_memory_limit", "scheduler.memory.limit"),
        ("scheduler_extra_container_config", "scheduler.extraContainerConfig"),
        ("scheduler_extra_pod_config", "scheduler.extraPodConfig"),
        ("worker_cores", "worker.cores.request"),
        ("worker_cores_limit", "worker.cores.limit"),
        ("worker_memory", "worker.memory.request"),
        ("worker_memory_limit", "worker.memory.limit"),
        ("worker_threads", "worker.threads"),
        ("worker_extra_container_config", "worker.extraContainerConfig"),
        ("worker_extra_pod_config", "worker.extraPodConfig"),
        ("image_pull_policy", "image.pullPolicy"),
        ("environment", "environment"),
        ("namespace", "namespace"),
    ]:
        value = get(values, "gateway.backend." + key)
        if value is not None:
            setattr(c.KubeClusterConfig, field, value)
    c.KubeClusterConfig.namespace = get(values, "gateway.backend.namespace") or namespace
    # gateway.extraConfig runs last, as in the chart's config file, sorted by key.
    extra = get(values, "gateway.extraConfig") or {}
    snippets = [extra] if isinstance(extra, str) else [extra[k] for k in sorted(extra)]
    # One file in the chart: the snippets share their names.
    scope = {"c": c}
    for snippet in snippets:
        exec(compile(snippet, "gateway.extraConfig", "exec"), scope)
    return c


class GatewayUser:
    def __init__(self, name):
        self.name = name
        self.groups = set()
        self.admin = False


async def gateway(request):
    from dask_gateway_server.backends.kubernetes.backend import KubeBackend
    from dask_gateway_server.backends.kubernetes.controller import KubeController
    from dask_gateway_server.utils import FrozenAttrDict

    namespace, release = request["namespace"], request["release"]
    config = gateway_config(request["values"], namespace, release)
    backend = KubeBackend(config=config)
    controller = KubeController(config=config)
    user = GatewayUser(request["user"])
    out = []
    for options in request["options"]:
        try:
            _, cluster_config = await backend.process_cluster_options(user, options)
        except Exception as error:  # the gateway's own refusal, as the user would see it
            out.append({"options": options, "error": str(error)})
            continue
        for field, value in (request.get("overrides") or {}).items():
            setattr(cluster_config, field, value)
        cluster = backend.make_cluster_object(user.name, options, cluster_config)
        name = cluster["metadata"]["name"]
        frozen = FrozenAttrDict(cluster["spec"]["config"])
        pods = {}
        for role, is_worker in [("scheduler", False), ("worker", True)]:
            pod = controller.make_pod(frozen.namespace, name, frozen, is_worker=is_worker)
            pod["metadata"]["namespace"] = frozen.namespace
            pods[role] = pod
        # The cluster's credentials (a TLS key pair for this cluster, the scheduler API's
        # token) and its scheduler's headless Service, as the controller creates them.
        pods["secret"] = controller.make_secret(name)
        pods["service"] = controller.make_service(name)
        out.append({"options": options, **pods})
    return out


def kubecluster(request):
    from dask_kubernetes.operator.kubecluster.kubecluster import make_cluster_spec

    return make_cluster_spec(
        name=request["name"],
        image=request["image"],
        # KubeCluster's own defaults (dask-kubernetes' kubernetes.yaml) where the request is silent.
        resources=request.get("resources", {}),
        env=request.get("env", {}),
        n_workers=request.get("n_workers", 0),
    )


class FakeApi:
    """A recording stand-in for the Kubernetes API the operator's handlers write to (a fake at
    a protocol boundary): every object they create is kept, in creation order."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.created = []

    def kind(self, name):
        api = self

        class Object:
            def __init__(self, data, namespace=None):
                self.raw = data
                self.namespace = namespace
                self.name = data["metadata"]["name"] if isinstance(data, dict) else data

            def __await__(self):
                async def ready():
                    return self

                return ready().__await__()

            async def exists(self):
                return False

            async def create(self):
                api.created.append(copy.deepcopy(self.raw))

            async def cluster(self):
                return Cluster(api.cluster)

        Object.__name__ = name
        return Object


class Cluster:
    def __init__(self, body):
        self.labels = body["metadata"].get("labels", {})


async def no_objects(*_args, **_kwargs):
    return
    yield


async def operator(request):
    import kopf
    import kr8s
    from dask_kubernetes.operator.controller import controller

    cluster = request["cluster"]
    meta = cluster["metadata"]
    meta.setdefault("uid", "00000000-0000-0000-0000-000000000001")
    api = FakeApi(cluster)
    controller.Deployment = api.kind("Deployment")
    controller.Service = api.kind("Service")
    controller.DaskWorkerGroup = api.kind("DaskWorkerGroup")
    controller.kr8s = type(
        "kr8s", (), {"NotFoundError": kr8s.NotFoundError,
                     "asyncio": type("asyncio", (), {"get": staticmethod(no_objects)})})
    # Outside kopf's event loop its handlers' implicit owner (the object handled) is unset:
    # name it, as kopf would.
    adopt = kopf.adopt
    handled = {"body": cluster}
    kopf.adopt = lambda objs, owner=None, **kw: adopt(objs, owner or handled["body"], **kw)
    logger = logging.getLogger("operator")
    await controller.daskcluster_create_components(
        spec=cluster["spec"], name=meta["name"], namespace=meta["namespace"],
        logger=logger, patch=kopf.Patch(), meta=kopf.Meta(cluster),
    )
    for group in [o for o in api.created if o["kind"] == "DaskWorkerGroup"]:
        group = copy.deepcopy(group)
        group["metadata"].update({"namespace": meta["namespace"], "uid": "00000000-0000-0000-0000-000000000002"})
        handled["body"] = group
        await controller.daskworkergroup_replica_update(
            name=group["metadata"]["name"], namespace=meta["namespace"],
            meta=kopf.Meta(group), spec=group["spec"],
            new=request.get("workers", 1), body=kopf.Body(group), logger=logger,
        )
    return api.created


async def main(request):
    if "gateway" in request:
        return await gateway(request["gateway"])
    if "kubecluster" in request:
        return kubecluster(request["kubecluster"])
    if "operator" in request:
        return await operator(request["operator"])
    raise SystemExit(f"unknown request: {sorted(request)}")


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.load(sys.stdin)))))
