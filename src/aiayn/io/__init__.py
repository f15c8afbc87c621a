"""Files: model folders (safetensors), atomic writes, Hugging Face and CTranslate2 interop."""
