"""Training: dataset loaders, contrastive pretraining and linear probes (torch imported lazily)."""
