"""aiayn: the Transformer of "Attention Is All You Need" (Vaswani et al., 2017) in PyTorch."""

from .attention import KVCache, MultiHeadAttention, attend
from .config import PRESETS, ModelConfig
from .embeddings import PositionalEncoding, sinusoidal_table
from .interop import ConversionError, from_huggingface, to_huggingface
from .layers import FeedForward, LayerCache, Stack, TransformerLayer
from .masks import causal_mask, padding_mask
from .models import Attentions, DecoderLM, EncoderLM, ModelOutput, Transformer
from .saving import CheckpointError, load

__version__ = "0.1.0"

__all__ = [
    "Attentions", "CheckpointError", "ConversionError", "DecoderLM", "EncoderLM", "FeedForward", "KVCache",
    "LayerCache", "ModelConfig", "ModelOutput", "MultiHeadAttention", "PRESETS", "PositionalEncoding", "Stack",
    "Transformer", "TransformerLayer", "attend", "causal_mask", "from_huggingface", "load", "padding_mask",
    "sinusoidal_table", "to_huggingface",
]
