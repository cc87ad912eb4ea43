"""The estate: which factories and workspaces pipemedic may act on, and how to reach them.

Read from one YAML file (``PIPEMEDIC_ESTATE_FILE``) into typed models. Anything an alert
names that is not here is outside the estate and is never acted on. Loading is strict, like
the simulator's world loader: an unknown or misspelled key, a missing one, or a reference to
a credential that is not defined is an error naming its place
(``estate.adf.factories.adf-prod: unknown key 'subscripton'``), because a typo in an estate
silently changes what pipemedic may touch.

Secrets are written ``env:NAME`` or ``file:/path`` so the file itself holds none; they are
read at load time into ``SecretStr`` and never logged. Credentials are named once and
referenced by name (several tenants and app registrations can live in one estate)::

    credentials:
      corp-sp:   {type: client_secret, tenant_id: ..., client_id: ..., client_secret: env:AZ_SECRET}
      corp-cert: {type: certificate, tenant_id: ..., client_id: ..., certificate_path: /x.pem,
                  password: env:P}                                  # password optional
      vm-mi:     {type: managed_identity, client_id: ...}           # client_id optional
      aks:       {type: workload_identity}                          # AKS env defaults
      any:       {type: default}                                    # DefaultAzureCredential
    adf:
      arm_url: https://management.azure.com
      factories: {adf-prod: {subscription_id: ..., resource_group: ..., credential: corp-sp}}
      dependencies: {adf-prod: {Copy_From_Bronze: [Load_To_Bronze]}}
      naming_convention_fallback: false
    databricks:
      workspaces:
        "1234567890": {host: https://adb-1.azuredatabricks.net, auth: pat, token: env:DBX_TOKEN}
        "2222": {host: ..., auth: oauth-m2m, client_id: ..., client_secret: env:DBX_SP_SECRET}
        "3333": {host: ..., auth: azure, credential: corp-sp}   # Entra ID token
        "4444":
          host: ...
          token: env:DBX_TOKEN_4
          sql_warehouse_id: 1a2b3c4d5e6f7a8b   # runs the DDL below (statement execution)
          tables:                              # a missing table pipemedic may create
            main.sales.orders: CREATE TABLE IF NOT EXISTS main.sales.orders (id BIGINT) USING DELTA
      library_fallbacks: {pandas: ["2.1.0", "2.0.3", "1.5.3"]}
      threads: 64
    playbooks:  # an action listed here calls the webhook instead of the platform API
      urls: {manual: https://prod-00.westeurope.logic.azure.com/...}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from streams.adapters.adf import ADFConfig, FactoryRef
from streams.adapters.credentials import CREDENTIAL_TYPES, CredentialSpec, SecretRef
from streams.adapters.playbook import PlaybookConfig
from streams.estate_notifications import NotificationsSection
from streams.policy.rollout import tags_of
from streams.policy.tables import ddl_problem


class EstateError(ValueError):
    pass


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FactoryEntry(_Section):
    subscription_id: str
    resource_group: str
    credential: str  # a name under ``credentials:``
    tags: dict[str, str | int | bool] = {}  # e.g. env: prod, for the rollout table's scopes


class AdfSection(_Section):
    arm_url: str = "https://management.azure.com"
    factories: dict[str, FactoryEntry] = {}
    dependencies: dict[str, dict[str, list[str]]] = {}
    naming_convention_fallback: bool = False


_NEEDS: Mapping[str, tuple[str, ...]] = {
    "pat": ("token",),
    "oauth-m2m": ("client_id", "client_secret"),
    "azure": ("credential",),
}


class DatabricksWorkspace(_Section):
    """How to reach one workspace: a PAT, a Databricks service principal (OAuth M2M), or an
    Entra ID token from a named credential (``azure``)."""

    host: str
    auth: Literal["pat", "oauth-m2m", "azure"] = "pat"
    token: SecretRef | None = None
    client_id: str | None = None
    client_secret: SecretRef | None = None
    credential: str | None = None
    tags: dict[str, str | int | bool] = {}  # e.g. env: prod, for the rollout table's scopes
    # the SQL warehouse that runs ``tables``' DDL, and catalog.schema.table -> its DDL: one
    # CREATE TABLE IF NOT EXISTS of that table (streams/policy/tables.py), run with approval
    sql_warehouse_id: str | None = None
    tables: dict[str, str] = {}

    @model_validator(mode="after")
    def _tables_runnable(self) -> DatabricksWorkspace:
        if self.tables and not self.sql_warehouse_id:
            raise ValueError("tables need sql_warehouse_id (the warehouse that runs their DDL)")
        problems = [
            f"tables.{name}: {problem}"
            for name, ddl in self.tables.items()
            if (problem := ddl_problem(name, ddl))
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _fields_of_its_auth(self) -> DatabricksWorkspace:
        missing = [name for name in _NEEDS[self.auth] if getattr(self, name) in (None, "")]
        if missing:
            raise ValueError(f"auth {self.auth} needs {', '.join(missing)}")
        others = {name for needs in _NEEDS.values() for name in needs} - set(_NEEDS[self.auth])
        stray = sorted(name for name in others if getattr(self, name) is not None)
        if stray:
            raise ValueError(f"auth {self.auth} takes no {', '.join(stray)}")
        return self


class DatabricksSection(_Section):
    workspaces: dict[str, DatabricksWorkspace] = {}
    library_fallbacks: dict[str, list[str]] = {}
    threads: int = 64  # calls in flight at once, over all workspaces
    timeout_s: float = 30.0  # set from PIPEMEDIC_HTTP_TIMEOUT_S, not the file


class PlaybooksSection(_Section):
    urls: dict[str, str] = {}


class EstateFile(_Section):
    credentials: dict[str, CredentialSpec] = {}
    adf: AdfSection = AdfSection()
    databricks: DatabricksSection = DatabricksSection()
    playbooks: PlaybooksSection = PlaybooksSection()
    notifications: NotificationsSection = NotificationsSection()  # streams/estate_notifications.py

    @model_validator(mode="before")
    @classmethod
    def _moved_sections(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "azure_ad" in data:
            raise ValueError(
                "the azure_ad section moved to credentials: name it there (e.g. "
                "credentials: {corp-sp: {type: client_secret, tenant_id, client_id, "
                "client_secret}}) and give each factory credential: corp-sp"
            )
        return data

    @model_validator(mode="after")
    def _credentials_exist(self) -> EstateFile:
        defined = ", ".join(self.credentials) or "none"
        users = [
            (f"adf.factories.{name}", ref.credential) for name, ref in self.adf.factories.items()
        ] + [
            (f"databricks.workspaces.{ws}", ref.credential)
            for ws, ref in self.databricks.workspaces.items()
            if ref.credential is not None
        ]
        for where, name in users:
            if name not in self.credentials:
                raise ValueError(
                    f"{where} names credential {name!r}, which is not defined under "
                    f"credentials (defined: {defined})"
                )
        return self


@dataclass(frozen=True)
class Estate:
    credentials: Mapping[str, CredentialSpec] = field(default_factory=dict)
    adf: ADFConfig = field(default_factory=lambda: ADFConfig(factories={}))
    databricks: DatabricksSection = field(default_factory=DatabricksSection)
    playbooks: PlaybookConfig = field(default_factory=lambda: PlaybookConfig(urls={}))
    dependencies: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)
    naming_convention_fallback: bool = False
    library_fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notifications: NotificationsSection = field(default_factory=NotificationsSection)
    # factory name (lower-cased) or workspace id -> its tags, as text
    tags: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


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
    try:
        parsed = EstateFile.model_validate(data)
    except ValidationError as exc:
        raise EstateError(_explain(exc)) from None
    adf, dbx = parsed.adf, parsed.databricks
    return Estate(
        credentials=parsed.credentials,
        adf=ADFConfig(
            factories={  # ARM names are case-insensitive; alerts carry them lower-cased
                name.lower(): FactoryRef(ref.subscription_id, ref.resource_group, ref.credential)
                for name, ref in adf.factories.items()
            },
            arm_url=adf.arm_url,
            timeout_s=timeout_s,
        ),
        databricks=dbx.model_copy(update={"timeout_s": timeout_s}),
        playbooks=PlaybookConfig(urls=dict(parsed.playbooks.urls), timeout_s=timeout_s),
        dependencies={
            factory.lower(): {pipe: tuple(ups) for pipe, ups in deps.items()}
            for factory, deps in adf.dependencies.items()
        },
        naming_convention_fallback=adf.naming_convention_fallback,
        library_fallbacks={
            name.lower(): tuple(str(v) for v in versions)
            for name, versions in dbx.library_fallbacks.items()
        },
        notifications=parsed.notifications,
        tags=tags_of(
            {
                **{name: ref.tags for name, ref in adf.factories.items() if ref.tags},
                **{ws: ref.tags for ws, ref in dbx.workspaces.items() if ref.tags},
            }
        ),
    )


def _explain(exc: ValidationError) -> str:
    """pydantic's errors as ``estate.<place>: <what is wrong>``, one a line."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in error["loc"]]
        # a credential's errors carry its type tag after its name: not a place in the file
        if len(loc) >= 3 and loc[0] == "credentials" and loc[2] in CREDENTIAL_TYPES:
            del loc[2]
        kind = error["type"]
        if kind == "extra_forbidden":
            where, what = loc[:-1], f"unknown key {loc[-1]!r}"
        elif kind == "missing":
            where, what = loc[:-1], f"missing required key {loc[-1]!r}"
        elif kind in ("union_tag_not_found", "union_tag_invalid"):
            tag = (error.get("ctx") or {}).get("tag")
            said = f"type {tag!r} is unknown" if tag else "missing required key 'type'"
            where, what = loc, f"{said}; one of {', '.join(CREDENTIAL_TYPES)}"
        else:
            where, what = loc, error["msg"].removeprefix("Value error, ")
        lines.append(f"{'.'.join(['estate', *where])}: {what}")
    return "\n".join(dict.fromkeys(lines))
