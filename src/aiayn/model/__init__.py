"""The model (§3): config, masks, attention (§3.2), layers (§3.1, §3.3), embeddings (§3.4, §3.5), three models."""
