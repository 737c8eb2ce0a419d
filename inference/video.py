"""Video in and out with PyAV (the ``video`` extra), and the flicker figure of an encoded sequence.

Frames are read with their presentation times and written back with the same times and time base, so
the output keeps the input's frame rate and timing (variable frame rates and ``--video_every`` gaps
included). The output is H.264 (libx264, yuv420p) in mp4, written to a temp file and moved into place
when complete (``utils.io.atomic_file``): an interrupted run never leaves a truncated video.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from render2style.utils.io import atomic_file

INSTALL_HINT = "install the video extra: pip install 'render2style[video]' (PyAV)"


def _av():
    try:
        import av
    except ImportError:
        raise ImportError(f"video input and output need PyAV; {INSTALL_HINT}") from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    """A video stream's frame rate (frames/s), time base (seconds per pts tick), size and frame count (0: unknown)."""
    fps: Fraction
    time_base: Fraction
    width: int
    height: int
    frames: int


def _open(path: Path):
    av = _av()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a readable video ({e})") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path}: expected a video stream, found none "
                         f"(streams: {[s.type for s in container.streams] or 'none'})")
    return container, container.streams.video[0]


def video_info(path: str | os.PathLike) -> VideoInfo:
    """The first video stream's :class:`VideoInfo`; FileNotFoundError / ValueError naming the file when it is
    missing, unreadable or has no decodable frame."""
    path = Path(path)
    container, stream = _open(path)
    try:
        fps = stream.average_rate or stream.guessed_rate or Fraction(25)
        info = VideoInfo(Fraction(fps), Fraction(stream.time_base or Fraction(1, 90000)), stream.codec_context.width,
                         stream.codec_context.height, int(stream.frames or 0))
        next(iter(container.decode(stream)))
    except StopIteration:
        raise ValueError(f"{path}: the video stream has no frames") from None
    except (_av().error.FFmpegError, ValueError) as e:
        raise ValueError(f"{path}: cannot decode video frames ({e})") from None
    finally:
        container.close()
    return info


def read_frames(path: str | os.PathLike) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(index, time in seconds, uint8 RGB [H, W, 3])`` of every frame of the first video stream, in order."""
    path = Path(path)
    container, stream = _open(path)
    stream.thread_type = "AUTO"
    try:
        fps = stream.average_rate or Fraction(25)
        for index, frame in enumerate(container.decode(stream)):
            time = float(frame.pts * frame.time_base) if frame.pts is not None else index / float(fps)
            yield index, time, frame.to_ndarray(format="rgb24")
    finally:
        container.close()


class VideoWriter:
    """``with VideoWriter(path, fps, time_base) as w: w.write(frames uint8 [N, H, W, 3], times)``.

    ``times`` are the frames' presentation times in seconds (the input's); they are written relative to the
    first one, in ticks of ``time_base`` (default 1/fps), so the timing is kept exactly."""

    def __init__(self, path: str | os.PathLike, fps: Fraction | float, time_base: Fraction | None = None,
                 crf: int = 18):
        self.path, self.crf = Path(path), crf
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        self.time_base = time_base or 1 / self.fps
        self.stream = self.t0 = self.last_pts = None
        self.frames = 0
        self._file = atomic_file(self.path)
        self.container = _av().open(self._file.__enter__(), "w", format="mp4")

    def write(self, frames: np.ndarray, times: Sequence[float]) -> None:
        av = _av()
        if len(frames) != len(times):
            raise ValueError(f"{self.path}: {len(frames)} frames but {len(times)} times")
        for rgb, t in zip(frames, times):
            if self.stream is None:
                h, w = rgb.shape[:2]
                if h % 2 or w % 2:
                    raise ValueError(f"{self.path}: H.264 yuv420p needs even frame sizes, got {w}x{h}")
                self.stream = self.container.add_stream("libx264", rate=self.fps)
                self.stream.width, self.stream.height, self.stream.pix_fmt = w, h, "yuv420p"
                self.stream.time_base = self.time_base
                self.stream.options = {"crf": str(self.crf)}
                self.t0 = t
            pts = round((t - self.t0) / self.time_base)
            if self.last_pts is not None and pts <= self.last_pts:
                raise ValueError(f"{self.path}: frame times must increase (pts {pts} after {self.last_pts})")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base, self.last_pts = pts, self.time_base, pts
            self.container.mux(self.stream.encode(frame))
            self.frames += 1

    def close(self, complete: bool = True) -> None:
        """Flush and move the video into place when ``complete`` and a frame was written; else drop it."""
        keep = complete and self.stream is not None
        try:
            if keep:
                self.container.mux(self.stream.encode(None))
            self.container.close()
        except BaseException as e:
            self._file.__exit__(type(e), e, e.__traceback__)     # removes the temp file
            raise
        if keep:
            self._file.__exit__(None, None, None)
        else:
            dropped = RuntimeError(f"{self.path}: not completed")
            self._file.__exit__(RuntimeError, dropped, None)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(complete=exc_type is None)


class FlickerMeter:
    """The flicker figure of a sequence: mean |output_t − output_{t−1}| over pixels and frame pairs, divided
    by the same for the inputs (1: outputs change as much as the inputs; > 1: they flicker more).

    ``update(inputs, outputs)`` with batches ``[B, C, H, W]`` in [-1, 1] in frame order (RGB channels used)."""

    def __init__(self) -> None:
        self.prev: tuple[torch.Tensor, torch.Tensor] | None = None
        self.sums = [0.0, 0.0]
        self.pairs = 0

    def update(self, inputs: torch.Tensor, outputs: torch.Tensor) -> None:
        for seq, k in ((inputs, 0), (outputs, 1)):
            x = seq[:, :3].float().cpu()
            if self.prev is not None:
                x = torch.cat([self.prev[k][None], x])
            self.sums[k] += float((x[1:] - x[:-1]).abs().flatten(1).mean(1).sum())
        self.pairs += len(inputs) - (self.prev is None)
        self.prev = (inputs[-1, :3].float().cpu(), outputs[-1, :3].float().cpu())

    def result(self) -> dict:
        """``{"input_change", "output_change", "flicker"}`` (None before two frames, or for a still input)."""
        if self.pairs < 1:
            return {"input_change": None, "output_change": None, "flicker": None}
        i, o = self.sums[0] / self.pairs, self.sums[1] / self.pairs
        return {"input_change": i, "output_change": o, "flicker": o / i if i > 0 else None}
