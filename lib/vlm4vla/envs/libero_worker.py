"""LIBERO environments stepped in a ``.venv-libero`` process for the evaluation harness (numpy only).

The harness and the policy live in the main environment (Meta-World's mujoco 3.3, torch); LIBERO needs
robosuite 1.4 and mujoco 2.3.7 (``LIBERO.md``). ``libero_eval.LiberoVectorEnvs`` starts it with
``.venv-libero/bin/python -m vlm4vla.envs.libero_worker CONFIG_JSON`` (``lib/`` on its PYTHONPATH); the
worker builds one ``LiberoTaskEnv`` per slot it owns and answers ``reset`` / ``step`` requests on its
stdin / stdout.

Messages are length-prefixed frames: a JSON header and an ``.npz`` of the arrays (``allow_pickle=False``
both ways, so nothing is unpickled and numpy 1.26 and 2.x read each other). The worker moves its own
stdout to stderr before importing LIBERO, so a library's print cannot corrupt the channel.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import traceback
from typing import Any, BinaryIO

import numpy as np

_LENGTH = struct.Struct("<Q")


def encode(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """One frame: 8-byte length, 8-byte header length, JSON header, npz of ``arrays``."""
    head = json.dumps(header).encode()
    buf = io.BytesIO()
    np.savez(buf, **(arrays or {}))
    body = _LENGTH.pack(len(head)) + head + buf.getvalue()
    return _LENGTH.pack(len(body)) + body


def decode(body: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, arrays) of a frame body (without its leading length)."""
    (n,) = _LENGTH.unpack_from(body)
    header = json.loads(body[_LENGTH.size : _LENGTH.size + n])
    with np.load(io.BytesIO(body[_LENGTH.size + n :]), allow_pickle=False) as npz:
        return header, {k: npz[k] for k in npz.files}


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next frame body from ``stream``; None at end of stream."""
    raw = stream.read(_LENGTH.size)
    if len(raw) < _LENGTH.size:
        return None
    (n,) = _LENGTH.unpack(raw)
    body = stream.read(n)
    if len(body) < n:
        return None
    return body


class _Slots:
    """The worker's environments: one ``LiberoTaskEnv`` (and expert, if asked) per slot."""

    def __init__(self, config: dict[str, Any]) -> None:
        from vlm4vla.envs import libero, libero_expert  # here, after main() has moved stdout out of the channel

        self.settle = int(config["settle_steps"])
        self.envs = {int(s): libero.LiberoTaskEnv(config["suite"], int(task), config["image_size"], config["camera"],
                                                  config["max_episode_steps"])
                     for s, task in config["slots"].items()}
        self.experts = {s: libero_expert.PickPlaceExpert() for s in self.envs} if config["expert"] else {}

    def reset(self, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
        for slot, init in zip(header["slots"], header["inits"]):
            self.envs[slot].reset(int(init))
            self.envs[slot].settle(self.settle)
            if slot in self.experts:
                self.experts[slot].reset()
        infos = [{"reward": 0.0, "success": False, "truncated": False}] * len(header["slots"])
        return self._observe(header["slots"], infos)

    def step(self, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
        infos = [self.envs[s].step(a) for s, a in zip(header["slots"], arrays["actions"])]
        return self._observe(header["slots"], infos)

    def _observe(self, slots: list[int], infos: list[dict[str, Any]]) -> bytes:
        envs = [self.envs[s] for s in slots]
        arrays = {"image": np.stack([e.render() for e in envs]),
                  "state": np.stack([np.asarray(e.obs["robot0_proprio-state"], np.float32) for e in envs])}
        if self.experts:
            arrays["expert_action"] = np.stack([self.experts[s].act(e) for s, e in zip(slots, envs)]).astype(np.float32)
        header = {"slots": slots, **{k: [info[k] for info in infos] for k in ("reward", "success", "truncated")}}
        return encode(header, arrays)

    def close(self) -> None:
        for env in self.envs.values():
            env.close()


def main(argv: list[str]) -> int:
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # from here on, anything printed goes to stderr, not into the channel
    sys.stdout = sys.stderr
    os.environ.setdefault("MUJOCO_GL", "egl")
    requests = sys.stdin.buffer

    def reply(frame: bytes) -> None:
        channel.write(frame)
        channel.flush()

    try:
        slots = _Slots(json.loads(argv[0]))
    except Exception:
        reply(encode({"error": traceback.format_exc()}))
        return 1
    reply(encode({"ready": True, "tasks": {s: {"task_id": e.task_id, "name": e.name, "instruction": e.instruction}
                                           for s, e in slots.envs.items()}}))
    while (body := read_frame(requests)) is not None:
        header, arrays = decode(body)
        if header["command"] == "close":
            break
        try:
            reply(getattr(slots, header["command"])(header, arrays))
        except Exception:
            reply(encode({"error": traceback.format_exc()}))
    slots.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
