"""Population analyses of latent spike counts (xarray in, xarray out)."""
