"""One module per network, each an nnx.Module tree with logical axis names."""
