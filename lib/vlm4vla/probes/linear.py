"""Linear probes of frozen vision features for control-relevant quantities.

Features: the image-token embeddings that enter the language model (vision encoder + projector
output), captured by one generic hook on the decoder's ``inputs_embeds`` at the positions of
``config.image_token_id``: the same path for every family, no per-family code. Pooled as the mean
over image tokens (``pooling="mean"``, (D,)) or flattened (``"tokens"``, (N*D,)).

Probe: ridge regression (features and targets standardised on the training frames, ridge strength
chosen by leave-episodes-out cross-validation on the training episodes), R^2 on held-out EPISODES
(never a frame of a training episode), with a 95% bootstrap interval over held-out episodes.
Reference points: the same probe on downsampled raw pixels (``pixels``) and on the features of a
random-init twin of the backbone (same architecture and config, fresh weights: ``random_init``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vlm4vla.backbones.base import Backbone
from vlm4vla.data.demos import DemoStore

# Probe targets: table columns stacked into one (F, k) array per target.
TARGETS = {"ee": ("ee_pos",), "object": ("object_pos",), "gripper": ("gripper_open",)}
POOLINGS = ("mean", "tokens")


@dataclass(frozen=True)
class LinearProbeConfig:
    """Which frames, which features, how the split, ridge strength and interval are chosen."""

    pooling: str = "mean"
    frame_stride: int = 1  # every k-th frame of the store (consecutive frames are near duplicates)
    max_frames: int = 3000  # larger stores: stride raised until at most this many frames remain
    test_fraction: float = 0.3  # share of each task's episodes held out (at least one when >= 2)
    alphas: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)  # x mean squared singular value
    cv_folds: int = 3
    pixel_size: int = 16  # pixel baseline: frames downsampled to pixel_size^2 x 3
    n_boot: int = 1000
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"LinearProbeConfig.pooling={self.pooling!r} is invalid: must be one of {POOLINGS}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"LinearProbeConfig.test_fraction={self.test_fraction!r} is invalid: must be in (0, 1)")
        for name, lo in (("frame_stride", 1), ("max_frames", 2), ("cv_folds", 2), ("pixel_size", 1),
                         ("n_boot", 1), ("batch_size", 1)):
            if getattr(self, name) < lo:
                raise ValueError(f"LinearProbeConfig.{name}={getattr(self, name)!r} is invalid: must be >= {lo}")
        if not self.alphas or min(self.alphas) <= 0:
            raise ValueError(f"LinearProbeConfig.alphas={self.alphas!r} is invalid: must be non-empty and > 0")


class _Captured(Exception):
    """Raised by the hook to stop the forward pass once the decoder's input is captured."""


@torch.no_grad()
def image_token_embeddings(backbone: Backbone, images: np.ndarray) -> torch.Tensor:
    """(B, N, D) embeddings of the image tokens as they enter the language model (projector output)."""
    inputs = backbone.encode(np.array(images), [""] * len(images))  # a copy: memmap slices are read-only
    is_image = inputs["input_ids"] == backbone.model.config.image_token_id  # (B, T)
    captured: dict[str, torch.Tensor] = {}

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        captured["embeds"] = kwargs["inputs_embeds"]
        raise _Captured

    handle = backbone.model.model.get_decoder().register_forward_pre_hook(hook, with_kwargs=True)
    try:
        backbone.last_hidden_state(inputs)
    except _Captured:
        pass
    finally:
        handle.remove()
    embeds = captured["embeds"]  # (B, T, D)
    return embeds[is_image].view(len(images), -1, embeds.shape[-1]).float()


def vision_features(backbone: Backbone, frames: np.ndarray, pooling: str = "mean", batch_size: int = 32) -> np.ndarray:
    """(F, D) mean-pooled or (F, N*D) flattened image-token embeddings of uint8 frames (F, H, W, 3)."""
    out = []
    for start in range(0, len(frames), batch_size):
        emb = image_token_embeddings(backbone, np.asarray(frames[start:start + batch_size]))  # (B, N, D)
        out.append((emb.mean(1) if pooling == "mean" else emb.flatten(1)).numpy())
    return np.concatenate(out).astype(np.float64)


def pixel_features(frames: np.ndarray, size: int = 16) -> np.ndarray:
    """(F, size*size*3) raw pixels in [0, 1], area-downsampled: the pixel baseline."""
    x = torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    return F.adaptive_avg_pool2d(x, size).flatten(1).numpy().astype(np.float64)


def random_init_twin(backbone: Backbone, seed: int = 0) -> Backbone:
    """Same architecture, config, tokenizer and image size; freshly initialised weights (seeded).

    With the zoo's seed this equals the zoo's ``scratch`` twin of a member built by make_backbone."""
    torch.manual_seed(seed)
    model = type(backbone.model)(copy.deepcopy(backbone.model.config)).to(backbone.model.dtype).eval()
    return Backbone(backbone.spec, model, backbone.tokenizer, backbone.image_size, {"init": "random (twin)"})


def probe_frames(store: DemoStore, cfg: LinearProbeConfig) -> np.ndarray:
    """Rows of the store used by the probe: every ``stride``-th, stride raised to fit ``max_frames``."""
    stride = max(cfg.frame_stride, int(np.ceil(len(store) / cfg.max_frames)))
    return np.arange(0, len(store), stride)


def targets(store: DemoStore, rows: np.ndarray, name: str) -> np.ndarray:
    """(len(rows), k) float array of probe target ``name`` (see TARGETS)."""
    cols = [np.stack(store.table[c].to_numpy()[rows]).reshape(len(rows), -1) for c in TARGETS[name]]
    return np.concatenate(cols, axis=1).astype(np.float64)


def episode_split(episodes: np.ndarray, tasks: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean test mask over frames: per task, a seeded ``test_fraction`` of its episodes held out."""
    rng = np.random.default_rng(seed)
    test: list[int] = []
    for task in sorted(set(tasks)):
        eps = np.unique(episodes[tasks == task])
        k = min(max(1, int(round(test_fraction * len(eps)))), len(eps) - 1)  # >= 1 test, >= 1 train
        test += rng.permutation(eps)[:k].tolist()
    return np.isin(episodes, test)


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean over target dimensions of 1 - SSE/SST (dimensions constant on the test set are skipped)."""
    sst = ((y - y.mean(0)) ** 2).sum(0)
    sse = ((y - pred) ** 2).sum(0)
    keep = sst > 1e-12 * len(y)
    return float(np.mean(1 - sse[keep] / sst[keep])) if keep.any() else float("nan")


@dataclass(frozen=True)
class Ridge:
    """A fitted ridge map: standardise x, linear map, un-standardise y."""

    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: np.ndarray
    y_scale: np.ndarray
    coef: np.ndarray  # (D, k)
    alpha: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.x_mean) / self.x_scale) @ self.coef * self.y_scale + self.y_mean


def _fit(x: np.ndarray, y: np.ndarray, alphas: tuple[float, ...]) -> list[Ridge]:
    """One ridge per relative strength ``alphas`` (x mean squared singular value), via one SVD."""
    xm, xs = x.mean(0), x.std(0) + 1e-8
    ym, ys = y.mean(0), y.std(0) + 1e-8
    u, s, vt = np.linalg.svd((x - xm) / xs, full_matrices=False)
    uty = u.T @ ((y - ym) / ys)  # (r, k)
    scale = float(np.mean(s**2)) if len(s) else 1.0
    return [Ridge(xm, xs, ym, ys, vt.T @ ((s / (s**2 + a * scale))[:, None] * uty), a) for a in alphas]


def fit_ridge(x: np.ndarray, y: np.ndarray, groups: np.ndarray, cfg: LinearProbeConfig) -> Ridge:
    """Ridge on all of (x, y), its strength chosen by leave-groups-out CV (groups = episodes)."""
    folds = np.array_split(np.random.default_rng(cfg.seed).permutation(np.unique(groups)), min(cfg.cv_folds, len(np.unique(groups))))
    if len(folds) >= 2:
        scores = np.zeros(len(cfg.alphas))
        for held in folds:
            val = np.isin(groups, held)
            for i, model in enumerate(_fit(x[~val], y[~val], cfg.alphas)):
                scores[i] += ((model.predict(x[val]) - y[val]) ** 2).sum()
        alpha = cfg.alphas[int(np.argmin(scores))]
    else:
        alpha = cfg.alphas[len(cfg.alphas) // 2]
    return _fit(x, y, (alpha,))[0]


def episode_bootstrap_r2(y: np.ndarray, pred: np.ndarray, groups: np.ndarray, strata: np.ndarray,
                         n_boot: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of R^2 over held-out episodes resampled whole, within each task
    (``strata``), so every resample keeps the task mix (R^2 pools between-task variance)."""
    per_stratum = [[np.flatnonzero(groups == g) for g in np.unique(groups[strata == s])] for s in np.unique(strata)]
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        take = np.concatenate([eps[i] for eps in per_stratum for i in rng.integers(0, len(eps), len(eps))])
        boots.append(r2_score(y[take], pred[take]))
    boots = np.asarray([b for b in boots if np.isfinite(b)])
    return (float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))) if len(boots) else (float("nan"),) * 2


def ridge_r2(x: np.ndarray, y: np.ndarray, episodes: np.ndarray, tasks: np.ndarray, test: np.ndarray,
             cfg: LinearProbeConfig) -> dict:
    """Held-out-episode R^2 of a ridge fit on the training episodes: score, 95% CI, n, alpha."""
    model = fit_ridge(x[~test], y[~test], episodes[~test], cfg)
    pred = model.predict(x[test])
    lo, hi = episode_bootstrap_r2(y[test], pred, episodes[test], tasks[test], cfg.n_boot, cfg.seed)
    return {"score": r2_score(y[test], pred), "ci_low": lo, "ci_high": hi, "n": int(test.sum()),
            "n_episodes": int(len(np.unique(episodes[test]))), "alpha": model.alpha}


def linear_probes(backbone: Backbone, store: DemoStore, cfg: LinearProbeConfig = LinearProbeConfig(),
                  random_twin: bool = True) -> dict[str, dict]:
    """R^2 of every target in TARGETS: ``{"ee": {score, ci_low, ci_high, n, n_episodes, alpha,
    pixels, random_init}, "object": ..., "gripper": ...}`` (``pixels`` / ``random_init``: the same
    probe's R^2 on raw pixels and on a random-init twin's features, the reference points)."""
    rows = probe_frames(store, cfg)
    frames = np.asarray(store.frames[rows])
    episodes = store.table["episode_index"].to_numpy()[rows]
    tasks = store.table["task"].to_numpy()[rows]
    test = episode_split(episodes, tasks, cfg.test_fraction, cfg.seed)
    if test.all() or not test.any():
        raise ValueError(f"the probe needs at least 2 episodes of some task, got {len(np.unique(episodes))} episodes")
    feats = {"model": vision_features(backbone, frames, cfg.pooling, cfg.batch_size),
             "pixels": pixel_features(frames, cfg.pixel_size)}
    if random_twin:
        feats["random_init"] = vision_features(random_init_twin(backbone, cfg.seed), frames, cfg.pooling, cfg.batch_size)
    out = {}
    for name in TARGETS:
        y = targets(store, rows, name)
        res = {key: ridge_r2(x, y, episodes, tasks, test, cfg) for key, x in feats.items()}
        out[name] = {**res["model"], **{key: r["score"] for key, r in res.items() if key != "model"}}
    return out
