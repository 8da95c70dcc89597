"""DualSpeech: unified speech understanding + generation with dual speech tokens (DualSpeechLM)."""
from setuptools import find_packages, setup

setup(
    name="dualspeech",
    version="0.1.0",
    description="Recipes and models for DualSpeechLM (USTokenizer + LLM + AcousticGPT)",
    packages=find_packages(include=["dualspeech", "dualspeech.*"]),
    package_data={"dualspeech": ["conf/*.yaml", "conf/**/*.yaml", "inference/*.html", "assets/*.pt",
                                  "assets/*.md"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1", "transformers>=4.45", "peft", "accelerate", "lhotse", "soundfile",
        "librosa", "numpy", "scipy", "PyYAML", "tqdm", "h5py", "jiwer", "sacrebleu", "gguf",
    ],
    extras_require={
        "gpu": ["deepspeed"],
        "eval": ["onnxruntime", "speechmos", "openai-whisper"],
        "dev": ["pytest", "matplotlib", "tensorboard"],
        "serve": ["fastapi", "uvicorn", "python-multipart"],
    },
    entry_points={"console_scripts": ["dualspeech-bench=dualspeech.bin.bench:main"]},
)
