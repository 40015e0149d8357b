"""The offline demo's ingredients: real pretrained weights and images that install from package indexes, the
pretrained dual encoders built from them, and the downstream tasks. `make demo` and the benchmarks use them."""
