"""Which tokenizer made the ids a consumer reads: one check from extraction to decoding.

Extraction stamps every cut with ``<field>_source``: the USTokenizer checkpoint hash
(``ustokenizer:<sha>``), the codec identity (``melvq:melvq.pt@<sha>``), the speaker encoder's
(``resemblyzer:...@<sha>``). Shards record the identities of the cuts they were rendered from
(``token_identities`` in ``index.json``), training records those of its shards next to the model
(``token_identities.json``), and decoding compares the model's with the test cuts' and with the
codec that turns generated ids into speech. Ids of one tokenizer read with another are garbage
that still decodes, so a mismatch is an error naming both identities and the command that fixes
it, never a warning.
"""
from __future__ import annotations

import json
from pathlib import Path

FIELDS = ("ustokens", "acoustic_tokens", "speaker_embedding")
FILE = "token_identities.json"
STAGE = {"ustokens": 3, "acoustic_tokens": 4, "speaker_embedding": 4}   # the recipe stage making them


class TokenIdentityError(ValueError):
    """Ids made by one tokenizer meet a consumer expecting another's."""


def cut_identities(cuts, where: str) -> dict[str, str]:
    """{field: identity} of the cuts' token fields; cuts of one set that mix tokenizers (a
    half-redone extraction) are an error."""
    seen: dict[str, set[str]] = {f: set() for f in FIELDS}
    for cut in cuts:
        custom = cut.custom or {}
        for field in FIELDS:
            if custom.get(f"{field}_source"):
                seen[field].add(str(custom[f"{field}_source"]))
    mixed = {f: sorted(v) for f, v in seen.items() if len(v) > 1}
    if mixed:
        field, ids = next(iter(mixed.items()))
        raise TokenIdentityError(
            f"{where}: its cuts carry {field} of {len(ids)} different tokenizers ({', '.join(ids)}); "
            f"re-extract them all: ./run.sh --stage {STAGE[field]} --force true")
    return {f: next(iter(v)) for f, v in seen.items() if v}


def merge(named: dict[str, dict[str, str]], fix: str) -> dict[str, str]:
    """One {field: identity} from several sources ({source name: identities}) that must agree."""
    out: dict[str, str] = {}
    first: dict[str, str] = {}
    for name, ids in named.items():
        for field, ident in ids.items():
            if field in out and out[field] != ident:
                raise TokenIdentityError(
                    f"{field}: {first[field]} was made with {out[field]} but {name} with {ident}; "
                    f"{fix}")
            out.setdefault(field, ident)
            first.setdefault(field, name)
    return out


def check(expected: dict[str, str], expected_what: str, found: dict[str, str], found_what: str,
          fix: str) -> None:
    """Every field both sides name must have the same identity."""
    for field in FIELDS:
        if field in expected and field in found and expected[field] != found[field]:
            raise TokenIdentityError(
                f"{field}: {expected_what} expects {expected[field]} but {found_what} has "
                f"{found[field]}; {fix}")


def write(dir_: str | Path, identities: dict[str, str]) -> Path:
    from dualspeech.utils.io import atomic_write_text

    path = Path(dir_) / FILE
    atomic_write_text(path, json.dumps(identities, indent=1, sort_keys=True) + "\n")
    return path


def read_for_model(model_path: str | Path) -> tuple[dict[str, str], Path | None]:
    """The identities recorded with a model: ``token_identities.json`` in the model dir or the
    experiment dir above it (exp/model, exp/merged, exp/checkpoints/step-N). ({}, None) for a
    model trained before identities were recorded."""
    p = Path(model_path)
    for d in (p, p.parent, p.parent.parent):
        if (d / FILE).is_file():
            return json.loads((d / FILE).read_text()), d / FILE
    return {}, None
