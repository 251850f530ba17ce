"""Action-chunk training samples over a demonstration store, deterministic per seed and draw.

A sample is one frame t of an episode: its image (random-shift augmented), an instruction (a
training paraphrase of its task, sampled) and the next N actions in the adapter's conventions
(``vlm4vla.adapter.actions``). Every random choice comes from ``default_rng([seed, draw])`` where
``draw`` is the sample's global position in the training stream, so a resumed run sees exactly the
samples an uninterrupted one would (``StepSampler`` makes the stream from the step number alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence

import numpy as np
import pandas as pd
import torch

from vlm4vla.adapter.actions import ActionConventions, chunk_window
from vlm4vla.constants import ACTION_CLIP, INSTRUCTION, OBS_IMAGE, TASK
from vlm4vla.envs.instructions import PARAPHRASES, instructions_for

ARM_TARGET = "action.arm"  # (N, arm_dim) float32 in [-1, 1]
GRIPPER_TARGET = "action.gripper"  # (N,) float32 in {0, 1}


class DemoStoreLike(Protocol):
    """What the dataset reads from the benchmark engineer's ``DemoStore``."""

    frames: np.ndarray  # (F, H, W, 3) uint8
    actions: np.ndarray  # (F, A) float32
    table: pd.DataFrame  # per frame: episode_index, frame_index, task, instruction
    episodes: pd.DataFrame  # per episode: start, length


@dataclass(frozen=True)
class DataConfig:
    """Training data: where the demonstrations are and how samples are drawn.

    shift_pixels: random-shift augmentation (pad by replication, random crop back), as in the pilot
        (TOOLCHAIN.md); 4 px at 64 px as in DrQ. 0 disables it.
    paraphrases: sample a training paraphrase of the task per sample (else the stored instruction).
    clip: action clip of the conventions (paper 0.65, constants.ACTION_CLIP).
    num_workers: DataLoader worker processes (0 on the 2-core CPU machines).
    """

    demos_dir: str = "artifacts/demonstrations"
    shift_pixels: int = 4
    paraphrases: bool = True
    clip: float = ACTION_CLIP
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.shift_pixels < 0:
            raise ValueError(f"DataConfig.shift_pixels={self.shift_pixels!r} must be >= 0")
        if not 0 < self.clip <= 1:
            raise ValueError(f"DataConfig.clip={self.clip!r} must lie in (0, 1]")
        if self.num_workers < 0:
            raise ValueError(f"DataConfig.num_workers={self.num_workers!r} must be >= 0")


def episode_bounds(store: DemoStoreLike) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the [start, stop) frame rows of its episode."""
    starts = store.episodes["start"].to_numpy(np.int64)
    stops = starts + store.episodes["length"].to_numpy(np.int64)
    n = len(store.actions)
    start, stop = np.zeros(n, np.int64), np.zeros(n, np.int64)
    for a, b in zip(starts, stops):
        start[a:b], stop[a:b] = a, b
    if (stop == 0).any():
        raise ValueError(f"{int((stop == 0).sum())} frames belong to no episode in store.episodes")
    return start, stop


def random_shift(image: np.ndarray, pixels: int, rng: np.random.Generator) -> np.ndarray:
    """Pad ``pixels`` on every side by edge replication and crop back at a random offset."""
    if pixels == 0:
        return image
    h, w = image.shape[:2]
    padded = np.pad(image, ((pixels, pixels), (pixels, pixels), (0, 0)), mode="edge")
    dy, dx = rng.integers(0, 2 * pixels + 1, size=2)
    return padded[dy:dy + h, dx:dx + w]


class ChunkDataset(torch.utils.data.Dataset):
    """Samples keyed by ``(frame, draw)``: image, instruction and the N-action target chunk."""

    def __init__(self, store: DemoStoreLike, conventions: ActionConventions, chunk_size: int,
                 cfg: DataConfig, seed: int = 0) -> None:
        self.store, self.cfg, self.seed, self.chunk_size = store, cfg, seed, chunk_size
        self.arm, self.gripper = conventions.encode(np.asarray(store.actions))  # (F, A-1), (F,)
        self.start, self.stop = episode_bounds(store)
        self.tasks = store.table["task"].astype(str).to_numpy()
        self.instructions = store.table["instruction"].astype(str).to_numpy()

    def __len__(self) -> int:
        return len(self.arm)

    def _instruction(self, frame: int, rng: np.random.Generator) -> str:
        task = self.tasks[frame]
        if not self.cfg.paraphrases or task not in PARAPHRASES:
            return str(self.instructions[frame])
        choices = instructions_for(task, "train")
        return choices[int(rng.integers(len(choices)))]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        frame, draw = (int(key), int(key)) if np.isscalar(key) else (int(key[0]), int(key[1]))
        rng = np.random.default_rng([self.seed, draw])
        start, stop = self.start[frame], self.stop[frame]
        return {
            OBS_IMAGE: random_shift(np.asarray(self.store.frames[frame]), self.cfg.shift_pixels, rng),
            INSTRUCTION: self._instruction(frame, rng),
            TASK: self.tasks[frame],
            ARM_TARGET: chunk_window(self.arm, start, stop, frame, self.chunk_size),
            GRIPPER_TARGET: chunk_window(self.gripper, start, stop, frame, self.chunk_size),
        }


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples: images uint8 (B, H, W, 3) tensor, instructions list, targets float tensors."""
    return {
        OBS_IMAGE: torch.from_numpy(np.stack([s[OBS_IMAGE] for s in samples])),
        INSTRUCTION: [s[INSTRUCTION] for s in samples],
        TASK: [s[TASK] for s in samples],
        ARM_TARGET: torch.from_numpy(np.stack([s[ARM_TARGET] for s in samples])),
        GRIPPER_TARGET: torch.from_numpy(np.stack([s[GRIPPER_TARGET] for s in samples])),
    }


class StepSampler(torch.utils.data.Sampler):
    """Batches of ``(frame, draw)`` keys for steps ``start_step .. steps-1``, a pure function of the step.

    The stream is one seeded permutation of the frames per epoch; with several processes, process
    ``rank`` takes its own slice of every global step, so the global batch is ``batch_size * world``.
    """

    def __init__(self, n_frames: int, batch_size: int, steps: int, seed: int,
                 start_step: int = 0, rank: int = 0, world: int = 1) -> None:
        if n_frames < 1 or batch_size < 1:
            raise ValueError(f"need n_frames >= 1 and batch_size >= 1, got {n_frames}, {batch_size}")
        self.n, self.batch, self.steps, self.seed = n_frames, batch_size, steps, seed
        self.start, self.rank, self.world = start_step, rank, world
        self._perm: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch, 7]).permutation(self.n))
        return self._perm[1]

    def batch_keys(self, step: int) -> list[tuple[int, int]]:
        """The keys of this process's share of global step ``step``."""
        first = (step * self.world + self.rank) * self.batch
        draws = range(first, first + self.batch)
        return [(int(self._permutation(d // self.n)[d % self.n]), d) for d in draws]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.steps):
            yield self.batch_keys(step)

    def __len__(self) -> int:
        return max(self.steps - self.start, 0)
