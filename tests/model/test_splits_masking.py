import numpy as np
import pytest
from scipy import ndimage

from model.config import MaskConfig, config_from_dict, digest_dict
from model.masking import MaskGenerator, evaluation_masks
from model.splits import BUFFER, CONTEXT, TEST, TRAIN, VAL, make_block_split


def test_split_has_buffers_between_splits():
    coverage = np.ones((80, 80), dtype=bool)
    coverage[:, 60:] = False
    split = make_block_split(coverage, 16, 2, (0.6, 0.2, 0.2), seed=3)
    cells = split.cell_split
    assert {TRAIN, VAL, TEST} <= set(np.unique(cells).tolist())
    assert np.all(cells[:, 64:] == CONTEXT)
    for code in (TRAIN, VAL, TEST):
        grown = ndimage.binary_dilation(cells == code, np.ones((5, 5), dtype=bool))
        others = (cells != code) & (cells != BUFFER) & (cells != CONTEXT)
        assert not np.any(grown & others), f"split {code} touches another split within the buffer"


def test_split_is_seeded():
    coverage = np.ones((64, 64), dtype=bool)
    a = make_block_split(coverage, 8, 1, (0.6, 0.2, 0.2), seed=1)
    b = make_block_split(coverage, 8, 1, (0.6, 0.2, 0.2), seed=1)
    np.testing.assert_array_equal(a.cell_split, b.cell_split)


def test_species_regime_hides_whole_layers():
    gen = MaskGenerator(MaskConfig(regime_weights=(1.0, 0.0, 0.0), species_fraction=0.5), n_species=6)
    rng = np.random.default_rng(0)
    for _ in range(20):
        regime, hidden = gen.sample(rng, (16, 16))
        assert regime == "species"
        per_layer = hidden.reshape(6, -1)
        assert np.all(per_layer.all(axis=1) | ~per_layer.any(axis=1))
        assert per_layer.any()


def test_mixed_regime_has_its_own_species_fraction():
    """species_fraction 0.1 hides about one species of ten; mixed_species_fraction 0.5 about half with a region."""
    cfg = MaskConfig(regime_weights=(1.0, 0.0, 1.0), species_fraction=0.1, mixed_species_fraction=0.5,
                     region_min_cells=4, region_max_cells=8)
    gen = MaskGenerator(cfg, n_species=10)
    rng = np.random.default_rng(2)
    counts: dict[str, list[int]] = {"species": [], "mixed": []}
    for _ in range(400):
        regime, hidden = gen.sample(rng, (16, 16))
        counts[regime].append(int(hidden.reshape(10, -1).all(axis=1).sum()))
    assert 1.0 <= np.mean(counts["species"]) < 1.6 and min(counts["species"]) >= 1
    assert 4.5 < np.mean(counts["mixed"]) < 5.5
    same = MaskGenerator(MaskConfig(regime_weights=(0.0, 0.0, 1.0), species_fraction=0.1, region_min_cells=4,
                                    region_max_cells=8), n_species=10)  # no mixed fraction: species_fraction
    assert np.mean([same.sample(rng, (16, 16))[1].reshape(10, -1).all(axis=1).sum() for _ in range(200)]) < 1.6


def test_region_regime_hides_all_species_in_rectangles():
    gen = MaskGenerator(MaskConfig(regime_weights=(0.0, 1.0, 0.0), region_fraction=0.4, region_min_cells=4,
                                   region_max_cells=8), n_species=3)
    _, hidden = gen.sample(np.random.default_rng(1), (32, 32))
    assert np.all(hidden[0] == hidden[1]) and np.all(hidden[1] == hidden[2])
    assert 0.4 <= hidden[0].mean() < 0.7


def test_evaluation_masks():
    core = np.zeros((8, 8), dtype=bool)
    core[2:6, 2:6] = True
    rng = np.random.default_rng(0)
    species = evaluation_masks("species", core, 3, rng)
    assert len(species) == 3 and species[1][1] == [1] and species[1][0][1].all() and not species[1][0][0].any()
    (region, targets), = evaluation_masks("region", core, 3, rng)
    assert targets == [0, 1, 2] and np.all(region == core)
    (mixed, _), = evaluation_masks("mixed", core, 4, rng)
    assert np.all(mixed[:, core]) and mixed.reshape(4, -1).all(axis=1).sum() == 2
    with pytest.raises(ValueError, match="known: species, region, mixed"):
        evaluation_masks("everything", core, 3, rng)


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['patch'\] in data"):
        config_from_dict({"data": {"patch": 3}, "models": {"unet": {}}})


def test_evaluation_masks_can_hide_rectangles_inside_the_block():
    core = np.zeros((40, 40), dtype=bool)
    core[8:32, 8:32] = True
    gen = MaskGenerator(MaskConfig(region_fraction=0.5, region_min_cells=4, region_max_cells=10), n_species=3)
    rng = np.random.default_rng(0)
    cases = evaluation_masks("region", core, 3, rng, gen, draws=4)
    assert len(cases) == 4
    for hidden, targets in cases:
        assert targets == [0, 1, 2]
        assert np.all(hidden[0] == hidden[1]) and np.all(hidden[1] == hidden[2])
        assert not hidden[:, ~core].any(), "only cells of the block are hidden"
        assert 0.4 <= hidden[0][core].mean() < 0.9, "about region_fraction of the block, not all of it"
    assert not np.array_equal(cases[0][0], cases[1][0]), "each draw hides other rectangles"
    mixed = evaluation_masks("mixed", core, 4, rng, gen, draws=2)
    assert len(mixed) == 2
    for hidden, _ in mixed:
        assert hidden.reshape(4, -1).all(axis=1).sum() == 2  # half the species hidden everywhere
        partial = ~hidden.reshape(4, -1).all(axis=1)
        assert hidden[partial][:, ~core].sum() == 0
    with pytest.raises(ValueError, match="need the training mask generator"):
        evaluation_masks("region", core, 3, rng, None, draws=2)


def test_whole_patch_share_of_region_masks_hides_everything():
    gen = MaskGenerator(MaskConfig(regime_weights=(0, 1, 0), region_fraction=0.3, region_max_cells=10,
                                   whole_patch=0.4), n_species=4)
    rng = np.random.default_rng(3)
    whole = [gen.sample(rng, (40, 40))[1].all() for _ in range(500)]
    assert 0.33 < np.mean(whole) < 0.47  # about whole_patch of the region masks
    mixed = MaskGenerator(MaskConfig(regime_weights=(0, 0, 1), species_fraction=0.2, region_fraction=0.3,
                                     region_max_cells=10, whole_patch=1.0), n_species=6)
    assert not any(mixed.sample(rng, (40, 40))[1].all() for _ in range(50))  # the mixed regime keeps its shapes
    with pytest.raises(ValueError, match="whole_patch"):
        MaskGenerator(MaskConfig(whole_patch=1.5), n_species=4)


def test_whole_patch_off_keeps_earlier_digests():
    """A configuration that does not set whole_patch keeps the digest it had before the option existed."""
    plain = config_from_dict({"name": "x", "models": {"unet": {}}})
    whole = config_from_dict({"name": "x", "models": {"unet": {}}, "masking": {"whole_patch": 0.3}})
    assert "whole_patch" not in digest_dict(plain)["masking"]
    assert digest_dict(whole)["masking"]["whole_patch"] == 0.3
