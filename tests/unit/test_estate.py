"""The estate file: typed, strict, and every mistake named by its place."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from streams.adapters.credentials import ClientSecretSpec, ManagedIdentitySpec
from streams.estate import EstateError, parse_estate

GOOD: dict[str, Any] = {
    "credentials": {
        "corp-sp": {
            "type": "client_secret",
            "tenant_id": "t1",
            "client_id": "c1",
            "client_secret": "env:AZ_SECRET",
            "authority": "https://login.microsoftonline.com",
        },
        "corp-cert": {
            "type": "certificate",
            "tenant_id": "t2",
            "client_id": "c2",
            "certificate_path": "/x.pem",
            "password": "env:CERT_PASSWORD",
        },
        "vm-mi": {"type": "managed_identity", "client_id": "uami"},
        "aks": {"type": "workload_identity", "token_file": "/var/run/secrets/token"},
        "any": {"type": "default"},
    },
    "adf": {
        "arm_url": "https://management.azure.com",
        "factories": {
            "ADF-Prod": {"subscription_id": "s1", "resource_group": "rg", "credential": "corp-sp"},
            "adf-other": {"subscription_id": "s2", "resource_group": "rg", "credential": "vm-mi"},
        },
        "dependencies": {"ADF-Prod": {"Copy": ["Load"]}},
        "naming_convention_fallback": True,
    },
    "databricks": {
        "workspaces": {
            "1234567890": {"host": "https://adb-1.net", "auth": "pat", "token": "env:DBX_TOKEN"},
            "2222": {
                "host": "https://adb-2.net",
                "auth": "oauth-m2m",
                "client_id": "sp",
                "client_secret": "file:{secret_file}",
            },
            "3333": {"host": "https://adb-3.net", "auth": "azure", "credential": "corp-sp"},
        },
        "library_fallbacks": {"Pandas": ["2.1.0", "2.0.3"]},
        "threads": 8,
    },
    "playbooks": {"urls": {"manual": "https://hooks.example/manual"}},
}


@pytest.fixture
def good(tmp_path, monkeypatch) -> dict[str, Any]:
    monkeypatch.setenv("AZ_SECRET", "az-secret-value")
    monkeypatch.setenv("CERT_PASSWORD", "pw")
    monkeypatch.setenv("DBX_TOKEN", "dapi-value")
    (tmp_path / "sp").write_text("sp-secret-value\n")
    data = copy.deepcopy(GOOD)
    workspace = data["databricks"]["workspaces"]["2222"]
    workspace["client_secret"] = f"file:{tmp_path / 'sp'}"
    return data


def test_a_full_estate_parses(good) -> None:
    estate = parse_estate(good, timeout_s=7)
    sp = estate.credentials["corp-sp"]
    assert isinstance(sp, ClientSecretSpec)
    assert sp.client_secret.get_secret_value() == "az-secret-value"
    assert isinstance(estate.credentials["vm-mi"], ManagedIdentitySpec)
    factory = estate.adf.factories["adf-prod"]  # lower-cased, as alerts carry it
    assert (factory.subscription_id, factory.credential) == ("s1", "corp-sp")
    assert estate.adf.timeout_s == 7
    workspaces = estate.databricks.workspaces
    assert workspaces["1234567890"].token.get_secret_value() == "dapi-value"
    assert workspaces["2222"].client_secret.get_secret_value() == "sp-secret-value"
    assert (workspaces["3333"].auth, workspaces["3333"].credential) == ("azure", "corp-sp")
    assert (estate.databricks.threads, estate.databricks.timeout_s) == (8, 7)
    assert estate.dependencies == {"adf-prod": {"Copy": ("Load",)}}
    assert estate.library_fallbacks == {"pandas": ("2.1.0", "2.0.3")}
    assert estate.naming_convention_fallback is True
    assert estate.playbooks.urls == {"manual": "https://hooks.example/manual"}


def test_secrets_are_never_shown(good) -> None:
    estate = parse_estate(good)
    shown = repr(estate) + str(estate)
    for secret in ("az-secret-value", "dapi-value", "sp-secret-value", "pw"):
        assert f"'{secret}'" not in shown


def _with(good: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    node = good
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return good


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "adf.factories.ADF-Prod.subscripton",
            "s1",
            "estate.adf.factories.ADF-Prod: unknown key 'subscripton'",
        ),
        ("adf.arm_ur", "x", "estate.adf: unknown key 'arm_ur'"),
        ("credentails", {}, "estate: unknown key 'credentails'"),
        (
            "credentials.corp-sp.tenant",
            "t",
            "estate.credentials.corp-sp: unknown key 'tenant'",
        ),
        (
            "credentials.corp-sp.client_id",
            _DELETE,
            "estate.credentials.corp-sp: missing required key 'client_id'",
        ),
        ("credentials.vm-mi.type", "msi", "estate.credentials.vm-mi"),
        (
            "credentials.corp-sp.client_secret",
            "env:NOT_SET_ANYWHERE",
            "estate.credentials.corp-sp.client_secret: environment variable NOT_SET_ANYWHERE "
            "is not set",
        ),
        (
            "credentials.corp-cert.password",
            "file:/no/such/file",
            "estate.credentials.corp-cert.password: cannot read secret file /no/such/file",
        ),
        (
            "adf.factories.ADF-Prod.credential",
            "corp-spx",
            "adf.factories.ADF-Prod names credential 'corp-spx', which is not defined under "
            "credentials (defined: corp-sp, corp-cert, vm-mi, aks, any)",
        ),
        (
            "databricks.workspaces.3333.credential",
            "nope",
            "databricks.workspaces.3333 names credential 'nope'",
        ),
        (
            "databricks.workspaces.1234567890.token",
            _DELETE,
            "estate.databricks.workspaces.1234567890: auth pat needs token",
        ),
        (
            "databricks.workspaces.2222.token",
            "dapi-x",
            "estate.databricks.workspaces.2222: auth oauth-m2m takes no token",
        ),
        (
            "databricks.workspaces.3333.auth",
            "azure-msi",
            "estate.databricks.workspaces.3333.auth",
        ),
        ("databricks.threads", "many", "estate.databricks.threads"),
    ],
)
def test_mistakes_are_named_by_their_place(good, path: str, value: Any, message: str) -> None:
    with pytest.raises(EstateError) as caught:
        parse_estate(_with(good, path, value))
    assert message in str(caught.value)


def test_the_old_azure_ad_section_says_where_it_went(good) -> None:
    good["azure_ad"] = {"tenant_id": "t", "client_id": "c", "client_secret": "s"}
    with pytest.raises(EstateError) as caught:
        parse_estate(good)
    assert "azure_ad section moved to credentials" in str(caught.value)


def test_an_empty_estate_is_fine() -> None:
    estate = parse_estate({})
    assert not estate.adf.factories and not estate.databricks.workspaces and not estate.credentials


def test_tags_of_factories_and_workspaces_scope_the_rollout(good) -> None:
    good["adf"]["factories"]["ADF-Prod"]["tags"] = {"env": "prod", "tier": 1}
    good["databricks"]["workspaces"]["2222"]["tags"] = {"env": "dev", "pii": True}
    estate = parse_estate(good)
    # factory names as alerts carry them (lower-cased); values compared as text
    assert estate.tags == {
        "adf-prod": {"env": "prod", "tier": "1"},
        "2222": {"env": "dev", "pii": "true"},
    }
    good["adf"]["factories"]["adf-other"]["tags"] = ["prod"]
    with pytest.raises(EstateError, match="estate.adf.factories.adf-other.tags"):
        parse_estate(good)
