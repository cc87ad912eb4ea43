"""The estate: which factories and workspaces pipemedic may act on, and how to reach them.

Read from one YAML file (``PIPEMEDIC_ESTATE_FILE``). Anything an alert names that is not
here is outside the estate and is never acted on. Credentials may be written in the file or,
better, referenced as ``env:VARIABLE`` so the file itself holds no secret.

    azure_ad: {tenant_id: ..., client_id: ..., client_secret: env:AZURE_CLIENT_SECRET,
               authority_url: https://login.microsoftonline.com}
    adf:
      arm_url: https://management.azure.com
      factories: {adf-prod: {subscription_id: ..., resource_group: ...}}
      dependencies: {adf-prod: {Copy_From_Bronze: [Load_To_Bronze]}}
      naming_convention_fallback: false
    databricks:
      workspaces: {"1234567890": {host: https://adb-1234.azuredatabricks.net, token: env:DBX_TOKEN}}
      library_fallbacks: {pandas: ["2.1.0", "2.0.3", "1.5.3"]}
    playbooks:  # an action listed here calls the webhook instead of the platform API
      urls: {manual: https://prod-00.westeurope.logic.azure.com/...}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from streams.adapters.adf import ADFConfig, FactoryRef
from streams.adapters.azure_ad import AzureADConfig
from streams.adapters.databricks import DatabricksConfig, WorkspaceRef
from streams.adapters.playbook import PlaybookConfig


class EstateError(ValueError):
    pass


@dataclass(frozen=True)
class Estate:
    azure_ad: AzureADConfig | None = None
    adf: ADFConfig = field(default_factory=lambda: ADFConfig(factories={}))
    databricks: DatabricksConfig = field(default_factory=lambda: DatabricksConfig(workspaces={}))
    playbooks: PlaybookConfig = field(default_factory=lambda: PlaybookConfig(urls={}))
    dependencies: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    naming_convention_fallback: bool = False
    library_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def load_estate(path: Path | None, *, timeout_s: float = 20.0) -> Estate:
    if path is None:
        return Estate()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise EstateError(f"cannot read estate file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise EstateError(f"estate file {path} must hold a mapping")
    return parse_estate(data, timeout_s=timeout_s)


def parse_estate(data: Mapping[str, Any], *, timeout_s: float = 20.0) -> Estate:
    aad = data.get("azure_ad")
    adf = data.get("adf") or {}
    dbx = data.get("databricks") or {}
    books = data.get("playbooks") or {}
    return Estate(
        azure_ad=AzureADConfig(
            tenant_id=_text(aad, "tenant_id"),
            client_id=_text(aad, "client_id"),
            client_secret=SecretStr(_secret(aad.get("client_secret", ""))),
            **({"authority_url": aad["authority_url"]} if aad.get("authority_url") else {}),
        )
        if aad
        else None,
        adf=ADFConfig(
            factories={  # ARM names are case-insensitive; alerts carry them lower-cased
                name.lower(): FactoryRef(
                    _text(ref, "subscription_id"), _text(ref, "resource_group")
                )
                for name, ref in (adf.get("factories") or {}).items()
            },
            timeout_s=timeout_s,
            **({"arm_url": adf["arm_url"]} if adf.get("arm_url") else {}),
        ),
        databricks=DatabricksConfig(
            workspaces={
                str(ws): WorkspaceRef(
                    host=_text(ref, "host"), token=SecretStr(_secret(ref.get("token", "")))
                )
                for ws, ref in (dbx.get("workspaces") or {}).items()
            },
            timeout_s=timeout_s,
            **({"threads": int(dbx["threads"])} if dbx.get("threads") else {}),
        ),
        playbooks=PlaybookConfig(urls=dict(books.get("urls") or {}), timeout_s=timeout_s),
        dependencies={
            factory.lower(): {pipe: tuple(ups) for pipe, ups in (deps or {}).items()}
            for factory, deps in (adf.get("dependencies") or {}).items()
        },
        naming_convention_fallback=bool(adf.get("naming_convention_fallback", False)),
        library_fallbacks={
            name.lower(): tuple(str(v) for v in versions)
            for name, versions in (dbx.get("library_fallbacks") or {}).items()
        },
    )


def _text(section: Mapping[str, Any], key: str) -> str:
    value = section.get(key)
    if value in (None, ""):
        raise EstateError(f"estate: {key} is required")
    return str(value)


def _secret(value: Any) -> str:
    """``env:NAME`` reads the secret from the environment, so the file can stay secret-free."""
    text = str(value or "")
    if text.startswith("env:"):
        name = text[4:]
        if name not in os.environ:
            raise EstateError(f"estate: environment variable {name} is not set")
        return os.environ[name]
    return text
