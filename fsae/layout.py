"""Image layouts: which axis of an observation holds the channels, decided once, as Stable-Baselines3 decides it.

Contents:
    LAYOUTS       -- the settings of ``image_layout``: 'auto', 'channels_first', 'channels_last'.
    ImageLayout   -- one observation's shape and layout; ``chw`` its channels-first shape (C, H, W), ``to_chw`` a batch
                     in that shape.
    detect_layout -- the layout of a shape: stated, or detected by SB3's rule.

The shapes an image environment gives, and how they are read (``chw`` is what the model and the policy see):

    (H, W)        a grey frame (``AtariPreprocessing``)                  -> (1, H, W)
    (C, H, W)     channels-first (the fsae/ environments; FrameStackObservation of grey frames: (k, H, W))
                                                                         -> as it is
    (H, W, C)     channels-last (MiniGrid's RGB views, raw Atari; SB3's VecFrameStack stacks these along C)
                                                                         -> (C, H, W)
    (k, ...)      FrameStackObservation of a 3-D frame: (k, H, W, C) or (k, C, H, W)
                                                                         -> (k * C, H, W), frame i in channels
                                                                            i*C .. (i+1)*C - 1

'auto' reads a 3-D shape (or a stack's 3-D frame) as SB3's ``is_image_space_channels_first`` does: channels-first when
the first axis is the smallest, channels-last when the last is; a shape whose middle axis is the smallest, or whose
smallest size two axes share ((10, 10, 10), (12, 12, 16): SB3 would take the first), is refused rather than guessed
(state ``image_layout``). A stated layout is taken as it is.

Example:
    >>> layout = detect_layout((28, 28, 3))
    >>> layout, layout.chw
    (ImageLayout(shape=(28, 28, 3), channels_last=True), (3, 28, 28))
    >>> detect_layout((4, 84, 84)).chw, detect_layout((84, 84)).chw, detect_layout((4, 7, 7, 3)).chw
    ((4, 84, 84), (1, 84, 84), (12, 7, 7))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LAYOUTS = ("auto", "channels_first", "channels_last")


@dataclass(frozen=True)
class ImageLayout:
    """An observation of ``shape`` (2-D grey, 3-D image, or 4-D stack of 3-D frames), channels last or first."""

    shape: tuple[int, ...]
    channels_last: bool

    @property
    def chw(self) -> tuple[int, int, int]:
        """The channels-first shape (C, H, W) of one observation, a stack's frames one after the other along C."""
        if len(self.shape) == 2:
            return (1, *self.shape)  # type: ignore[return-value]
        frame = self.shape[-3:]
        c, h, w = (frame[2], frame[0], frame[1]) if self.channels_last else frame
        k = self.shape[0] if len(self.shape) == 4 else 1
        return (k * c, h, w)

    @property
    def name(self) -> str:
        """E.g. 'channels-last (H, W, C)', 'grey (H, W)', 'stack (k, C, H, W)'."""
        if len(self.shape) == 2:
            return "grey (H, W)"
        axes = "(H, W, C)" if self.channels_last else "(C, H, W)"
        return (
            f"stack (k, {axes[1:]}"
            if len(self.shape) == 4
            else f"channels-{'last' if self.channels_last else 'first'} {axes}"
        )

    def describe(self) -> str:
        """The shape with its layout, e.g. '(28, 28, 3) channels-last (H, W, C)'."""
        return f"{tuple(self.shape)} {self.name}"

    def conversion(self) -> str:
        """What is done to make one observation (C, H, W), e.g. 'channels-last (H, W, C) (28, 28, 3) -> (3, 28, 28)'
        or 'channels-first (C, H, W) (1, 84, 84) as given' (a channels-last cube such as (10, 10, 10) is transposed,
        though its shape reads the same)."""
        same = self.chw == self.shape and not self.channels_last
        return f"{self.name} {self.shape} " + ("as given" if same else f"-> {self.chw}")

    def to_chw(self, batch: np.ndarray) -> np.ndarray:
        """A batch (B, *shape) -> (B, *chw), C-contiguous (a copy unless it is channels-first already)."""
        assert batch.shape[1:] == self.shape, f"expected a batch (B, {self.shape}), got {batch.shape}"
        b = len(batch)
        if len(self.shape) == 2:
            return batch[:, None]  # (B, 1, H, W), a view
        if self.channels_last:
            axes = (0, 3, 1, 2) if len(self.shape) == 3 else (0, 1, 4, 2, 3)  # (B[, k], C, H, W)
            batch = np.ascontiguousarray(batch.transpose(axes))
        return batch.reshape(b, *self.chw)


def detect_layout(shape: tuple[int, ...], layout: str = "auto") -> ImageLayout:
    """The ``ImageLayout`` of an observation of ``shape``: ``layout`` when stated, else SB3's rule (the channel axis
    is the smallest of the three; the middle one smallest, or a tie for the smallest, is refused). ``ValueError`` of
    one line when the shape is not an image of 2, 3 or 4 axes."""
    shape = tuple(int(n) for n in shape)
    if layout not in LAYOUTS:
        raise ValueError(f"image_layout must be one of {list(LAYOUTS)}, got '{layout}'")
    if len(shape) not in (2, 3, 4):
        raise ValueError(
            f"an image observation has 2 axes (H, W), 3 ((C, H, W) or (H, W, C)) or 4 (a frame stack), got {shape}"
        )
    if len(shape) == 2:
        return ImageLayout(shape, False)
    if layout != "auto":
        return ImageLayout(shape, layout == "channels_last")
    frame = shape[-3:]
    smallest = [i for i, n in enumerate(frame) if n == min(frame)]
    if smallest == [1] or len(smallest) > 1:
        tie = ", ".join(str(i) for i in smallest)
        why = f"the middle one of {frame} is the smallest" if len(smallest) == 1 else f"axes {tie} of {frame} tie"
        raise ValueError(
            f"cannot tell which axis of {shape} holds the channels ({why}); "
            "set image_layout to channels_first or channels_last"
        )
    return ImageLayout(shape, smallest == [2])
