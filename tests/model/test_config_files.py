"""Every configuration shipped in configs/ loads; retired options load only at the value that turned them off."""

from pathlib import Path

import pytest
import yaml

from model.config import EXPORTED_MODEL, RETIRED_OPTIONS, config_from_dict, digest_dict, load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "configs" / "experiments").glob("*.yaml"))


def test_the_shipped_configurations_are_found():
    names = {p.name for p in CONFIGS}
    assert {"demo.yaml", "paper.yaml", "protocol-cpu.yaml", "protocol-quick.yaml", "demo_species02.yaml"} <= names
    assert any(p.parent.name == "experiments" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_configuration_loads(path):
    cfg = load_config(path)
    assert EXPORTED_MODEL in cfg.models
    assert "gpu_sweep.sh" not in path.read_text(encoding="utf-8"), "the GPU runner is scripts/gpu_sweep.py"


def test_a_recorded_run_with_retired_options_at_their_off_value_loads():
    """A run folder's config.yaml written while the options existed records them switched off."""
    raw = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text(encoding="utf-8"))
    for spec in raw["models"].values():
        spec |= RETIRED_OPTIONS["ModelSpec"]
    raw["train"] |= RETIRED_OPTIONS["TrainConfig"]
    assert config_from_dict(raw) == load_config(ROOT / "configs" / "demo.yaml")


@pytest.mark.parametrize(("section", "key", "value"), [
    ("models", "skip_transform", "log"), ("models", "residual_init", True), ("models", "flip_average", True),
    ("models", "freeze_prior", True), ("train", "extra_radii", [2, 16]), ("train", "augment", True),
    ("train", "covariate_noise", 0.5)])
def test_a_retired_option_switched_on_is_an_error(section, key, value):
    raw = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text(encoding="utf-8"))
    target = raw["models"][EXPORTED_MODEL] if section == "models" else raw["train"]
    target[key] = value
    with pytest.raises(ValueError, match=f"{key} is no longer an option"):
        config_from_dict(raw)


def test_digests_of_a_recorded_run_are_those_it_was_recorded_with():
    """Protocol stamps and cached scores hash digest_dict: for a run recorded with the retired options, its record."""
    old_run = ROOT / "tests" / "fixtures" / "run-before-protocol"
    recorded = yaml.safe_load((old_run / "config.yaml").read_text(encoding="utf-8"))
    digest = digest_dict(load_config(old_run / "config.yaml"))
    assert digest.pop("protocol") is None and "protocol" not in recorded  # recorded before that section existed
    assert digest == recorded
