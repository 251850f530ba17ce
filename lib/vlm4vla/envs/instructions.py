"""Natural-language instructions for the Meta-World tasks (Meta-World itself ships none).

Each task has four hand-written paraphrases. The first ``TRAIN_PARAPHRASES`` are used for
demonstrations and the default evaluation; the rest are held out, so language generalisation can be
measured by evaluating with ``instruction_split="heldout"`` (a policy that only memorised the
training sentences falls back to its task prior there).
"""

from __future__ import annotations

import zlib

import numpy as np

TRAIN_PARAPHRASES = 3  # of 4 per task: 3 seen in training, 1 held out
INSTRUCTION_SPLITS = ("train", "heldout", "all")

# Task -> paraphrases. Wording follows what a person would say looking at the scene.
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "assembly-v3": ("put the ring onto the peg", "assemble the nut on the peg", "slide the ring over the pole", "place the round nut on the peg"),
    "basketball-v3": ("put the ball into the hoop", "dunk the ball in the basket", "pick up the ball and drop it through the hoop", "score a basket with the ball"),
    "bin-picking-v3": ("move the block from one bin to the other", "pick the cube out of the bin and place it in the other bin", "transfer the block into the second bin", "carry the cube across to the empty bin"),
    "box-close-v3": ("close the box with its lid", "put the lid on the box", "cover the box", "place the lid onto the box"),
    "button-press-topdown-v3": ("press the button from the top", "push the button down", "press down on the button", "push the yellow button from above"),
    "button-press-topdown-wall-v3": ("press the button from the top behind the wall", "push the button down past the wall", "press down on the button over the wall", "reach over the wall and press the button"),
    "button-press-v3": ("press the button in front of you", "push the button forward", "press the button on the box", "push the button horizontally"),
    "button-press-wall-v3": ("press the button behind the wall", "push the button past the wall", "reach around the wall and press the button", "press the button hidden behind the wall"),
    "coffee-button-v3": ("press the coffee machine button", "push the button on the coffee machine", "start the coffee machine", "turn on the coffee maker with its button"),
    "coffee-pull-v3": ("pull the mug away from the coffee machine", "take the cup out from under the coffee machine", "slide the mug back toward you", "move the coffee cup away from the machine"),
    "coffee-push-v3": ("push the mug under the coffee machine", "slide the cup beneath the coffee spout", "move the mug to the coffee machine", "put the coffee cup under the machine"),
    "dial-turn-v3": ("turn the dial", "rotate the knob", "spin the dial around", "twist the dial"),
    "disassemble-v3": ("take the ring off the peg", "remove the nut from the peg", "lift the ring up off the pole", "disassemble the nut from the peg"),
    "door-close-v3": ("close the door", "shut the door", "swing the door closed", "push the door shut"),
    "door-lock-v3": ("lock the door", "turn the lock on the door", "rotate the door lock down", "lock the door by turning its knob"),
    "door-open-v3": ("open the door", "pull the door open", "swing the door open", "open the door by its handle"),
    "door-unlock-v3": ("unlock the door", "turn the lock to unlock the door", "rotate the door lock up", "release the lock on the door"),
    "hand-insert-v3": ("put your hand into the hole", "insert the gripper into the hole", "reach into the hole in the table", "move the hand down into the hole"),
    "drawer-close-v3": ("close the drawer", "push the drawer shut", "slide the drawer closed", "shut the drawer"),
    "drawer-open-v3": ("open the drawer", "pull the drawer open", "slide the drawer out", "pull out the drawer"),
    "faucet-open-v3": ("turn the faucet on", "open the tap", "rotate the faucet handle to open it", "turn on the water"),
    "faucet-close-v3": ("turn the faucet off", "close the tap", "rotate the faucet handle to close it", "turn off the water"),
    "hammer-v3": ("hammer the nail in", "use the hammer to drive in the nail", "pick up the hammer and hit the nail", "knock the nail in with the hammer"),
    "handle-press-side-v3": ("press the handle down from the side", "push the side handle down", "press down the handle on the side", "lower the handle from the side"),
    "handle-press-v3": ("press the handle down", "push the handle down", "press down on the handle", "lower the handle"),
    "handle-pull-side-v3": ("pull the handle up from the side", "lift the side handle", "raise the handle on the side", "pull up the handle from the side"),
    "handle-pull-v3": ("pull the handle up", "lift the handle", "raise the handle", "pull up on the handle"),
    "lever-pull-v3": ("pull the lever up", "lift the lever", "raise the lever", "pull up on the lever"),
    "pick-place-wall-v3": ("pick up the puck and place it behind the wall", "move the puck over the wall to the goal", "lift the puck past the wall and put it down", "carry the puck over the wall"),
    "pick-out-of-hole-v3": ("pick the peg out of the hole", "lift the peg out of the hole", "take the peg out of the hole", "pull the peg up out of the hole"),
    "pick-place-v3": ("pick up the puck and place it at the goal", "move the puck to the target", "lift the puck and put it down at the goal", "carry the puck to the target position"),
    "plate-slide-v3": ("slide the plate into the goal", "push the plate into the net", "slide the plate forward into the goal", "shove the plate into the goal"),
    "plate-slide-side-v3": ("slide the plate sideways into the goal", "push the plate into the goal from the side", "slide the plate to the side net", "shove the plate sideways into the net"),
    "plate-slide-back-v3": ("slide the plate back out of the goal", "pull the plate out of the net", "slide the plate back toward you", "get the plate out of the goal"),
    "plate-slide-back-side-v3": ("slide the plate out of the goal sideways", "pull the plate sideways out of the net", "slide the plate back from the side goal", "move the plate out of the side net"),
    "peg-insert-side-v3": ("insert the peg into the hole from the side", "push the peg sideways into the hole", "put the peg into the hole in the box", "slide the peg into the side hole"),
    "peg-unplug-side-v3": ("unplug the peg from the side", "pull the peg out of the hole sideways", "remove the peg from the box", "slide the peg out of the side hole"),
    "soccer-v3": ("kick the ball into the goal", "push the soccer ball into the net", "score a goal with the ball", "roll the ball into the goal"),
    "stick-push-v3": ("push the bottle with the stick", "use the stick to push the bottle", "grab the stick and push the bottle forward", "move the bottle with the stick"),
    "stick-pull-v3": ("pull the bottle with the stick", "use the stick to pull the bottle", "grab the stick and pull the bottle back", "drag the bottle with the stick"),
    "push-v3": ("push the puck to the goal", "slide the puck to the target", "push the puck along the table to the goal", "shove the puck to the target position"),
    "push-wall-v3": ("push the puck around the wall to the goal", "slide the puck past the wall to the target", "push the puck behind the wall", "move the puck around the wall"),
    "push-back-v3": ("push the puck back to the goal", "slide the puck backward to the target", "pull the puck back toward the goal", "move the puck back to the target"),
    "reach-v3": ("reach the goal position", "move the gripper to the target", "reach toward the goal", "put the hand at the target point"),
    "reach-wall-v3": ("reach the goal over the wall", "move the gripper past the wall to the target", "reach around the wall to the goal", "put the hand at the target behind the wall"),
    "shelf-place-v3": ("put the block on the shelf", "place the cube onto the shelf", "pick up the block and set it on the shelf", "move the cube to the shelf"),
    "sweep-into-v3": ("sweep the puck into the hole", "push the puck into the hole", "slide the puck into the hole in the table", "sweep the block into the hole"),
    "sweep-v3": ("sweep the puck off the table", "push the puck off the edge", "slide the puck off the table", "sweep the block off the side"),
    "window-open-v3": ("open the window", "slide the window open", "push the window open", "slide the window sideways to open it"),
    "window-close-v3": ("close the window", "slide the window shut", "push the window closed", "slide the window sideways to close it"),
}


def instructions_for(task: str, split: str = "train") -> tuple[str, ...]:
    """The paraphrases of ``task`` in ``split`` ("train", "heldout" or "all")."""
    if split not in INSTRUCTION_SPLITS:
        raise ValueError(f"instruction split {split!r} is not one of {INSTRUCTION_SPLITS}")
    phrases = PARAPHRASES[task]
    if split == "train":
        return phrases[:TRAIN_PARAPHRASES]
    if split == "heldout":
        return phrases[TRAIN_PARAPHRASES:]
    return phrases


def pick_instruction(task: str, split: str, seed: int, episode: int) -> str:
    """One paraphrase for (task, episode), deterministic in ``seed`` (no global random state)."""
    choices = instructions_for(task, split)
    rng = np.random.default_rng([seed, stable_hash(task), episode, 1])
    return choices[int(rng.integers(len(choices)))]


def stable_hash(text: str) -> int:
    """A process-independent hash (Python's ``hash`` of str is salted per process)."""
    return zlib.crc32(text.encode())
