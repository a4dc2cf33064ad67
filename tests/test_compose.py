"""The production topology (docker-compose.yml, Dockerfile, .dockerignore) agrees with the code.

Nothing here runs Docker: the files are parsed, and everything they must agree with (the topics
of the stream catalog, the fields of Settings, the console script and version of pyproject.toml)
is read at test time, so a change on either side that is not made on the other fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from pydantic import AliasChoices

from interaction_store.catalog import StreamCatalog, TopicSpec
from interaction_store.kafka_cluster import replication_for
from interaction_store.log.kafka import _new_topic
from interaction_store.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"
CATALOG_FILE = ROOT / "streams" / "catalog.toml"

# ISTORE_* variables the services may set before Settings has them: the issue that adds the
# setting removes it from here (a name that has become a Settings field is checked as one).
UPCOMING_SETTINGS = {
    "ISTORE_POSTGRES_DSN": "PostgreSQL views",
    "ISTORE_HTTP_PORT": "the HTTP servers of `istore serve --role ingest|read`",
}
# The services built from the Dockerfile, each running `istore serve --role <its name>`.
APP_SERVICES = ("ingest", "worker", "read")
# Three KRaft nodes: a quorum that survives one, and three replicas of every topic.
KAFKA_SERVICES = ("kafka-1", "kafka-2", "kafka-3")
REPLICAS, MIN_ISR = replication_for(len(KAFKA_SERVICES))
KAFKA_INIT_SERVICE = "kafka-init"
POSTGRES_SERVICE = "postgres"
KAFKA_IMAGE = re.compile(r"^apache/kafka:4\.3\.\d+$")


# ---------------------------------------------------------------------------------------------
# Reading the files


_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, where: str) -> str:
    """Compose's variable interpolation, with an empty environment: ``$$`` is a literal ``$``,
    ``${VAR:-default}`` / ``${VAR-default}`` give the default. A variable without a default is
    an error here: ``docker compose up`` must work without an .env file."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        expr = match["braced"]
        if expr is not None:
            parsed = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(:?-)?(.*)", expr, re.S)
            assert parsed, f"{where}: cannot read ${{{expr}}}"
            name, sep, default = parsed.groups()
            if sep:
                return default
            raise AssertionError(f"{where}: ${{{name}}} has no default: write ${{{name}:-...}}")
        raise AssertionError(f"{where}: ${match['named']} has no default: write ${{NAME:-...}}")

    return _INTERPOLATION.sub(substitute, value)


def _interpolate_tree(node: Any, where: str) -> Any:
    if isinstance(node, str):
        return interpolate(node, where)
    if isinstance(node, list):
        return [_interpolate_tree(item, f"{where}[{i}]") for i, item in enumerate(node)]
    if isinstance(node, dict):
        return {key: _interpolate_tree(item, f"{where}.{key}") for key, item in node.items()}
    return node


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))  # resolves <<: merge keys
    assert isinstance(raw, dict), "docker-compose.yml must be a mapping"
    assert isinstance(raw.get("services"), dict), "docker-compose.yml has no services"
    return _interpolate_tree(raw, "docker-compose.yml")


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as strings; a bare ``NAME`` (taken from the host) is left out."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {p[0]: p[1] for p in pairs if len(p) == 2}
    return {
        str(k): ("true" if v is True else "false" if v is False else str(v))
        for k, v in env.items()
        if v is not None
    }


def words(command: Any) -> list[str]:
    """A compose ``command``/``entrypoint``/healthcheck ``test``, list or string, as words."""
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(command)
    return [str(word) for word in command]


def shell_commands(service: Mapping[str, Any]) -> list[list[str]]:
    """The simple commands of a service's shell script (``bash -c <script>``), as words."""
    script = "\n".join(words(service.get("entrypoint")) + words(service.get("command")))
    script = script.replace("\\\n", " ")
    lines = []
    for line in script.splitlines():
        for part in re.split(r"&&|;", line):
            tokens = shlex.split(part, comments=True)
            if tokens:
                lines.append(tokens)
    return lines


def options(tokens: list[str]) -> dict[str, list[str]]:
    """``--name value`` and ``--flag`` options of one command line (``--name=value`` too)."""
    found: dict[str, list[str]] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            if eq:
                found.setdefault(name, []).append(value)
            elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                found.setdefault(name, []).append(tokens[i + 1])
                i += 1
            else:
                found.setdefault(name, []).append("")
        i += 1
    return found


def config_pairs(items: list[str], where: str) -> dict[str, str]:
    """``k=v`` items (``--config k=v``, or ``--add-config k=v,k2=[a,b]``) as a dict."""
    pairs: dict[str, str] = {}
    for item in items:
        for pair in re.findall(r"[^,\[]+(?:\[[^\]]*\])?", item):
            key, eq, value = pair.partition("=")
            assert eq, f"{where}: {pair!r} is not key=value"
            assert key not in pairs, f"{where}: {key} given twice"
            pairs[key] = value.strip("[]")
    return pairs


def settings_env_names() -> set[str]:
    """The ISTORE_* environment variables Settings reads, derived from its fields."""
    prefix = Settings.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{name}".upper())
    return {n for n in names if n.startswith("ISTORE_")}


def settings_for(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a container with this environment builds them (streams from the checkout)."""
    with monkeypatch.context() as mp:
        for name in list(os.environ):
            if name.upper().startswith("ISTORE_") or name.upper() == "KAFKA_BOOTSTRAP_SERVERS":
                mp.delenv(name)
        known = settings_env_names()
        for name, value in env.items():
            if name in known and name not in ("ISTORE_STREAMS_DIR", "ISTORE_PROJECTIONS_DIR"):
                mp.setenv(name, value)
        return Settings()


def catalog_for(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> StreamCatalog:
    return StreamCatalog.load(settings_for(env, monkeypatch), path=CATALOG_FILE)


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` as {NAME: (host, port)}."""
    found = {}
    for entry in filter(None, (e.strip() for e in value.split(","))):
        name, sep, address = entry.partition("://")
        host, colon, port = address.rpartition(":")
        assert sep and colon and port.isdigit(), f"bad listener {entry!r}"
        found[name] = (host, int(port))
    return found


@dataclass(frozen=True)
class Published:
    host_ip: str
    host_port: int | None
    container_port: int
    protocol: str


def published_ports(service: Mapping[str, Any]) -> Iterator[Published]:
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            host = entry.get("published")
            yield Published(
                str(entry.get("host_ip", "")),
                int(host) if host not in (None, "") else None,
                int(entry["target"]),
                str(entry.get("protocol", "tcp")),
            )
            continue
        spec, _, protocol = str(entry).partition("/")
        parts = spec.rsplit(":", 2)
        assert all("-" not in p for p in parts), f"port ranges are not supported here: {entry}"
        container = int(parts[-1])
        host_port = int(parts[-2]) if len(parts) >= 2 and parts[-2] else None
        host_ip = parts[0] if len(parts) == 3 else ""
        yield Published(host_ip, host_port, container, protocol or "tcp")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_final_stage() -> list[Instruction]:
    """The instructions of the Dockerfile's last stage (continuations joined)."""
    text = re.sub(r"\\[ \t]*\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: list[list[Instruction]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"Dockerfile: {line!r} comes before any FROM"
        stages[-1].append(instruction)
    assert stages, "Dockerfile has no FROM"
    return stages[-1]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out: the last matching pattern decides, a
    pattern matches a path or any of its parent folders (Docker's rules, without escapes)."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**", i):
                out += ".*"
                i += 2
                if pattern.startswith("/", i):
                    out = out[:-2] + "(?:.*/)?"
                    i += 1
            elif pattern[i] == "*":
                out += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                out += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out += pattern[i : end + 1]
                i = end + 1
            else:
                out += re.escape(pattern[i])
                i += 1
        return re.compile(out + "$")

    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw.lstrip("!").strip()).lstrip("/")
        if any(regex(pattern).match(p) for p in prefixes):
            ignored = not negate
    return ignored


# ---------------------------------------------------------------------------------------------
# Topics


def created_topics(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    created: dict[str, dict[str, list[str]]] = {}
    for tokens in shell_commands(services[KAFKA_INIT_SERVICE]):
        if not tokens[0].endswith("kafka-topics.sh") or "--create" not in tokens:
            continue
        opts = options(tokens)
        (topic,) = opts.get("--topic", [None])  # exactly one --topic per command
        assert topic, f"kafka-init: a --create without --topic: {shlex.join(tokens)}"
        assert topic not in created, f"kafka-init creates {topic} twice"
        created[topic] = opts
    return created


def app_catalog(services: dict[str, dict[str, Any]], mp: pytest.MonkeyPatch) -> StreamCatalog:
    """The catalog the interaction-store services see (their ISTORE_TOPIC_PREFIX and
    ISTORE_PARTITIONS apply); they must all see the same one."""
    catalogs = {name: catalog_for(environment(services[name]), mp) for name in APP_SERVICES}
    first = catalogs[APP_SERVICES[0]]
    for name, catalog in catalogs.items():
        assert catalog.topics == first.topics, f"{name} sees other topics than {APP_SERVICES[0]}"
    return first


def test_kafka_init_creates_every_catalog_topic_as_the_catalog_says(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = app_catalog(services, monkeypatch)
    created = created_topics(services)
    expected: dict[str, TopicSpec] = {t.name: t for t in catalog.topics.values()}
    assert catalog.dead_letter.name in expected
    assert sorted(created) == sorted(expected), "kafka-init must create exactly the catalog topics"
    for name, spec in expected.items():
        opts = created[name]
        where = f"kafka-init, topic {name}"
        assert opts.get("--partitions") == [str(spec.partitions)], f"{where}: partitions"
        # The topic the store's own ensure_topics would create on this cluster.
        wanted = _new_topic(spec, REPLICAS)
        assert config_pairs(opts.get("--config", []), where) == wanted["configs"], (
            f"{where}: --config must be {wanted['configs']}"
        )
        assert "--if-not-exists" in opts, f"{where}: must be idempotent (--if-not-exists)"
        assert opts.get("--replication-factor") == [str(REPLICAS)], f"{where}: replicas"


def test_kafka_init_reapplies_exactly_the_catalog_configs(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kafka-configs.sh --alter`` lines, where present, must not drift from the catalog."""
    expected = {t.name: t for t in app_catalog(services, monkeypatch).topics.values()}
    altered = set()
    for tokens in shell_commands(services[KAFKA_INIT_SERVICE]):
        if not tokens[0].endswith("kafka-configs.sh") or "--alter" not in tokens:
            continue
        opts = options(tokens)
        assert opts.get("--entity-type") == ["topics"], shlex.join(tokens)
        (name,) = opts["--entity-name"]
        assert name in expected, f"kafka-init alters {name}, which is not in the catalog"
        assert name not in altered, f"kafka-init alters {name} twice"
        altered.add(name)
        where = f"kafka-init, kafka-configs for {name}"
        wanted = _new_topic(expected[name], REPLICAS)["configs"]
        assert config_pairs(opts.get("--add-config", []), where) == wanted
        assert "--delete-config" not in opts, where
    assert not altered or altered == set(expected), "re-apply the configs of every topic or none"


def test_kafka_init_stops_at_the_first_error_and_waits_for_a_healthy_broker(
    services: dict[str, dict[str, Any]],
) -> None:
    init = services[KAFKA_INIT_SERVICE]
    script = "\n".join(words(init.get("entrypoint")) + words(init.get("command")))
    assert re.search(r"^\s*set -[a-z]*e", script, re.M), "kafka-init: `set -e` so failures fail"
    for node in KAFKA_SERVICES:
        assert init["depends_on"][node]["condition"] == "service_healthy", node
        assert init["image"] == services[node]["image"], "kafka-init uses the broker's tools"
    assert init.get("restart", "no") == "no", "kafka-init runs once"


# ---------------------------------------------------------------------------------------------
# Kafka


def test_kafka_image_is_apache_kafka_4_3(services: dict[str, dict[str, Any]]) -> None:
    for name in (*KAFKA_SERVICES, KAFKA_INIT_SERVICE):
        assert KAFKA_IMAGE.match(services[name]["image"]), services[name]["image"]


def test_kafka_is_three_kraft_nodes_in_one_quorum(services: dict[str, dict[str, Any]]) -> None:
    nodes = {name: environment(services[name]) for name in KAFKA_SERVICES}
    voters: dict[str, str] = {}
    for name, env in nodes.items():
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, name
        bound = listeners(env["KAFKA_LISTENERS"])
        controller_names = env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")
        assert "PLAINTEXT" in bound
        assert all(c in bound for c in controller_names), f"{name}: controller listener unbound"
        protocols = dict(
            p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
        )
        assert set(bound) <= set(protocols), f"{name}: every listener needs a protocol"
        hostname = services[name].get("hostname", name)
        voters[env["KAFKA_NODE_ID"]] = f"{hostname}:{bound[controller_names[0]][1]}"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics come from the catalog"
        for key in (
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
        ):
            assert env[key] == str(REPLICAS), f"{name}: {key} must be {REPLICAS}"
        for key in (
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
            "KAFKA_MIN_INSYNC_REPLICAS",
        ):
            assert env[key] == str(MIN_ISR), f"{name}: {key} must be {MIN_ISR}"
    assert len(voters) == len(KAFKA_SERVICES), f"node ids must differ: {sorted(voters)}"
    quorum = ",".join(f"{node}@{address}" for node, address in sorted(voters.items()))
    for name, env in nodes.items():
        # The image formats without --standalone: every node names the same static voters.
        assert env.get("KAFKA_CONTROLLER_QUORUM_VOTERS") == quorum, f"{name}: voters"
    assert len({env["CLUSTER_ID"] for env in nodes.values()}) == 1, "one cluster id"


def test_kafka_keeps_its_log_on_a_named_volume(compose: dict[str, Any]) -> None:
    sources: list[str] = []
    for name in KAFKA_SERVICES:
        log_dirs = environment(compose["services"][name])["KAFKA_LOG_DIRS"].split(",")
        mounts = named_volume_mounts(compose, name)
        mounted = {target for _, target in mounts}
        assert set(log_dirs) <= mounted, f"{name}: KAFKA_LOG_DIRS {log_dirs} not on named volumes"
        sources += [source for source, target in mounts if target in log_dirs]
    assert len(sources) == len(set(sources)), f"each node needs a volume of its own: {sources}"


def test_services_bootstrap_from_every_advertised_plaintext_listener(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    advertised = []
    for name in KAFKA_SERVICES:
        env = environment(services[name])
        host, port = listeners(env["KAFKA_ADVERTISED_LISTENERS"])["PLAINTEXT"]
        assert listeners(env["KAFKA_LISTENERS"])["PLAINTEXT"][1] == port
        assert host in {name, services[name].get("hostname", name)}, f"{name} advertises {host}"
        advertised.append(f"{host}:{port}")
        health = words(services[name]["healthcheck"]["test"])
        (checked,) = options(health)["--bootstrap-server"]
        assert checked.rpartition(":")[2] == str(port), f"{name}: healthcheck port"
    for name in APP_SERVICES:
        settings = settings_for(environment(services[name]), monkeypatch)
        assert settings.kafka_bootstrap_servers, f"{name}: no ISTORE_KAFKA_BOOTSTRAP_SERVERS"
        servers = settings.kafka_bootstrap_servers.split(",")
        # All of them: a service starting while one node is down must still find the cluster.
        assert servers == advertised, f"{name} bootstraps from {servers}, not {advertised}"
    for tokens in shell_commands(services[KAFKA_INIT_SERVICE]):
        if tokens[0].endswith(".sh"):
            opts = options(tokens)
            assert opts.get("--bootstrap-server") == [",".join(advertised)], shlex.join(tokens)


# ---------------------------------------------------------------------------------------------
# The interaction-store services


def test_app_services_environment_is_made_of_settings(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    known = settings_env_names() | set(UPCOMING_SETTINGS)
    for name, service in services.items():
        unknown = {k for k in environment(service) if k.upper().startswith("ISTORE_")} - known
        assert not unknown, (
            f"{name}: {sorted(unknown)} are not Settings fields (nor upcoming ones: "
            f"{sorted(UPCOMING_SETTINGS)}); known: {sorted(settings_env_names())}"
        )
    for name in APP_SERVICES:
        settings = settings_for(environment(services[name]), monkeypatch)  # values validate
        assert settings.backend == "kafka", f"{name} must run on Kafka"


def test_dockerfile_env_is_made_of_settings() -> None:
    known = settings_env_names() | set(UPCOMING_SETTINGS)
    for instruction in dockerfile_final_stage():
        if instruction.keyword == "ENV":
            for name in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", instruction.arguments):
                if name.startswith("ISTORE_"):
                    assert name in known, f"Dockerfile ENV {name} is not a Settings field"


def test_app_services_run_their_role_from_the_project_image(
    services: dict[str, dict[str, Any]], pyproject: dict[str, Any]
) -> None:
    version = pyproject["project"]["version"]
    for name in APP_SERVICES:
        service = services[name]
        build = service.get("build")
        assert build is not None, f"{name} must be built from the Dockerfile"
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert (COMPOSE_FILE.parent / context / dockerfile).resolve() == DOCKERFILE
        image = service.get("image", "")
        assert image.rpartition(":")[2] == version, f"{name}: tag the image {version}"
        command = words(service.get("command"))
        script = next(iter(pyproject["project"]["scripts"]))
        assert command[:1] != [script], f"{name}: the ENTRYPOINT is already {script}"
        assert options(command).get("--role") == [name], f"{name}: serve --role {name}"
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        condition = depends.get(KAFKA_INIT_SERVICE, {}).get("condition")
        assert condition == "service_completed_successfully", f"{name} must wait for the topics"


def test_workers_scale_by_replicas(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert int(worker.get("deploy", {}).get("replicas", 1)) >= 2
    for name, service in services.items():
        if int(service.get("deploy", {}).get("replicas", 1)) > 1:
            assert "container_name" not in service, f"{name}: replicas cannot share a name"
            fixed = [p for p in published_ports(service) if p.host_port is not None]
            assert not fixed, f"{name}: replicas cannot share a fixed host port"


def test_published_ports_are_unique_and_match_the_http_port(
    services: dict[str, dict[str, Any]],
) -> None:
    taken: dict[tuple[str, int, str], str] = {}
    for name, service in services.items():
        env = environment(service)
        for port in published_ports(service):
            if port.host_port is not None:
                key = (port.host_ip, port.host_port, port.protocol)
                assert key not in taken, f"{name} and {taken.get(key)} both publish {key}"
                taken[key] = name
            if "ISTORE_HTTP_PORT" in env:
                assert port.container_port == int(env["ISTORE_HTTP_PORT"]), (
                    f"{name} publishes {port.container_port}, listens on ISTORE_HTTP_PORT="
                    f"{env['ISTORE_HTTP_PORT']}"
                )
            elif name in APP_SERVICES:
                raise AssertionError(f"{name} publishes a port but sets no ISTORE_HTTP_PORT")
    for name in ("ingest", "read"):
        assert list(published_ports(services[name])), f"{name} must publish its HTTP port"
    ports = [environment(services[n]).get("ISTORE_HTTP_PORT") for n in ("ingest", "read")]
    assert len(set(ports)) == 2, "ingest and read listen on different ports"


# ---------------------------------------------------------------------------------------------
# PostgreSQL, dependencies, volumes


def test_postgres_dsn_points_at_the_postgres_service(services: dict[str, dict[str, Any]]) -> None:
    postgres = services[POSTGRES_SERVICE]
    assert postgres["image"].partition(":")[2].split(".")[0] == "16", postgres["image"]
    env = environment(postgres)
    users = 0
    for name, service in services.items():
        dsn = environment(service).get("ISTORE_POSTGRES_DSN")
        if dsn is None:
            continue
        users += 1
        url = urlsplit(dsn)
        assert url.scheme in ("postgresql", "postgres"), f"{name}: {url.scheme}"
        assert url.hostname == POSTGRES_SERVICE, f"{name}: DSN host {url.hostname}"
        assert (url.port or 5432) == int(env.get("PGPORT", 5432)), f"{name}: DSN port"
        assert url.path.lstrip("/") == env["POSTGRES_DB"], f"{name}: DSN database"
        assert unquote(url.username or "") == env["POSTGRES_USER"], f"{name}: DSN user"
        assert unquote(url.password or "") == env["POSTGRES_PASSWORD"], f"{name}: DSN password"
    assert users, "no service is given ISTORE_POSTGRES_DSN"


def test_dependencies_exist_and_health_conditions_have_healthchecks(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        targets = depends if isinstance(depends, dict) else {key: {} for key in depends}
        for target, spec in targets.items():
            assert target in services, f"{name} depends on unknown service {target}"
            if (spec or {}).get("condition") == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
    for name in (*KAFKA_SERVICES, POSTGRES_SERVICE):
        assert words(services[name].get("healthcheck", {}).get("test")), f"{name}: healthcheck"


def named_volume_mounts(compose: dict[str, Any], service: str) -> list[tuple[str, str]]:
    mounts = []
    for entry in compose["services"][service].get("volumes") or []:
        if isinstance(entry, dict):
            if entry.get("type", "volume") == "volume" and entry.get("source"):
                mounts.append((entry["source"], entry["target"]))
            continue
        source, _, rest = str(entry).partition(":")
        if rest and not source.startswith((".", "/", "~", "$")):
            mounts.append((source, rest.split(":")[0]))
    return mounts


def test_named_volumes_are_declared_and_hold_the_state(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name in compose["services"]:
        for source, _ in named_volume_mounts(compose, name):
            assert source in declared, f"{name} mounts undeclared volume {source}"
    pgdata = environment(compose["services"][POSTGRES_SERVICE]).get(
        "PGDATA", "/var/lib/postgresql/data"
    )
    targets = [t for _, t in named_volume_mounts(compose, POSTGRES_SERVICE)]
    assert any(pgdata == t or pgdata.startswith(t.rstrip("/") + "/") for t in targets), (
        f"postgres data ({pgdata}) is not on a named volume"
    )


# ---------------------------------------------------------------------------------------------
# The image


def test_dockerfile_entrypoint_is_the_console_script(pyproject: dict[str, Any]) -> None:
    stage = dockerfile_final_stage()
    entrypoints = [i for i in stage if i.keyword == "ENTRYPOINT"]
    assert entrypoints, "the final stage has no ENTRYPOINT"
    entrypoint = json.loads(entrypoints[-1].arguments)  # exec form: signals reach istore
    scripts = pyproject["project"]["scripts"]
    assert len(entrypoint) == 1, entrypoint
    assert entrypoint[0] in scripts, f"ENTRYPOINT {entrypoint} is not one of {sorted(scripts)}"


def test_dockerfile_installs_the_project_as_a_non_root_user() -> None:
    stage = dockerfile_final_stage()
    assert stage[0].arguments.split()[-1].startswith("python:3.11-slim"), stage[0]
    runs = " ".join(i.arguments for i in stage if i.keyword == "RUN")
    assert re.search(r"\bpip install\b", runs), "the image must pip install the project"
    users = [i.arguments.split(":")[0] for i in stage if i.keyword == "USER"]
    assert users, "the image must not run as root: add USER"
    assert users[-1] not in ("root", "0"), f"USER {users[-1]} is root"


def test_build_context_holds_what_the_wheel_is_built_from(pyproject: dict[str, Any]) -> None:
    """Everything hatchling needs (readme, packages, force-included folders) is COPYed into the
    image and not left out of the build context by .dockerignore."""
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = [
        "pyproject.toml",
        pyproject["project"]["readme"],
        *wheel.get("packages", []),
        *wheel.get("force-include", {}),
    ]
    copied = []
    for instruction in dockerfile_final_stage():
        if instruction.keyword in ("COPY", "ADD") and "--from" not in instruction.arguments:
            sources = [w for w in shlex.split(instruction.arguments) if not w.startswith("--")]
            copied += [os.path.normpath(s) for s in sources[:-1]]
    for source in copied:
        assert (ROOT / source).exists(), f"Dockerfile COPYs {source}, which does not exist"
    for path in needed:
        covered = any(c == "." or path == c or path.startswith(c + "/") for c in copied)
        assert covered, f"the Dockerfile does not COPY {path}"
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for path in needed:
        files = [ROOT / path] if (ROOT / path).is_file() else (ROOT / path).rglob("*")
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if file.is_file() and "__pycache__" not in relative:
                assert not dockerignored(relative, patterns), f".dockerignore leaves out {relative}"
    for secret in (".git/config", ".venv/pyvenv.cfg", ".env"):
        assert dockerignored(secret, patterns), f".dockerignore must leave out {secret}"
