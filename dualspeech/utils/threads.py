"""One CPU thread count for every pool a decoder uses: torch's and the BLAS / OpenMP pools of
numpy, scipy and librosa (through threadpoolctl).

Why: ``torch.set_num_threads`` leaves numpy's OpenBLAS at one thread per core; the per-request
numpy work of inference (Resemblyzer's mel filterbank, Griffin-Lim, resampling) then spins
extra threads against the decoder's, which on a loaded CPU made a 2 ms matrix product take
40 ms (measured: 16 speaker embeddings 1.39 s -> 0.30 s with both pools at one thread).
"""
from __future__ import annotations

_LIMITS = []     # the threadpoolctl limiter, kept alive for the process


def set_threads(n: int) -> None:
    """Use ``n`` threads in torch and in the native pools numpy & co. load (n >= 1)."""
    import torch
    from threadpoolctl import threadpool_limits

    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    _LIMITS[:] = [threadpool_limits(limits=n)]
