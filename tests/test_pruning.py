"""The masked methods: keep_mask, magnitude masks, pixel-shuffled masks, IMP's plan, and the four registered
methods trained end to end on small synthetic data (masks stay fixed, zeros stay zero, densities are reached)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from blasso_jax import methods
from blasso_jax.common import files
from blasso_jax.config import train_config as config_lib
from blasso_jax.models.counting import FIRST_LAYER
from blasso_jax.optim import pruning, pruning_transforms
from blasso_jax.optim import transforms as optim
from blasso_jax.training import records, rundir, train

# Its module-scoped runs are trained once: every test of this file on one xdist worker.
pytestmark = pytest.mark.xdist_group("test_pruning")


def test_keep_mask_holds_masked_weights_at_exact_zero_and_leaves_the_rest_to_the_chain():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(4, 5)), jnp.float32), "b": jnp.ones(5)}
    mask = rng.random((4, 5)) < 0.5
    tx = optax.chain(optax.sgd(0.1, momentum=0.9), optim.keep_mask(lambda p: {"w": True, "b": False}))
    state = optim.set_mask(tx.init(params), {"w": mask, "b": None})
    reference_w, velocity = np.asarray(params["w"]), np.zeros((4, 5), np.float32)
    for _ in range(3):
        grads = {"w": jnp.asarray(rng.normal(size=(4, 5)), jnp.float32), "b": jnp.ones(5)}
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        # numpy: momentum SGD, then every masked entry set to 0 (masked entries never move away from 0)
        velocity = 0.9 * velocity + np.asarray(grads["w"])
        reference_w = np.where(mask, reference_w - 0.1 * velocity, 0.0)
    np.testing.assert_allclose(np.asarray(params["w"]), reference_w, rtol=1e-6, atol=1e-6)
    assert np.all(np.asarray(params["w"])[~mask] == 0) and not np.signbit(np.asarray(params["w"])[~mask]).any()
    np.testing.assert_allclose(params["b"], 1 - 0.1 * (1 + 1.9 + 2.71), rtol=1e-6)  # the unmasked leaf moves


def test_magnitude_mask_keeps_the_largest_entries_and_breaks_ties_by_position():
    kernel = jnp.array([[0.5, -2.0, 0.5], [1.0, 0.0, -0.5]])
    np.testing.assert_array_equal(pruning.magnitude_mask(kernel, 0.5), [[True, True, False], [True, False, False]])
    within = jnp.array([[True, False, True], [True, True, True]])
    np.testing.assert_array_equal(
        pruning.magnitude_mask(kernel, 0.5, within), [[True, False, True], [True, False, False]]
    )
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=f"density must be a density in \\(0, 1\\], got {bad}"):
            pruning.magnitude_mask(kernel, bad)


def test_shuffled_masks_keep_each_units_count_per_channel_and_lose_the_positions():
    image_shape = (8, 8, 3)
    mask = np.zeros((8, 8, 3, 16), bool)
    mask[2:5, 2:5, :, :] = True  # every unit a 3x3 blob in all channels
    mask[0, 0, 1, :5] = True
    shuffled = np.asarray(pruning.shuffle_unit_masks(jnp.asarray(mask.reshape(-1, 16)), image_shape, jax.random.key(0)))
    shuffled = shuffled.reshape(8, 8, 3, 16)
    np.testing.assert_array_equal(shuffled.sum(axis=(0, 1)), mask.sum(axis=(0, 1)))  # per unit and channel
    # pixels move with all their channels: the 9 blob pixels stay whole (all 3 channels) after the shuffle
    np.testing.assert_array_equal((shuffled.sum(axis=2) == 3).sum(axis=(0, 1)), np.full(16, 9))
    assert not (shuffled == mask).all(axis=(0, 1, 2)).any()  # every unit moved
    assert len({shuffled[..., u].tobytes() for u in range(16)}) == 16  # each unit its own permutation


def test_imp_plan_counts_rounds_and_names_valid_epochs():
    plan = pruning.imp_plan(40, density_first=0.1, density_rest=1.0, rate=0.5)
    assert (plan.rounds, plan.segment) == (4, 8)  # 0.5^4 = 0.0625 <= 0.1 < 0.5^3
    assert [plan.keep(r, True) for r in range(5)] == [1.0, 0.5, 0.25, 0.125, 0.1]
    assert plan.keep(4, False) == 1.0
    assert [plan.round_ending(e) for e in (7, 8, 16, 32, 40)] == [None, 1, 2, 4, None]
    with pytest.raises(ValueError, match="epochs 42 do not split into 5 equal segments .* use epochs 40 or 45"):
        pruning.imp_plan(42, 0.1, 1.0, 0.5)


def test_pruning_transforms_run_in_a_hand_written_loop():
    """IMP and magnitude pruning as optax transforms, outside the trainer: masks in the state, events by update count,
    pruned weights at exactly 0, survivors rewound to their values after the rewind point (exactly with `rewound`,
    within a rounding with `optax.apply_updates` alone), the momentum cleared at each round."""
    rng = np.random.default_rng(0)
    params = {"layer1": {"kernel": jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)}, "norm": {"scale": jnp.ones(5)}}
    grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params) for _ in range(10)]
    plan = pruning.imp_plan(6, density_first=0.25, density_rest=1.0, rate=0.5, rewind=1).in_steps(2)
    tx = pruning_transforms.iterative_pruning(optax.sgd(0.1, momentum=0.9), plan)  # rounds after updates 4 and 8
    state, history = tx.init(params), [params]
    update = jax.jit(tx.update)
    for g in grads:
        updates, state = update(g, state, params)
        approximate = optax.apply_updates(params, updates)
        params = pruning_transforms.rewound(approximate, state)
        np.testing.assert_allclose(approximate["layer1"]["kernel"], params["layer1"]["kernel"], atol=1e-6)
        history.append(params)
    kernels = [np.asarray(h["layer1"]["kernel"]) for h in history]
    assert [int(np.count_nonzero(k)) for k in kernels] == [20] * 4 + [10] * 4 + [5] * 3
    for after_round in (4, 8):  # survivors hold their values after update 2 (plan.rewind), the rest exactly 0
        kept = kernels[after_round] != 0
        np.testing.assert_array_equal(kernels[after_round][kept], kernels[2][kept])
        np.testing.assert_array_equal(history[after_round]["norm"]["scale"], history[2]["norm"]["scale"])
    assert not np.signbit(kernels[-1][kernels[-1] == 0]).any()
    assert np.all(kernels[-1][kernels[8] == 0] == 0)  # pruned weights never come back

    magnitude = pruning_transforms.magnitude_pruning(optax.sgd(0.1), step=2, density_first=0.5, density_rest=1.0)
    params, state = history[0], magnitude.init(history[0])
    for g in grads[:4]:
        updates, state = magnitude.update(g, state, params)
        params = optax.apply_updates(params, updates)
    assert int(np.count_nonzero(params["layer1"]["kernel"])) == 10 and bool(state.mask["norm"]["scale"])


# S-FC α=1 on 8x8x3 images: 192 inputs, (8/2)·(8/2) = 16 first-layer units, 24 in layer 2, 10 classes.
IMAGE_SHAPE = (8, 8, 3)
SIZES = {"layer1": 192 * 16, "layer2": 16 * 24, "layer3": 24 * 10}


def _smoke(method, **overrides):
    base = dict(epochs=4, method=method, checkpoint_every=1, locality_every=0, momentum=0.9, weight_decay=5e-4)
    base |= dict(synthetic_shape=IMAGE_SHAPE)
    return config_lib.preset("smoke", **{**base, **overrides})


def _kernel(workdir, name=FIRST_LAYER):
    return np.asarray(rundir.load_run(workdir)[2]["params"][name]["kernel"])


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A finished β-LASSO run whose first layer is sparse: the source of the masked retrainings."""
    workdir = tmp_path_factory.mktemp("source") / "blasso"
    train.train_and_evaluate(_smoke("blasso", beta=1.0, l1_first=2e-2, l1_rest=0.0), workdir)
    kernel = _kernel(workdir)
    assert 0 < np.count_nonzero(kernel) < 0.5 * kernel.size
    return workdir


@pytest.mark.parametrize("method", ["mask_retrain", "shuffled_mask_retrain"])
def test_masked_retraining_keeps_the_source_mask_fixed(tmp_path, source_run, method):
    source_mask = _kernel(source_run) != 0
    workdir = tmp_path / method
    train.train_and_evaluate(_smoke(method, mask_source=str(source_run)), workdir)
    kernel = _kernel(workdir)
    mask = kernel != 0
    units = source_mask.reshape(-1, source_mask.shape[-1]).sum(axis=0)
    np.testing.assert_array_equal(mask.sum(axis=0), units)  # each unit keeps its count (weights move, none die)
    if method == "mask_retrain":
        np.testing.assert_array_equal(mask, source_mask)
    else:
        assert (mask != source_mask).any()
    # the other layers train densely, as SGD
    assert np.count_nonzero(_kernel(workdir, "layer2")) == _kernel(workdir, "layer2").size
    # exact zeros every epoch: the non-zero count of layer 1 never changes
    counts = {r["nonzero_per_layer"][FIRST_LAYER] for r in files.read_jsonl(workdir / "metrics.jsonl")}
    assert counts == {int(units.sum())}


def test_masked_retraining_refuses_a_missing_or_mismatched_source(tmp_path, source_run):
    with pytest.raises(ValueError, match="method mask_retrain needs --mask_source"):
        train.train_and_evaluate(_smoke("mask_retrain"), tmp_path / "a")
    with pytest.raises(rundir.WorkdirError, match="holds no run"):
        train.train_and_evaluate(_smoke("mask_retrain", mask_source=str(tmp_path / "none")), tmp_path / "b")
    with pytest.raises(ValueError, match=r"trained s-fc with a first layer of shape \(192, 16\); this run's s-fc"):
        train.train_and_evaluate(_smoke("mask_retrain", mask_source=str(source_run), alpha=2), tmp_path / "c")
    assert not (tmp_path / "c").exists()  # refused before anything was written


def test_magnitude_pruning_reaches_its_densities_and_keeps_exact_zeros_through_fine_tuning(tmp_path):
    workdir = tmp_path / "magnitude"
    train.train_and_evaluate(
        _smoke("magnitude", density_first=0.05, density_rest=0.5, finetune_epochs=2, epochs=5), workdir
    )
    records = files.read_jsonl(workdir / "metrics.jsonl")
    assert records[1]["nonzero_per_layer"] == SIZES  # dense until the pruning epoch (5 - 2 = 3)
    pruned = {"layer1": round(0.05 * SIZES["layer1"]), "layer2": round(0.5 * SIZES["layer2"]), "layer3": 120}
    for record in records[2:]:
        assert record["nonzero_per_layer"] == pruned
    # Selection by validation never picks the dense epochs before pruning, nor does the best checkpoint hold them.
    results = json.loads((workdir / "results.json").read_text())
    assert results["best_epoch"] >= 3
    best_val = max(r["val_accuracy"] for r in records[2:])
    assert results["val_accuracy"]["best"] == best_val
    best_kernel = rundir.load_run(workdir, best=True)[2]["params"]["layer1"]["kernel"]
    assert int(np.count_nonzero(best_kernel)) == pruned["layer1"]
    with pytest.raises(ValueError, match="finetune_epochs 5 leaves no epoch of training before pruning in 5 epochs"):
        methods.validate(_smoke("magnitude", finetune_epochs=5, epochs=5))


def test_imp_reaches_the_density_and_rewinds_to_the_stored_weights(tmp_path):
    config = _smoke("imp", density_first=0.25, density_rest=1.0, imp_rate=0.5, rewind_epoch=1, epochs=6)
    workdir = tmp_path / "imp"
    train.train_and_evaluate(config, workdir)  # 3 segments of 2 epochs: dense, 50 %, 25 %
    counts = [r["nonzero_per_layer"]["layer1"] for r in files.read_jsonl(workdir / "metrics.jsonl")]
    size = SIZES["layer1"]
    # each segment's last epoch is recorded after its pruning round
    assert counts == [size, size // 2, size // 2, size // 4, size // 4, size // 4]
    assert json.loads((workdir / "results.json").read_text())["best_epoch"] >= 4  # never a denser round's model
    # Rewinding: right after round 1 (end of epoch 2) the survivors hold their epoch-1 values. Train the same run
    # to epoch 1 and to epoch 2 (stop_after) and compare.
    train.train_and_evaluate(config, tmp_path / "to1", stop_after=1)
    train.train_and_evaluate(config, tmp_path / "to2", stop_after=2)
    rewound, epoch1 = _kernel(tmp_path / "to2"), _kernel(tmp_path / "to1")
    kept = rewound != 0
    assert kept.sum() == size // 2
    np.testing.assert_array_equal(rewound[kept], epoch1[kept])
    with pytest.raises(ValueError, match="rewind_epoch 2 is not inside the dense segment of 2 epochs"):
        methods.validate(config.replace(rewind_epoch=2))


def test_the_best_record_is_chosen_from_the_first_selectable_epoch_on():
    history = [{"epoch": e, "val_accuracy": v} for e, v in [(1, 0.9), (2, 0.5), (3, 0.7), (4, 0.7), (5, 0.6)]]
    assert records.best_record(history)["epoch"] == 1
    assert records.best_record(history, first_epoch=3)["epoch"] == 3  # the first among equals
    assert records.best_record(history, first_epoch=6) is None
