"""DualSpeech. ``from dualspeech import DualSpeech`` loads the Python API lazily (the package
import itself stays light: torch and the models load on first use)."""


def __getattr__(name: str):
    if name == "DualSpeech":
        from dualspeech.inference.api import DualSpeech

        return DualSpeech
    raise AttributeError(f"module 'dualspeech' has no attribute {name!r}")
