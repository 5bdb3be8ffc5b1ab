"""User pods as the real KubeSpawner builds them from the secured hub's values.

Reads JSON on stdin: {"values": <the layered values' `jupyterhub` part>, "namespace": NS,
"release": NAME, "servers": [[user, server], ...]} and prints a JSON list of
{"user", "server", "pvc_name", "pod", "pvc"}: each pod as KubeSpawner's own get_pod_manifest()
makes it, in the API's JSON form, and the home claim its get_pvc_manifest() makes (where the
hub makes claims). Or {"names": [[pvc_name_template, user, server], ...]}: the claim
and the username and servername labels KubeSpawner makes for each.

KubeSpawner is upstream's, pinned in requirements.txt. How z2jh's hub turns the chart's values
into KubeSpawner settings (its files/hub/jupyterhub_config.py ships inside the chart, not on
PyPI) is modelled below for the keys these values use, over z2jh's own defaults; checked by
hand against z2jh 4.4.0's jupyterhub_config.py and values.yaml. Nothing here talks to a
cluster: KubeSpawner reads a kubeconfig when made, so the caller gives it one naming a loopback
address it never contacts.
"""

import asyncio
import json
import sys
import types

from kubernetes_asyncio.client import ApiClient
from traitlets.config import Config

from kubespawner import KubeSpawner

from chart_values import get

# z2jh 4.4.0's values.yaml, for the keys read below that the project's values leave unset.
Z2JH_DEFAULTS = {
    "singleuser": {
        "extraLabels": {"hub.jupyter.org/network-access-hub": "true"},
        "uid": 1000,
        "fsGid": 100,
        "cmd": "jupyterhub-singleuser",
        "storage": {"type": "dynamic", "capacity": "10Gi", "homeMountPath": "/home/jovyan",
                    "dynamic": {"pvcNameTemplate": None, "volumeNameTemplate": "volume-{user_server}",
                                "storageAccessModes": ["ReadWriteOnce"]}},
        "cloudMetadata": {"blockWithIptables": True, "ip": "169.254.169.254"},
        "startTimeout": 300,
    },
    "scheduling": {
        "userScheduler": {"enabled": True},
        "podPriority": {"enabled": False},
        "userPods": {
            "tolerations": [
                {"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule"},
                {"key": "hub.jupyter.org_dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule"},
            ],
            "nodeAffinity": {"matchNodePurpose": "prefer"},
        },
    },
}


def merged(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = merged(base.get(key), value) if key in base else value
        return out
    return over


def configure(values, namespace, release):
    """What z2jh's jupyterhub_config.py sets on KubeSpawner for these values."""
    v = merged(Z2JH_DEFAULTS, values)
    c = Config()
    k = c.KubeSpawner
    k.namespace = namespace
    k.common_labels = {
        "app.kubernetes.io/name": "jupyterhub", "app": "jupyterhub",
        "app.kubernetes.io/instance": release, "release": release,
        "helm.sh/chart": "jupyterhub-4.4.0", "chart": "jupyterhub-4.4.0",
        "app.kubernetes.io/managed-by": "kubespawner",
    }
    for trait, key in [
        ("extra_labels", "extraLabels"), ("uid", "uid"), ("fs_gid", "fsGid"),
        ("service_account", "serviceAccountName"), ("mem_limit", "memory.limit"),
        ("mem_guarantee", "memory.guarantee"), ("cpu_limit", "cpu.limit"),
        ("cpu_guarantee", "cpu.guarantee"), ("environment", "extraEnv"),
        ("extra_pod_config", "extraPodConfig"), ("start_timeout", "startTimeout"),
        ("profile_list", "profileList"), ("lifecycle_hooks", "lifecycleHooks"),
        ("init_containers", "initContainers"), ("extra_containers", "extraContainers"),
        ("node_selector", "nodeSelector"),
    ]:
        value = get(v, "singleuser." + key)
        if value is not None:
            setattr(k, trait, value)
    image = get(v, "singleuser.image.name")
    if image:
        tag = get(v, "singleuser.image.tag")
        k.image = f"{image}:{tag}" if tag else image
    k.allow_privilege_escalation = get(v, "singleuser.allowPrivilegeEscalation")
    if get(v, "scheduling.userScheduler.enabled"):
        k.scheduler_name = f"user-scheduler"
    if get(v, "scheduling.podPriority.enabled"):
        k.priority_class_name = "priority"
    if get(v, "scheduling.userPods.nodeAffinity.matchNodePurpose") == "prefer":
        k.node_affinity_preferred = [{"weight": 100, "preference": {"matchExpressions": [
            {"key": "hub.jupyter.org/node-purpose", "operator": "In", "values": ["user"]}]}}]
    tolerations = get(v, "scheduling.userPods.tolerations", []) + get(v, "singleuser.extraTolerations", [])
    if tolerations:
        k.tolerations = tolerations
    volumes, mounts = {}, {}
    if get(v, "singleuser.storage.type") == "dynamic":
        template = get(v, "singleuser.storage.dynamic.pvcNameTemplate")
        if template:
            k.pvc_name_template = template
        volume_name = get(v, "singleuser.storage.dynamic.volumeNameTemplate")
        k.storage_pvc_ensure = True
        k.storage_capacity = get(v, "singleuser.storage.capacity")
        volumes[volume_name] = {"name": volume_name, "persistentVolumeClaim": {"claimName": "{pvc_name}"}}
        mounts[volume_name] = {"mountPath": get(v, "singleuser.storage.homeMountPath"), "name": volume_name}
    for volume in get(v, "singleuser.storage.extraVolumes", []):
        volumes[volume["name"]] = volume
    for i, mount in enumerate(get(v, "singleuser.storage.extraVolumeMounts", [])):
        mounts[f"{i}-{mount['name']}"] = mount
    k.volumes = volumes
    k.volume_mounts = mounts
    if get(v, "singleuser.cloudMetadata.blockWithIptables"):
        ip = get(v, "singleuser.cloudMetadata.ip")
        k.init_containers = [{
            "name": "block-cloud-metadata", "image": "quay.io/jupyterhub/k8s-network-tools:4.4.0",
            "command": ["iptables", "--append", "OUTPUT", "--protocol", "tcp", "--destination", ip,
                        "--destination-port", "80", "--jump", "DROP"],
            "securityContext": {"runAsUser": 0, "privileged": False,
                                "capabilities": {"add": ["NET_ADMIN"]}},
        }] + list(get(v, "singleuser.initContainers", []))
    c.Spawner.cmd = get(v, "singleuser.cmd")
    if get(v, "singleuser.defaultUrl"):
        c.Spawner.default_url = get(v, "singleuser.defaultUrl")
    # hub.config passes through as traitlets configuration, after everything above.
    for section, settings in (get(v, "hub.config") or {}).items():
        c[section].update(settings)
    return c


class User:
    def __init__(self, name):
        self.name = name
        self.id = 1
        self.url = f"/user/{name}/"


async def names(request):
    """[[template, user, server], ...] -> [[claim, username label, servername label], ...]."""
    out = []
    for template, user, server in request["names"]:
        config = Config()
        config.KubeSpawner.pvc_name_template = template
        spawner = KubeSpawner(
            config=config,
            user=User(user),
            orm_spawner=types.SimpleNamespace(name=server, server=None),
            _mock=True,
        )
        labels = spawner._build_pod_labels({})
        out.append([
            spawner.pvc_name,
            labels["hub.jupyter.org/username"],
            labels["hub.jupyter.org/servername"],
        ])
    return out


async def build(request):
    if "names" in request:
        return await names(request)
    config = configure(request["values"], request["namespace"], request["release"])
    out = []
    api = ApiClient()
    for user, server in request["servers"]:
        spawner = KubeSpawner(
            config=config,
            user=User(user),
            orm_spawner=types.SimpleNamespace(name=server, server=None),
            _mock=True,
        )
        pod = await spawner.get_pod_manifest()
        manifest = api.sanitize_for_serialization(pod)
        manifest.setdefault("apiVersion", "v1")
        manifest.setdefault("kind", "Pod")
        manifest["metadata"]["namespace"] = request["namespace"]
        entry = {"user": user, "server": server, "pvc_name": spawner.pvc_name, "pod": manifest}
        if spawner.storage_pvc_ensure:
            claim = api.sanitize_for_serialization(spawner.get_pvc_manifest())
            claim.update({"apiVersion": "v1", "kind": "PersistentVolumeClaim"})
            claim["metadata"]["namespace"] = request["namespace"]
            entry["pvc"] = claim
        out.append(entry)
    await api.close()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(build(json.load(sys.stdin)))))
