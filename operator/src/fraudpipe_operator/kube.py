"""A small async Kubernetes client for what kopf does not do: server-side apply of children,
create-if-absent, reads, and API discovery. It uses the credentials kopf logged in with."""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from pathlib import Path
from typing import Any

import httpx
import kopf

from fraudpipe_operator.builders.common import FIELD_MANAGER

# kind -> (API path prefix, plural) of every kind the operator creates or reads.
RESOURCES: dict[str, tuple[str, str]] = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "StatefulSet": ("/apis/apps/v1", "statefulsets"),
    "Job": ("/apis/batch/v1", "jobs"),
    "CronJob": ("/apis/batch/v1", "cronjobs"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "ServiceMonitor": ("/apis/monitoring.coreos.com/v1", "servicemonitors"),
    "PrometheusRule": ("/apis/monitoring.coreos.com/v1", "prometheusrules"),
    # Read by the canary driver: its own resource (fresh status) and the scorer pods.
    "FraudPipeline": ("/apis/fraudpipe.io/v1alpha1", "fraudpipelines"),
    "Pod": ("/api/v1", "pods"),
    "ScaledObject": ("/apis/keda.sh/v1alpha1", "scaledobjects"),
    "TriggerAuthentication": ("/apis/keda.sh/v1alpha1", "triggerauthentications"),
}


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def path_of(kind: str, namespace: str, name: str | None = None) -> str:
    prefix, plural = RESOURCES[kind]
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def _ssl_context(info: kopf.ConnectionInfo, scratch: Path) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context()
    if info.ca_path:
        context.load_verify_locations(cafile=str(info.ca_path))
    elif info.ca_data:
        data = info.ca_data if isinstance(info.ca_data, bytes) else info.ca_data.encode()
        context.load_verify_locations(cadata=base64.b64decode(data).decode())
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:
        cert, key = scratch / "client.crt", scratch / "client.key"
        for target, raw in ((cert, info.certificate_data), (key, info.private_key_data)):
            encoded = raw if isinstance(raw, bytes) else raw.encode()
            target.write_bytes(base64.b64decode(encoded))
            target.chmod(0o600)
    if cert and key:
        context.load_cert_chain(str(cert), str(key))
    return context


class Kube:
    def __init__(self, info: kopf.ConnectionInfo) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="fraudpipe-operator-")
        headers = {"Accept": "application/json"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        self._client = httpx.AsyncClient(
            base_url=info.server,
            headers=headers,
            verify=_ssl_context(info, Path(self._scratch.name)),
            timeout=httpx.Timeout(30.0),
        )

    async def close(self) -> None:
        await self._client.aclose()
        self._scratch.cleanup()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._client.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise KubeError(response.status_code, f"{method} {path}: {message}")
        return response

    async def apply(
        self, obj: dict[str, Any], field_manager: str = FIELD_MANAGER
    ) -> dict[str, Any]:
        """Server-side apply: `field_manager` owns exactly the fields it sets."""
        meta = obj["metadata"]
        response = await self._request(
            "PATCH",
            path_of(obj["kind"], meta["namespace"], meta["name"]),
            params={"fieldManager": field_manager, "force": "true"},
            content=json.dumps(obj),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        result: dict[str, Any] = response.json()
        return result

    async def create_if_absent(self, obj: dict[str, Any]) -> bool:
        """Create `obj` unless it exists; an existing object is never touched. True if created."""
        meta = obj["metadata"]
        try:
            await self._request(
                "POST",
                path_of(obj["kind"], meta["namespace"]),
                params={"fieldManager": FIELD_MANAGER},
                json=obj,
            )
        except KubeError as error:
            if error.status == 409:
                return False
            raise
        return True

    async def patch_status(
        self,
        group_version: str,
        plural: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> None:
        """Merge-patch the status subresource of a custom resource. With `resource_version`,
        only if the object is still that version (else KubeError 409: read it again)."""
        patch: dict[str, Any] = {"status": status}
        if resource_version is not None:
            patch["metadata"] = {"resourceVersion": resource_version}
        await self._request(
            "PATCH",
            f"/apis/{group_version}/namespaces/{namespace}/{plural}/{name}/status",
            params={"fieldManager": FIELD_MANAGER},
            content=json.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        )

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = await self._request("GET", path_of(kind, namespace, name))
        except KubeError as error:
            if error.status == 404:
                return None
            raise
        result: dict[str, Any] = response.json()
        return result

    async def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Objects of `kind` matching a label selector."""
        response = await self._request(
            "GET", path_of(kind, namespace), params={"labelSelector": selector}
        )
        items: list[dict[str, Any]] = response.json().get("items", [])
        return items

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete one object; False if it was not there."""
        try:
            await self._request("DELETE", path_of(kind, namespace, name))
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    async def serves(self, group_version: str, plural: str) -> bool:
        """Whether the API server serves `plural` in `group_version` (e.g. a CRD installed)."""
        try:
            response = await self._request("GET", f"/apis/{group_version}")
        except KubeError as error:
            if error.status in (404, 503):
                return False
            raise
        return any(r.get("name") == plural for r in response.json().get("resources", []))
