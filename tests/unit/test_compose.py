"""docker-compose.kafka.yml, the Dockerfile and what they mount, checked without Docker."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())
SERVICES = COMPOSE["services"]
DATASOURCE = yaml.safe_load(
    (ROOT / "dashboards/provisioning/datasources/clickhouse.yaml").read_text()
)["datasources"][0]


def env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service]["environment"].items()}


def mounts(service: str) -> list[tuple[str, str]]:
    return [tuple(v.split(":")[:2]) for v in SERVICES[service].get("volumes", [])]


def test_services_and_images() -> None:
    assert set(SERVICES) == {"kafka", "clickhouse", "grafana", "topic-init", "worker", "prometheus"}
    images = {name: svc.get("image", "") for name, svc in SERVICES.items()}
    assert images["kafka"].startswith("apache/kafka:")
    assert images["clickhouse"].startswith("clickhouse/clickhouse-server:")
    assert images["grafana"].startswith("grafana/grafana:")
    assert images["prometheus"].startswith("prom/prometheus:v")
    for name in ("kafka", "clickhouse", "grafana", "prometheus"):
        assert ":latest" not in images[name] and images[name].count(":") == 1  # pinned
        assert re.search(r":v?\d+\.\d+", images[name]), images[name]
    # topic-init and the worker are the image this repository builds
    assert SERVICES["topic-init"]["build"] == SERVICES["worker"]["build"]
    assert images["topic-init"] == images["worker"]


def test_kafka_is_single_node_kraft() -> None:
    e = env("kafka")
    assert set(e["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert e["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{e['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in e["KAFKA_ADVERTISED_LISTENERS"]
    listeners = dict(item.split("://") for item in e["KAFKA_LISTENERS"].split(","))
    protocols = dict(
        item.split(":") for item in e["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) == set(protocols)
    assert e["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    for name in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
    ):
        assert e[name] == "1"
    assert "29092:29092" in SERVICES["kafka"]["ports"]


@pytest.mark.parametrize("service", ["kafka", "clickhouse", "grafana", "worker", "prometheus"])
def test_healthchecks(service: str) -> None:
    check = SERVICES[service]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] >= 3


def test_clickhouse_database_and_user() -> None:
    e = env("clickhouse")
    assert e["CLICKHOUSE_DB"] == "pipemedic"
    assert e["CLICKHOUSE_USER"] and e["CLICKHOUSE_PASSWORD"]
    assert "8123:8123" in SERVICES["clickhouse"]["ports"]
    assert "localhost:8123/ping" in " ".join(SERVICES["clickhouse"]["healthcheck"]["test"])


def test_worker_env_wiring() -> None:
    worker = SERVICES["worker"]
    assert worker["build"]["dockerfile"] == "Dockerfile"
    assert worker["command"] == ["pipemedic", "worker"]
    e = env("worker")
    assert e["PIPEMEDIC_BROKER_URL"] == "kafka://kafka:9092"
    assert e["PIPEMEDIC_CLICKHOUSE_URL"] == "http://clickhouse:8123"
    assert e["PIPEMEDIC_DATA_DIR"] == "/var/lib/pipemedic"
    assert e["PIPEMEDIC_MODE"] == "observe"
    assert e["PIPEMEDIC_ESTATE_FILE"] == "/etc/pipemedic/estate.yaml"
    # the worker writes as the user ClickHouse was created with
    ch = env("clickhouse")
    assert e["PIPEMEDIC_CLICKHOUSE_USER"] == ch["CLICKHOUSE_USER"]
    assert e["PIPEMEDIC_CLICKHOUSE_PASSWORD"] == ch["CLICKHOUSE_PASSWORD"]
    assert ("./deploy/estate.example.yaml", "/etc/pipemedic/estate.yaml") in mounts("worker")
    assert any(target == e["PIPEMEDIC_DATA_DIR"] for _, target in mounts("worker"))
    for dependency in ("kafka", "clickhouse"):
        assert worker["depends_on"][dependency]["condition"] == "service_healthy"
    # the topics exist, as planned, before the worker's Faust app would create its own
    assert worker["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"


def test_worker_env_names_are_settings() -> None:
    from streams.settings import Settings

    fields = {f"PIPEMEDIC_{name.upper()}" for name in Settings.model_fields}
    names = {n for n in env("worker") if n.startswith("PIPEMEDIC_")}
    assert names <= fields, names - fields


def test_event_hubs_variant_is_documented() -> None:
    text = (ROOT / "docker-compose.kafka.yml").read_text()
    commented = "\n".join(
        line.strip().lstrip("#").strip()
        for line in text.splitlines()
        if line.strip().startswith("#")
    )
    assert re.search(
        r"PIPEMEDIC_BROKER_URL: kafka://<namespace>\.servicebus\.windows\.net:9093", commented
    )
    assert "PIPEMEDIC_BROKER_SASL_USERNAME: $$ConnectionString" in commented  # "$$" = "$"
    assert "PIPEMEDIC_BROKER_SASL_PASSWORD:" in commented
    assert "SASL_SSL" in commented and "PLAIN" in commented


def test_grafana_provisioning_points_at_clickhouse() -> None:
    e = env("grafana")
    plugins = dict(p.strip().partition(" ")[::2] for p in e["GF_INSTALL_PLUGINS"].split(","))
    # "<id> <version>": the image's installer pins the version
    assert re.fullmatch(r"\d+\.\d+\.\d+", plugins["grafana-clickhouse-datasource"])
    assert DATASOURCE["type"] == "grafana-clickhouse-datasource"
    data = DATASOURCE["jsonData"]
    assert data["host"] in SERVICES  # the compose service name
    assert (data["port"], data["protocol"]) == (8123, "http")
    assert any(p.split(":")[-1] == str(data["port"]) for p in SERVICES[data["host"]]["ports"])
    assert data["defaultDatabase"] == env("clickhouse")["CLICKHOUSE_DB"]
    # ${VAR} in the provisioning file is filled from grafana's environment
    for value in (data["username"], DATASOURCE["secureJsonData"]["password"]):
        [name] = re.fullmatch(r"\$\{(\w+)\}", value).groups()
        assert name in e
    assert e["GRAFANA_CLICKHOUSE_PASSWORD"] == env("clickhouse")["GRAFANA_CLICKHOUSE_PASSWORD"]
    assert SERVICES["grafana"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"


def test_grafana_user_exists_in_clickhouse() -> None:
    users = (ROOT / "deploy/clickhouse/users.d/grafana.xml").read_text()
    assert f"<{env('grafana')['GRAFANA_CLICKHOUSE_USER']}>" in users
    assert 'from_env="GRAFANA_CLICKHOUSE_PASSWORD"' in users
    assert "GRANT SELECT ON pipemedic.*" in users


def test_dashboard_provider_reads_the_mounted_folder() -> None:
    provider = yaml.safe_load(
        (ROOT / "dashboards/provisioning/dashboards/pipemedic.yaml").read_text()
    )["providers"][0]
    targets = dict((t, s) for s, t in mounts("grafana"))
    source = targets[provider["options"]["path"]]
    assert list((ROOT / source).glob("*.json"))
    home = env("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / source / Path(home).name).is_file()


@pytest.mark.parametrize("service", ["clickhouse", "grafana", "worker", "prometheus"])
def test_mounted_paths_exist(service: str) -> None:
    for source, _ in mounts(service):
        if source.startswith("./"):
            assert (ROOT / source).exists(), source


def test_named_volumes_are_declared() -> None:
    named = {s for svc in SERVICES for s, _ in mounts(svc) if not s.startswith(("./", "/"))}
    assert named <= set(COMPOSE["volumes"])


def test_estate_example_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.estate import load_estate

    for name in ("AZURE_CLIENT_SECRET", "DATABRICKS_TOKEN"):
        monkeypatch.setenv(name, "")  # compose passes them, empty unless set
        assert name in env("worker")
    estate = load_estate(ROOT / "deploy/estate.example.yaml")
    assert estate.adf.factories and estate.databricks.workspaces


def test_dockerfile_builds_what_the_package_needs() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    packaged = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for pattern in packaged["packages"]["find"]["include"]:  # e.g. "streams*"
        folder = pattern.rstrip("*")
        assert f"COPY {folder} ./{folder}" in text and (ROOT / folder).is_dir()
    assert 'CMD ["pipemedic", "worker"]' in text
    assert re.search(r"^USER (?!root)", text, re.M)


def test_state_topics_are_compacted_the_rest_deleted() -> None:
    from pipemedic.embedded import topic_config

    compact = {"cleanup.policy": "compact"}
    assert topic_config("pipemedic-chains-changelog") == compact
    assert topic_config("control") == compact == topic_config("shadow-control")
    assert topic_config("alerts-raw") == {} == topic_config("delay-5s")


def test_topic_init_creates_the_workers_topics() -> None:
    init = SERVICES["topic-init"]
    assert init["command"] == ["pipemedic", "topics", "create"]
    assert init["restart"] == "no"  # it runs once; the worker waits for its success
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    # every setting the topic plan reads is the worker's too: same topics, same copies
    worker = env("worker")
    for name, value in env("topic-init").items():
        assert worker[name] == value, name
    assert {"PIPEMEDIC_BROKER_URL", "PIPEMEDIC_REPLICATION_FACTOR"} <= set(env("topic-init"))
    from streams.settings import Settings

    assert set(env("topic-init")) <= {f"PIPEMEDIC_{n.upper()}" for n in Settings.model_fields}


def test_worker_healthcheck_asks_ready_on_its_web_port() -> None:
    from streams.settings import Settings

    test = SERVICES["worker"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]  # the image has Python, not curl or wget
    port = Settings().web_port
    assert f"http://127.0.0.1:{port}/ready" in test[3]
    assert f"{port}:{port}" in SERVICES["worker"]["ports"]
    compile(test[3], "healthcheck", "exec")  # the command is valid Python


def test_prometheus_scrapes_the_worker() -> None:
    from streams.settings import Settings

    sources = dict(mounts("prometheus"))
    assert sources["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    [targets] = [c["targets"] for c in job["static_configs"]]
    assert targets == [f"worker:{Settings().web_port}"]  # the compose service, its web port
    assert SERVICES["worker"]["environment"]["PIPEMEDIC_WEB_HOST"] == "0.0.0.0"
    assert "prometheus-data" in COMPOSE["volumes"]
