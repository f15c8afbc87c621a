"""Using a trained model: decoding on the KV cache (§6.1), translation and BLEU, text generation and fill-mask."""
