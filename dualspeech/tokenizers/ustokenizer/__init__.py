"""USTokenizer: understanding-driven speech tokenizer of DualSpeechLM (paper section 1).

waveform (16 kHz) -> frozen Whisper encoder (50 Hz, after its final LayerNorm; :mod:`.frontend`)
-> stride-2 conv + residual blocks (25 Hz; :mod:`.modules`) -> one EMA codebook (:mod:`.vq`)
-> USToken ids. Training adds a decoder (reconstruct the Whisper features) and an adapter into
a frozen LLM that must answer ASR / SER / SQA prompts from the quantized vectors
(:mod:`.model`, :mod:`.prompts`, :mod:`.data`). Entry points: ``dualspeech.bin.train_ustokenizer``,
``dualspeech.bin.extract_ustokens``; user docs in docs/ustokenizer.md.
"""
from dualspeech.tokenizers.ustokenizer.checkpoint import load_tokenizer, save_tokenizer
from dualspeech.tokenizers.ustokenizer.model import FRAME_SHIFT, USTokenizer, USTokenizerTraining

__all__ = ["USTokenizer", "USTokenizerTraining", "FRAME_SHIFT", "load_tokenizer", "save_tokenizer"]
