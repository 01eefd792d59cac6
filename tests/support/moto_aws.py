"""moto's server, with the few AWS APIs that `terraform apply` of terraform/ needs and moto lacks.

Written against moto[server]==5.2.5 (the version pyproject.toml pins) and the hashicorp/aws
provider 5.100.0. Every patch below names the gap it fills; after a moto upgrade, run
tests/e2e/test_terraform_apply.py with SKIFF_MOTO_PATCHES=0 to see which gaps remain, and drop the
patches moto now covers itself (a patch would silently replace moto's own implementation).

Run as its own process, never imported into the test process: moto reads MOTO_AMIS_PATH when
moto.ec2 is first imported, and the patches change moto's classes for the whole interpreter.

    python -m tests.support.moto_aws --port PORT --data-dir DIR     # binds 127.0.0.1 only

The patches fill gaps; they do not make moto lenient. Where real AWS would answer differently
from moto (and terraform would then see a diff that AWS would not cause), the patch makes moto
answer as AWS does, nothing more.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.services import AWS_TEST_ENV, free_port, stop_process, wait_for_port

REPO = Path(__file__).resolve().parents[2]
MOTO_VERSION = "5.2.5"

# data "aws_ami" "ubuntu" in nomad-servers and gpu-clients looks up Canonical's (owner
# 099720109477) newest Ubuntu 22.04 image; moto 5.2.5 ships only older Canonical images.
UBUNTU_JAMMY = {
    "ami_id": "ami-0c7217cdde317cfec",
    "state": "available",
    "public": True,
    "owner_id": "099720109477",
    "image_location": "amazon/ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240301",
    "sriov": "simple",
    "root_device_type": "ebs",
    "root_device_name": "/dev/sda1",
    "description": "Canonical, Ubuntu, 22.04 LTS, amd64 jammy image",
    "image_type": "machine",
    "platform": None,
    "architecture": "x86_64",
    "name": "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240301",
    "virtualization_type": "hvm",
    "hypervisor": "xen",
    "creation_date": "2024-03-01T00:00:00.000Z",
}


def write_amis(data_dir: Path) -> Path:
    """moto's own image list plus UBUNTU_JAMMY, as a file for MOTO_AMIS_PATH."""
    spec = importlib.util.find_spec("moto")
    if spec is None or spec.origin is None:
        raise RuntimeError("moto is not installed (pip install -e '.[test]')")
    stock = Path(spec.origin).parent / "ec2" / "resources" / "amis.json.gz"
    images = json.loads(gzip.decompress(stock.read_bytes()))
    images.append(UBUNTU_JAMMY)
    path = data_dir / "amis.json"
    path.write_text(json.dumps(images))
    return path


# --- the patches (imported only in the server process) ------------------------------------------
def _patch_elasticache() -> None:
    from moto.core.responses import ActionResult, EmptyResult
    from moto.elasticache import models
    from moto.elasticache.exceptions import ElastiCacheException
    from moto.elasticache.responses import ElastiCacheResponse

    class CacheParameterGroupNotFound(ElastiCacheException):
        code = "CacheParameterGroupNotFound"

        def __init__(self, name: str) -> None:
            super().__init__(f"CacheParameterGroup {name} not found.")

    class CacheParameterGroupAlreadyExists(ElastiCacheException):
        code = "CacheParameterGroupAlreadyExists"

        def __init__(self, name: str) -> None:
            super().__init__(f"Parameter group {name} already exists.")

    class ParameterGroup:
        """Attributes named after the API's CacheParameterGroup shape, which moto serialises."""

        def __init__(self, backend: Any, name: str, family: str, description: str) -> None:
            self.cache_parameter_group_name = name
            self.cache_parameter_group_family = family
            self.description = description
            self.is_global = False
            self.arn = f"arn:aws:elasticache:{backend.region_name}:{backend.account_id}:parametergroup:{name}"
            self.parameters: dict[str, str | None] = {}

    def groups(backend: Any) -> dict[str, ParameterGroup]:
        if not hasattr(backend, "skiff_parameter_groups"):
            backend.skiff_parameter_groups = {}
        return backend.skiff_parameter_groups

    def group(backend: Any, name: str) -> ParameterGroup:
        found = groups(backend)
        if name not in found and name.startswith("default."):  # AWS provides default.<family>
            family = name.removeprefix("default.")
            found[name] = ParameterGroup(backend, name, family, f"Default parameter group for {family}")
        if name not in found:
            raise CacheParameterGroupNotFound(name)
        return found[name]

    # Gap: moto 5.2.5 implements none of the Cache*ParameterGroup actions (HTTP 500, "not
    # implemented"); modules/redis creates one for maxmemory-policy.
    def create_cache_parameter_group(self: ElastiCacheResponse) -> ActionResult:
        backend = self.elasticache_backend
        name = self._get_param("CacheParameterGroupName")
        if name in groups(backend):
            raise CacheParameterGroupAlreadyExists(name)
        new = ParameterGroup(
            backend, name, self._get_param("CacheParameterGroupFamily"), self._get_param("Description")
        )
        groups(backend)[name] = new
        if tags := self._get_param("Tags", []):
            backend.tagging_service.tag_resource(new.arn, tags)
        return ActionResult({"CacheParameterGroup": new})

    def describe_cache_parameter_groups(self: ElastiCacheResponse) -> ActionResult:
        backend = self.elasticache_backend
        name = self._get_param("CacheParameterGroupName")
        found = [group(backend, name)] if name else list(groups(backend).values())
        return ActionResult({"CacheParameterGroups": found})

    def modify_cache_parameter_group(self: ElastiCacheResponse) -> ActionResult:
        name = self._get_param("CacheParameterGroupName")
        target = group(self.elasticache_backend, name)
        for item in self._get_param("ParameterNameValues", []):
            target.parameters[item["ParameterName"]] = item.get("ParameterValue")
        return ActionResult({"CacheParameterGroupName": name})

    def reset_cache_parameter_group(self: ElastiCacheResponse) -> ActionResult:
        name = self._get_param("CacheParameterGroupName")
        target = group(self.elasticache_backend, name)
        if self._get_bool_param("ResetAllParameters"):
            target.parameters.clear()
        for item in self._get_param("ParameterNameValues", []):
            target.parameters.pop(item["ParameterName"], None)
        return ActionResult({"CacheParameterGroupName": name})

    def describe_cache_parameters(self: ElastiCacheResponse) -> ActionResult:
        target = group(self.elasticache_backend, self._get_param("CacheParameterGroupName"))
        # Only the values set on the group ("Source": "user"): the provider compares those.
        parameters = [
            {
                "ParameterName": name,
                "ParameterValue": value,
                "Source": "user",
                "DataType": "string",
                "IsModifiable": True,
                "ChangeType": "immediate",
            }
            for name, value in target.parameters.items()
        ]
        return ActionResult({"Parameters": parameters, "CacheNodeTypeSpecificParameters": []})

    def delete_cache_parameter_group(self: ElastiCacheResponse) -> EmptyResult:
        name = self._get_param("CacheParameterGroupName")
        group(self.elasticache_backend, name)
        del groups(self.elasticache_backend)[name]
        return EmptyResult()

    # Gap: no DeleteCacheSubnetGroup (HTTP 500), so destroy cannot finish.
    def delete_cache_subnet_group(self: ElastiCacheResponse) -> EmptyResult:
        name = self._get_param("CacheSubnetGroupName")
        self.elasticache_backend.describe_cache_subnet_groups(cache_subnet_group_name=name)  # NotFound
        del self.elasticache_backend.cache_subnet_groups[name]
        return EmptyResult()

    for handler in (
        create_cache_parameter_group,
        describe_cache_parameter_groups,
        modify_cache_parameter_group,
        reset_cache_parameter_group,
        describe_cache_parameters,
        delete_cache_parameter_group,
        delete_cache_subnet_group,
    ):
        setattr(ElastiCacheResponse, handler.__name__, handler)

    # Gap: ListTagsForResource rejects parameter group ARNs as "InvalidARN".
    backend_init = models.ElastiCacheBackend.__init__

    def init(self: Any, region_name: str, account_id: str) -> None:
        backend_init(self, region_name, account_id)
        self.arn_regex = models.re_compile(
            r"^arn:aws:elasticache:.*:[0-9]*:"
            r"(cluster|snapshot|subnetgroup|replicationgroup|user|parametergroup):.*$"
        )

    models.ElastiCacheBackend.__init__ = init  # type: ignore[method-assign]

    create_group = models.ElastiCacheBackend.create_replication_group
    delete_group = models.ElastiCacheBackend.delete_replication_group

    def create_replication_group(self: Any, **kwargs: Any) -> Any:
        # Gap: without cluster mode moto ignores NumCacheClusters (always one node) and reads
        # only ReplicasPerNodeGroup; AWS makes NumCacheClusters nodes.
        count = kwargs.get("num_cache_clusters") or 1
        if kwargs.get("cluster_mode") in (None, "disabled") and not kwargs.get("replicas_per_node_group"):
            kwargs["replicas_per_node_group"] = count - 1
        created = create_group(self, **kwargs)
        # Gap: moto does not create the member cache clusters, and the provider reads the engine
        # version, parameter group and security groups back from the first of them.
        for node_group in created.node_groups:
            for member in node_group["node_group_members"]:
                self.cache_clusters[member["cache_cluster_id"]] = _member_cluster(models, self, created, member, kwargs)
        return created

    def delete_replication_group(self: Any, replication_group_id: str, retain_primary_cluster: bool | None) -> Any:
        # Gap: moto leaves the group "deleting" forever; the provider waits for it to be gone.
        deleted = delete_group(self, replication_group_id, retain_primary_cluster)
        self.replication_groups.pop(replication_group_id, None)
        for cluster_id, cluster in list(self.cache_clusters.items()):
            if getattr(cluster, "replication_group_id", None) == replication_group_id:
                del self.cache_clusters[cluster_id]
        return deleted

    models.ElastiCacheBackend.create_replication_group = create_replication_group  # type: ignore[method-assign]
    models.ElastiCacheBackend.delete_replication_group = delete_replication_group  # type: ignore[method-assign]


def _member_cluster(models: Any, backend: Any, group: Any, member: dict[str, Any], spec: dict[str, Any]) -> Any:
    cluster = models.CacheCluster(
        account_id=backend.account_id,
        region_name=backend.region_name,
        cache_cluster_id=member["cache_cluster_id"],
        cache_node_type=spec.get("cache_node_type"),
        replication_group_id=group.replication_group_id,
        az_mode=None,
        preferred_availability_zone=member.get("preferred_availability_zone"),
        num_cache_nodes=1,
        engine=spec.get("engine") or "redis",
        engine_version=spec.get("engine_version"),
        cache_parameter_group_name=spec.get("cache_parameter_group_name"),
        cache_subnet_group_name=spec.get("cache_subnet_group_name"),
        transit_encryption_enabled=spec.get("transit_encryption_enabled"),
        network_type=spec.get("network_type"),
        ip_discovery=spec.get("ip_discovery"),
        snapshot_name=None,
        preferred_maintenance_window=spec.get("preferred_maintenance_window") or "sun:05:00-sun:06:00",
        port=spec.get("port"),
        notification_topic_arn=spec.get("notification_topic_arn"),
        auto_minor_version_upgrade=spec.get("auto_minor_version_upgrade"),
        snapshot_retention_limit=spec.get("snapshot_retention_limit"),
        snapshot_window=spec.get("snapshot_window") or "05:00-06:00",
        auth_token=spec.get("auth_token"),
        outpost_mode=None,
        preferred_outpost_arn=None,
        preferred_availability_zones=None,
        cache_security_group_names=None,
        security_group_ids=spec.get("security_group_ids"),
        tags=None,
        snapshot_arns=None,
        preferred_outpost_arns=None,
        log_delivery_configurations=[],
        cache_node_ids_to_remove=None,
        cache_node_ids_to_reboot=None,
    )
    # Attributes named after the API's CacheCluster shape, which moto serialises.
    cluster.replication_group_id = group.replication_group_id
    cluster.at_rest_encryption_enabled = bool(spec.get("at_rest_encryption_enabled"))
    cluster.security_groups = [
        {"SecurityGroupId": sg, "Status": "active"} for sg in spec.get("security_group_ids") or []
    ]
    if spec.get("cache_parameter_group_name"):
        cluster.cache_parameter_group = {
            "CacheParameterGroupName": spec["cache_parameter_group_name"],
            "ParameterApplyStatus": "in-sync",
        }
    return cluster


def _patch_ec2() -> None:
    from moto.ec2.models import launch_templates, security_groups

    # Fidelity: DescribeSecurityGroupRules drops the description of a rule that references a
    # security group (AWS returns it), so every aws_vpc_security_group_ingress_rule with
    # referenced_security_group_id would show "+ description" on each plan.
    def description(self: Any) -> str | None:
        return self.ip_range.get("Description") or self.source_group.get("Description")

    security_groups.SecurityGroupRule.description = property(description)  # type: ignore[method-assign,assignment]

    # Fidelity: CreateLaunchTemplate's own TagSpecifications (resource type "launch-template",
    # the tags of the template itself) end up inside the template data, where AWS never puts
    # them; the provider would then see an extra tag_specifications block on every plan.
    create = launch_templates.LaunchTemplateBackend.create_launch_template

    def create_launch_template(
        self: Any, name: str, description: str, template_data: dict[str, Any], tag_spec: dict[str, Any]
    ) -> Any:
        specs = [s for s in template_data.get("TagSpecifications", []) if s.get("ResourceType") != "launch-template"]
        if specs:
            template_data["TagSpecifications"] = specs
        else:
            template_data.pop("TagSpecifications", None)
        return create(self, name, description, template_data, tag_spec)

    launch_templates.LaunchTemplateBackend.create_launch_template = create_launch_template  # type: ignore[method-assign]


def apply_patches() -> None:
    import moto

    if moto.__version__ != MOTO_VERSION:
        # Not fatal: the patches may still fit. The log says which version they were written for.
        print(f"moto_aws: written against moto {MOTO_VERSION}, running on {moto.__version__}", file=sys.stderr)
    _patch_elasticache()
    _patch_ec2()


def serve(port: int, data_dir: Path, patch: bool = True) -> None:
    # Both are read when moto's IAM and EC2 backends are first created or imported.
    # modules/iam attaches the AWS managed AmazonSSMManagedInstanceCore policy.
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    os.environ["MOTO_AMIS_PATH"] = str(write_amis(data_dir))
    if patch:
        apply_patches()
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    print(f"moto_aws listening on http://127.0.0.1:{port} (patches {'on' if patch else 'off'})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    serve(args.port, args.data_dir, patch=os.environ.get("SKIFF_MOTO_PATCHES", "1") != "0")


# --- the test side ------------------------------------------------------------------------------
@contextmanager
def moto_aws_server(data_dir: Path) -> Iterator[str]:
    """Start the patched server as a subprocess on a free 127.0.0.1 port; yield its URL. Its log
    is data_dir/moto.log (quoted by the tests when something fails)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (data_dir / "moto.log").open("wb")
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, **AWS_TEST_ENV, "PYTHONPATH": pythonpath}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.moto_aws", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc, "moto server (tests.support.moto_aws)", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)
        log.close()


if __name__ == "__main__":
    main()
