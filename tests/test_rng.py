"""Every random consumer of a training epoch gets its own key (blasso_jax.common.rng)."""

import jax
import numpy as np
import pytest

from blasso_jax.common import parallel, rng
from blasso_jax.config import train_config as config_lib
from blasso_jax.data import augment, autoaugment
from blasso_jax.data import datasets as data_lib
from blasso_jax.methods import registry as methods
from blasso_jax.models import networks as models
from blasso_jax.training import step


def _key_bytes(key) -> bytes:
    return np.asarray(jax.random.key_data(key)).tobytes()


@pytest.mark.parametrize("policy", ["crop_flip", "crop", "fast_autoaugment_cifar"])
def test_the_keys_one_epoch_consumes_are_all_distinct(monkeypatch, policy):
    """Records the key of every draw of a real, compiled epoch (shuffle, crop, flip, policy, Cutout, dropout):
    before blasso_jax.common.rng, a step's dropout key equalled its flip key (fold_in(k, 1) == split(k)[1])."""
    seen = []

    def record(name, key):
        # A host callback sees the key's value at run time, inside jit and per image under vmap (unrolled).
        jax.debug.callback(lambda data: seen.append((name, np.asarray(data).tobytes())), jax.random.key_data(key))

    def recording(name, draw):
        def wrapped(key, *args, **kwargs):
            record(name, key)
            return draw(key, *args, **kwargs)

        return wrapped

    for name in ("randint", "bernoulli", "permutation"):
        monkeypatch.setattr(jax.random, name, recording(name, getattr(jax.random, name)))
    # Fast AutoAugment's own per-image draws happen under vmap; its key is recorded where it enters.
    monkeypatch.setattr(
        autoaugment, "augment_batch_fast_autoaugment", recording("policy", lambda key, images, policy: images)
    )
    train_step = step.train_step

    def recording_train_step(state, images, labels, dropout_key):
        record("dropout", dropout_key)
        return train_step(state, images, labels, dropout_key)

    monkeypatch.setattr(step, "train_step", recording_train_step)

    config = config_lib.preset("smoke", batch_size=32, dropout=0.5)
    dataset = data_lib.load_dataset(
        "synthetic", validation_size=0, synthetic_train_size=96, seed=0, synthetic_shape=(8, 8, 3)
    )
    mesh = parallel.make_mesh(jax.devices()[:1])
    model = models.create_model("s-fc", 1, 10, dataset.image_shape, dropout=0.5)
    state = step.create_train_state(model, dataset.image_shape, methods.optimizer(config, 3), rng.init_key(0))
    epoch = step.make_train_epoch(mesh, 96, policy, dataset.mean, dataset.std, **config.step_options(), host_loop=True)
    epoch(state, dataset.x_train, dataset.y_train.astype(np.int32), rng.epoch_key(0, 1))
    jax.effects_barrier()

    names = [name for name, _ in seen]
    assert names.count("dropout") == 3 and names.count("permutation") == 1
    expected_per_step = {"crop_flip": ("randint", "bernoulli"), "crop": ("randint",)}.get(policy, ("policy",))
    for name in expected_per_step:
        assert names.count(name) >= 3
    keys = [key for _, key in seen]
    duplicates = [name for (name, key) in seen if keys.count(key) > 1]
    assert not duplicates, f"draws sharing a key: {duplicates}"


def test_streams_are_named_and_resume_safe():
    with pytest.raises(ValueError, match="unknown random stream 'drop'; valid: init"):
        rng.child(jax.random.key(0), "drop")
    with pytest.raises(ValueError, match="epochs count from 1"):
        rng.epoch_key(0, 0)
    # An epoch's key depends on the seed and the epoch only, so a resumed run redraws the same epoch.
    assert _key_bytes(rng.epoch_key(3, 7)) == _key_bytes(rng.epoch_key(3, 7))
    assert _key_bytes(rng.epoch_key(3, 7)) != _key_bytes(rng.epoch_key(4, 7))
    assert _key_bytes(rng.init_key(0)) not in {_key_bytes(rng.epoch_key(0, e)) for e in range(1, 50)}


def test_cutout_draws_rows_and_columns_from_their_own_streams():
    key = jax.random.key(5)
    masks = np.asarray(augment.cutout_masks(key, (8, 32, 32), 16))
    rows = np.asarray(jax.random.randint(rng.child(key, "cutout_row"), (8, 1, 1), 0, 32)).ravel()
    inside_rows = [np.where(~mask.all(axis=1))[0] for mask in masks]
    for row, inside in zip(rows, inside_rows):
        assert inside.min() == max(row - 8, 0)
