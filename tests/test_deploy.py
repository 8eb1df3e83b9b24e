"""docker-compose.yml and the Dockerfile agree with the settings class and the README (no engine here)."""

import re

import yaml

from backend.settings import PROJECT_ROOT, Settings

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
FIELDS = {f"M3_{name.upper()}" for name in Settings.model_fields}


def _env(service):
    return COMPOSE["services"][service]["environment"]


def test_services_and_images():
    services = COMPOSE["services"]
    assert {"db", "api", "worker"} <= set(services)
    assert services["db"]["image"].startswith("postgis/postgis:")
    assert services["api"]["build"] == "."
    assert services["worker"]["image"] == services["api"]["image"]
    for name in ("db", "api"):
        assert "healthcheck" in services[name]
    assert services["api"]["depends_on"]["db"]["condition"] == "service_healthy"


def test_every_m3_variable_is_a_setting():
    for service in ("api", "worker", "ray-head", "ray-worker"):
        names = {k for k in _env(service) if k.startswith("M3_")}
        assert names, service
        assert names <= FIELDS, names - FIELDS


def test_database_url_points_at_the_db_service():
    db = COMPOSE["services"]["db"]["environment"]
    url = _env("api")["M3_DATABASE_URL"]
    assert url == f"postgresql://{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}@db:5432/{db['POSTGRES_DB']}"


def test_port_matches_settings_and_readme():
    assert COMPOSE["services"]["api"]["ports"] == [f"{Settings().port}:{Settings().port}"]
    assert f"127.0.0.1:{Settings().port}" in (PROJECT_ROOT / "README.md").read_text()


def test_layer_and_model_volumes_match_settings_paths():
    env = _env("api")
    mounts = {m.split(":")[1]: m.split(":")[0] for m in COMPOSE["services"]["api"]["volumes"]}
    assert mounts["/data/layers"] == "layers" and env["M3_LAYERS_DIR"] == "/data/layers"
    assert env["M3_MODEL_DIR"].startswith("/app/runs") and mounts["/app/runs"] == "models"
    assert set(mounts.values()) <= set(COMPOSE["volumes"])


def test_production_mode_needs_a_token():
    assert _env("api")["M3_DEVELOPMENT"] == "false"
    assert "${M3_ADMIN_TOKEN:?" in _env("api")["M3_ADMIN_TOKEN"]


def test_dockerfile_serves_without_torch():
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG M3_EXTRAS=serve$", text, re.M), "the default image has the serve extra only"
    assert re.search(r'pip install -e "\.\[\$\{M3_EXTRAS\}\]"', text)
    assert "train" not in re.findall(r"pip install.*", text)[0]
    assert "npm ci" in text and "EXPOSE 8000" in text


def test_the_ray_profile_is_a_head_and_a_worker_of_the_same_code_and_volumes():
    services = COMPOSE["services"]
    head, worker = services["ray-head"], services["ray-worker"]
    assert head["profiles"] == worker["profiles"] == ["ray"]
    assert all("profiles" not in services[name] for name in ("db", "api", "worker")), "the default stack is unchanged"
    assert head["build"]["context"] == "." and head["build"]["args"]["M3_EXTRAS"] == "serve,scale"
    assert worker["image"] == head["image"] != services["api"]["image"]
    port = head["command"][head["command"].index("--port") + 1]
    assert head["command"][:4] == ["ray", "start", "--head", "--block"]
    assert worker["command"][:4] == ["ray", "start", "--address", f"ray-head:{port}"] and "--block" in worker["command"]
    assert head["healthcheck"]["test"][-1] == f"127.0.0.1:{port}"
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
    # every node reads the cube and model, and the driver (on the head) writes layers, where the API does
    assert sorted(head["volumes"]) == sorted(worker["volumes"]) == sorted(services["api"]["volumes"])
    assert _env("ray-head") == _env("ray-worker") == _env("api")
    assert all("shm_size" in s for s in (head, worker))
