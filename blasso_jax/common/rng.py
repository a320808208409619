"""Named random streams: every consumer of a key derives its own key by `fold_in` with its own tag.

`jax.random.fold_in(key, i)` equals `jax.random.split(key, n)[i]`, so two consumers that fold in the
same number, or one that splits and one that folds in, draw the same randomness: dropout masks once
equalled the flips of the same step (`fold_in(step, 1)` and `split(step)[1]`). Every key of a run is
derived with `child` below; `tests/test_rng.py` checks that the keys one step consumes are distinct.
"""

from __future__ import annotations

import zlib

import jax

# Each consumer's tag under its parent key; siblings (same parent) have distinct tags. The small tags
# are those `jax.random.split` gave before this module existed, so runs without dropout keep their numbers.
_TAGS = {
    # under the seed's key; epoch e (from 1) folds in e itself
    "init": 0,
    # under the initialisation key: the pixel shuffle of shuffled_mask_retrain's mask
    "shuffle_mask": zlib.crc32(b"shuffle_mask"),
    "locality": zlib.crc32(b"locality"),  # the permutation null of the locality measure; far above epoch numbers
    # online training (blasso_jax.data.nlgp_online): its input stream and held-out draws; step s folds in s under
    # "online_data", and a step's key gives its labels and its noise
    "online_data": zlib.crc32(b"online_data"),
    "online_validation": zlib.crc32(b"online_validation"),
    "online_test": zlib.crc32(b"online_test"),
    "online_label": 0,
    "online_noise": 1,
    # under an epoch's key; step i folds in i under "steps"
    "order": 0,
    "steps": 1,
    # under a step's key (crop+flip and crop use the step key as their augmentation key)
    "crop": 0,
    "flip": 1,
    "fast_autoaugment": 0,  # Fast AutoAugment's policy, crop and flip
    "cutout": 1,  # Fast AutoAugment's Cutout
    "dropout": zlib.crc32(b"dropout"),  # far from every small tag
    # under Fast AutoAugment's key: the per-image sub-policies, then the crop/flip that follows them
    "policy": 0,
    "after_policy": 1,
    # under Cutout's key
    "cutout_row": 0,
    "cutout_column": 1,
}
STREAMS = tuple(_TAGS)


def child(key: jax.Array, name: str) -> jax.Array:
    """The key of consumer `name` (one of `STREAMS`) under its parent `key`.

    Examples:
      >>> step = jax.random.key(0)
      >>> bool((jax.random.key_data(child(step, "dropout")) != jax.random.key_data(child(step, "flip"))).any())
      True
    """
    if name not in _TAGS:
        raise ValueError(f"unknown random stream {name!r}; valid: {', '.join(STREAMS)}")
    return jax.random.fold_in(key, _TAGS[name])


def init_key(seed: int) -> jax.Array:
    """The key that initialises the parameters of a run seeded `seed`."""
    return child(jax.random.key(seed), "init")


def epoch_key(seed: int, epoch: int) -> jax.Array:
    """The key of training epoch `epoch` (from 1) of a run seeded `seed`: the same on resume."""
    if epoch < 1:
        raise ValueError(f"epochs count from 1, got {epoch}")
    return jax.random.fold_in(jax.random.key(seed), epoch)
