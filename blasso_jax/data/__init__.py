"""What a run trains on: datasets (`datasets`: tfds, synthetic, local copies, the validation split), local copies
(`local_data`), NLGP and its Gaussian control (`nlgp`; Ingrosso & Goldt's online setting and its inputs drawn on
device, `nlgp_online`), where a layer's inputs sit (`geometry`), the fixed pixel permutation (`permute`), and on-device
augmentation (`augment`: crop+flip, Fast AutoAugment grouped by op in `autoaugment`, its Pillow-exact ops in
`pillow_ops`, the authors' policies in `policies/`). May import `blasso_jax.common` and `blasso_jax.models`."""
