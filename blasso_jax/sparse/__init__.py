"""A trained sparse model outside training: sparse inference (`inference`: `sparsify`, `sparse_apply`), the sparse
export format (`export`, docs/sparse_format.md) and their benchmark (`benchmark`). May import every layer below it:
common, models, data, optim, analysis, config, methods."""

from blasso_jax.sparse.inference import (
    GatherKernel,
    SparseModel,
    gather_below,
    gather_kernel,
    gather_matmul,
    sparse_apply,
    sparsify,
)

__all__ = ["GatherKernel", "SparseModel", "gather_below", "gather_kernel", "gather_matmul", "sparse_apply", "sparsify"]
