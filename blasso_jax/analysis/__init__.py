"""What a trained first layer shows: per-unit locality against each unit's own permutation null on rings, tori and
images (`locality`), image locality and description length (`measures`). May import `blasso_jax.common`,
`blasso_jax.models` and `blasso_jax.data`."""
