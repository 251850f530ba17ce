"""FAST action tokenizer (Pertsch et al. 2025, "FAST: Efficient Action Tokenization for VLAs").

An action chunk (N, A) becomes a short sequence of discrete tokens in four steps:

1. ``dct``: a type-II DCT with orthonormal scaling over time, per action dimension (scipy.fft.dct).
2. ``quantise``: coefficients times ``scale``, rounded to integers (FAST's default scale is 10).
3. ``flatten``: frequency-major, dimensions interleaved: [C[0,0], C[0,1], .., C[0,A-1], C[1,0], ..],
   so all low-frequency components come first (FAST Sec. IV; the released tokenizer flattens the
   (time, dim) coefficient matrix row-major in the same way).
4. ``bpe``: integers map to characters and a byte-pair-encoding tokenizer, trained here with the
   ``tokenizers`` library on the training chunks, merges frequent runs into tokens.

Decoding inverts 4 -> 1. Because the DCT is orthonormal, the per-coefficient rounding error
(<= 0.5 / scale) becomes a time-domain error with L2 norm <= sqrt(N) * 0.5 / scale per dimension,
so |error| <= sqrt(N) * 0.5 / scale at worst (0.1 for N=4, scale=10) and about 0.29 / scale RMS.

Unlike FAST, which shifts by the training set's minimum coefficient, the integer alphabet is fixed
from the action bound: for |a| <= bound an orthonormal DCT gives |C| <= sqrt(N) * bound, so every
chunk inside the bound is representable (no clipping of unseen extremes).

VLM spelling: FAST BPE id ``i`` is written ``<fast_i>`` (``FAST_TOKEN``), one VLM token each once
those strings are added to the backbone's vocabulary (``backbones.control_supervision``).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.fft import dct, idct
from tokenizers import Tokenizer, models, trainers

from vlm4vla.data.chunks import DemoStoreLike, episode_bounds

FAST_TOKEN = "<fast_{}>"  # how FAST BPE id i is spelled in a VLM vocabulary
_FAST_TOKEN_RE = re.compile(r"<fast_(\d+)>")
CHAR_BASE = 0x100  # integer k -> chr(CHAR_BASE + k + k_max): printable, no whitespace / control chars
CONFIG_FILE = "fast.json"
TOKENIZER_FILE = "fast_tokenizer.json"  # not tokenizer.json: may sit next to a backbone's own tokenizer
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FastConfig:
    """FAST settings: DCT scale, BPE vocabulary size, chunk shape and the action bound."""

    scale: float = 10.0  # FAST default (Pertsch et al. 2025): rounding step 0.1 per coefficient
    vocab_size: int = 512  # BPE vocabulary (alphabet + merges); FAST's universal tokenizer uses 1024
    chunk_size: int = 4  # N: the adapter's chunk (STUDY.md: 4 on Bridge / LIBERO)
    action_dim: int = 4  # A: Meta-World's xyz + gripper
    action_bound: float = 1.0  # |action| <= bound (env action space [-1, 1])
    min_frequency: int = 2  # a merge needs at least this many occurrences

    def __post_init__(self) -> None:
        checks = {"scale": self.scale > 0, "vocab_size": self.vocab_size >= self.n_symbols,
                  "chunk_size": self.chunk_size >= 1, "action_dim": self.action_dim >= 1,
                  "action_bound": self.action_bound > 0, "min_frequency": self.min_frequency >= 1}
        allowed = {"scale": "> 0", "vocab_size": f">= the integer alphabet size {self.n_symbols} (2*k_max+1)",
                   "chunk_size": ">= 1", "action_dim": ">= 1", "action_bound": "> 0", "min_frequency": ">= 1"}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"FastConfig.{name}={getattr(self, name)!r} is invalid: must be {allowed[name]}")

    @property
    def k_max(self) -> int:
        """Largest |quantised coefficient| for actions within the bound (orthonormal DCT)."""
        return int(math.ceil(self.scale * self.action_bound * math.sqrt(max(self.chunk_size, 1))))

    @property
    def n_symbols(self) -> int:
        """Size of the integer alphabet [-k_max, k_max]."""
        return 2 * self.k_max + 1

    @property
    def n_coefficients(self) -> int:
        """Coefficients per chunk (N * A)."""
        return self.chunk_size * self.action_dim

    @property
    def max_abs_error(self) -> float:
        """Worst-case |reconstruction error| of a well-formed chunk: sqrt(N) * 0.5 / scale."""
        return math.sqrt(self.chunk_size) * 0.5 / self.scale


@dataclass(frozen=True)
class DecodeInfo:
    """What decoding a (possibly malformed) token sequence had to repair."""

    n_tokens: int
    n_coefficients: int  # coefficients the tokens spelled (expected: N * A)
    dropped_ids: int  # ids outside the FAST vocabulary, ignored
    padded: int  # missing coefficients, filled with 0 (no energy at those frequencies)
    truncated: int  # surplus coefficients, cut

    @property
    def well_formed(self) -> bool:
        return self.dropped_ids == 0 and self.padded == 0 and self.truncated == 0


def quantise(chunk: np.ndarray, cfg: FastConfig) -> np.ndarray:
    """Steps 1-3: (N, A) actions -> (N*A,) integers, frequency-major with dimensions interleaved."""
    chunk = np.asarray(chunk, np.float64)
    if chunk.shape != (cfg.chunk_size, cfg.action_dim):
        raise ValueError(f"chunk shape {chunk.shape} != (chunk_size, action_dim) = {(cfg.chunk_size, cfg.action_dim)}")
    if np.abs(chunk).max(initial=0.0) > cfg.action_bound + 1e-6:
        raise ValueError(f"chunk has |action| {np.abs(chunk).max():.3f} > action_bound={cfg.action_bound}")
    coeffs = dct(chunk, type=2, norm="ortho", axis=0)  # (N, A): row k = frequency k of every dim
    return np.clip(np.rint(coeffs * cfg.scale), -cfg.k_max, cfg.k_max).astype(np.int64).reshape(-1)


def dequantise(values: np.ndarray, cfg: FastConfig) -> np.ndarray:
    """Inverse of ``quantise`` (up to rounding): (N*A,) integers -> (N, A) actions within the bound."""
    coeffs = np.asarray(values, np.float64).reshape(cfg.chunk_size, cfg.action_dim) / cfg.scale
    return np.clip(idct(coeffs, type=2, norm="ortho", axis=0), -cfg.action_bound, cfg.action_bound)


def _to_chars(values: np.ndarray, cfg: FastConfig) -> str:
    return "".join(chr(CHAR_BASE + int(v) + cfg.k_max) for v in values)


class FastTokenizer:
    """A fitted FAST tokenizer: ``fit`` on training chunks, then ``encode`` / ``decode`` / ``save``."""

    def __init__(self, cfg: FastConfig, bpe: Tokenizer) -> None:
        self.cfg = cfg
        self.bpe = bpe

    @classmethod
    def fit(cls, chunks: np.ndarray | Sequence[np.ndarray], cfg: FastConfig) -> "FastTokenizer":
        """Train the BPE on the quantised training chunks (M, N, A)."""
        texts = [_to_chars(quantise(c, cfg), cfg) for c in chunks]
        if not texts:
            raise ValueError("FastTokenizer.fit needs at least one chunk")
        alphabet = [chr(CHAR_BASE + i) for i in range(cfg.n_symbols)]  # every integer, seen or not
        trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                      initial_alphabet=alphabet, special_tokens=[], show_progress=False,
                                      limit_alphabet=cfg.n_symbols)
        bpe = Tokenizer(models.BPE())  # no normaliser / pre-tokeniser: one chunk is one "word"
        bpe.train_from_iterator(texts, trainer=trainer)
        return cls(cfg, bpe)

    @property
    def vocab_size(self) -> int:
        """Tokens actually learnt (<= cfg.vocab_size when the data has fewer frequent pairs)."""
        return self.bpe.get_vocab_size()

    def encode(self, chunk: np.ndarray) -> list[int]:
        """(N, A) actions -> FAST token ids."""
        return self.bpe.encode(_to_chars(quantise(chunk, self.cfg), self.cfg)).ids

    def encode_text(self, chunk: np.ndarray) -> str:
        """(N, A) actions -> the VLM spelling '<fast_12><fast_7>...' (a training target)."""
        return to_text(self.encode(chunk))

    def decode_checked(self, ids: Sequence[int]) -> tuple[np.ndarray, DecodeInfo]:
        """Token ids -> ((N, A) actions, what was repaired). Never raises on a model's output."""
        pieces = [self.bpe.id_to_token(int(i)) if 0 <= int(i) < self.vocab_size else None for i in ids]
        codes = [ord(ch) - CHAR_BASE - self.cfg.k_max for p in pieces if p is not None for ch in p]
        values = [v for v in codes if -self.cfg.k_max <= v <= self.cfg.k_max]
        want = self.cfg.n_coefficients
        info = DecodeInfo(n_tokens=len(ids), n_coefficients=len(values), dropped_ids=pieces.count(None),
                          padded=max(0, want - len(values)), truncated=max(0, len(values) - want))
        values = (values + [0] * want)[:want]
        return dequantise(np.asarray(values), self.cfg), info

    def decode(self, ids: Sequence[int]) -> np.ndarray:
        """Token ids -> (N, A) actions; a malformed sequence is padded / truncated with a warning."""
        chunk, info = self.decode_checked(ids)
        if not info.well_formed:
            warnings.warn(f"malformed FAST sequence repaired: {info}", stacklevel=2)
        return chunk

    def decode_text(self, text: str) -> np.ndarray:
        """The VLM spelling (any other text between tokens is ignored) -> (N, A) actions."""
        return self.decode(from_text(text))

    def special_tokens(self) -> list[str]:
        """The VLM spellings of every FAST id, '<fast_0>' ... (to add to a backbone's vocabulary)."""
        return [FAST_TOKEN.format(i) for i in range(self.vocab_size)]

    def files(self) -> dict[str, str]:
        """The tokenizer as text files: fast.json (config) and fast_tokenizer.json (the BPE)."""
        meta = {"format_version": FORMAT_VERSION, "config": asdict(self.cfg), "vocab_size": self.vocab_size,
                "char_base": CHAR_BASE, "token": FAST_TOKEN, "reference": "Pertsch et al. 2025 (FAST)"}
        return {CONFIG_FILE: json.dumps(meta, indent=2) + "\n", TOKENIZER_FILE: self.bpe.to_str(pretty=True)}

    def save(self, path: str | Path) -> Path:
        """Write ``files()`` under ``path`` (JSON only, no pickles)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, text in self.files().items():
            (path / name).write_text(text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FastTokenizer":
        """A tokenizer written by ``save`` (or ``files`` into a backbone checkpoint)."""
        path = Path(path)
        meta = json.loads((path / CONFIG_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION or meta.get("char_base") != CHAR_BASE:
            raise ValueError(f"{path / CONFIG_FILE}: format {meta.get('format_version')} / char_base "
                             f"{meta.get('char_base')} not readable (expected {FORMAT_VERSION} / {CHAR_BASE})")
        return cls(FastConfig(**meta["config"]), Tokenizer.from_file(str(path / TOKENIZER_FILE)))


def to_text(ids: Sequence[int]) -> str:
    """FAST ids -> '<fast_i>' spelling."""
    return "".join(FAST_TOKEN.format(int(i)) for i in ids)


def from_text(text: str) -> list[int]:
    """'<fast_i>' spelling -> FAST ids (other text ignored)."""
    return [int(m) for m in _FAST_TOKEN_RE.findall(text)]


def action_chunks(store: DemoStoreLike, size: int, frames: np.ndarray | None = None) -> np.ndarray:
    """(len(frames), size, A) chunks: the ``size`` actions from each frame on, the episode's last
    action repeated past its end (the adapter's ``chunk`` step, ``adapter.actions.chunk_window``)."""
    _, stop = episode_bounds(store)
    frames = np.arange(len(store.actions)) if frames is None else np.asarray(frames, np.int64)
    idx = np.minimum(frames[:, None] + np.arange(size)[None, :], stop[frames][:, None] - 1)  # (M, size)
    return np.asarray(store.actions, np.float32)[idx]


def round_trip_errors(fast: FastTokenizer, chunks: np.ndarray) -> dict[str, float]:
    """Reconstruction errors and token counts of encode -> decode over chunks (M, N, A)."""
    chunks = np.asarray(chunks, np.float64)
    ids = [fast.encode(c) for c in chunks]
    err = np.stack([fast.decode(i) for i in ids]) - chunks
    n_tokens = np.array([len(i) for i in ids])
    return {"n_chunks": len(chunks), "max_abs_error": float(np.abs(err).max()),
            "rms_error": float(np.sqrt(np.mean(err ** 2))), "bound": fast.cfg.max_abs_error,
            "mean_tokens": float(n_tokens.mean()), "max_tokens": int(n_tokens.max()),
            "compression": float(fast.cfg.n_coefficients / n_tokens.mean()), "vocab_size": fast.vocab_size}
