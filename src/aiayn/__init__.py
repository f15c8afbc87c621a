"""aiayn: the Transformer of "Attention Is All You Need" (Vaswani et al., 2017) in PyTorch."""

from .inference.decoding import generate_lm, generate_seq2seq  # also what model.generate calls (model/services.py)
from .inference.quantize import PrecisionError, for_decoding
from .io.huggingface import ConversionError, from_huggingface, to_huggingface
from .io.loading import load
from .io.model_folder import CheckpointError  # also what model.save calls (model/services.py)
from .model.attention import KVCache, MultiHeadAttention, attend
from .model.config import PRESETS, ModelConfig, RNNConfig
from .model.embeddings import InputEmbedding, PositionalEncoding, RotaryPositions, sinusoidal_table
from .model.layers import FeedForward, LayerCache, Stack, TransformerLayer
from .model.masks import causal_mask, padding_mask
from .model.models import Attentions, DecoderLM, EncoderLM, ModelOutput, Transformer
from .model.recurrent import RecurrentSeq2Seq

__version__ = "0.1.0"

__all__ = [
    "Attentions", "CheckpointError", "ConversionError", "DecoderLM", "EncoderLM", "FeedForward", "InputEmbedding",
    "KVCache", "LayerCache", "ModelConfig", "ModelOutput", "MultiHeadAttention", "PRESETS", "PositionalEncoding",
    "PrecisionError", "RNNConfig", "RecurrentSeq2Seq", "RotaryPositions", "Stack", "Transformer", "TransformerLayer",
    "attend", "causal_mask", "for_decoding", "from_huggingface", "generate_lm", "generate_seq2seq", "load",
    "padding_mask", "sinusoidal_table",
    "to_huggingface",
]
