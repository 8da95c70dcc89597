"""Real-corpus preparers. Importing the package registers every corpus in
``common.PREPARERS`` (a new corpus: a module that calls ``register_preparer``, imported here)."""
from dualspeech.data.corpora import (covost2, cvss, iemocap, libriheavy, librispeech,  # noqa: F401
                                     libritts_r, sc, vctk)
