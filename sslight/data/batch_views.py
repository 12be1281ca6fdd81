"""Multi-crop views of a whole batch at once, each sample's views fixed by its own seed.

Per sample, every random parameter of every view comes from one ``torch.Generator`` seeded with
the sample's seed, so a sample's views do not depend on the batch it lands in. The distributions
are torchvision v2's: ``RandomResizedCrop`` (10 attempts, log-uniform aspect ratio 3/4–4/3,
centre-crop fallback), ``RandomHorizontalFlip``, ``RandomApply(ColorJitter)`` (factors uniform in
the jitter ranges, the four ops in a random order), ``RandomGrayscale``, ``GaussianBlur`` (sigma
uniform in 0.1–2), ``RandomSolarize``. The pixels are then worked on per view size, all samples
together (sslight/data/batch_ops.py): one uint8 bicubic antialias resize (and flip) per crop,
as torchvision v2 does on uint8 images, then, in float at the output size, colour ops on
contiguous runs of rows that share a jitter order, grayscale, blur and solarize on the rows that
drew them, with per-row factors, and the views rounded back to uint8 (the seed's PIL views are
uint8 too): a loader worker hands over a quarter of the bytes, normalised where the network
trains (``batch_ops.normalise``). The ops are tensor maths: images on an accelerator make their
views there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sslight.data import batch_ops as ops
from sslight.data import fused_ops

ATTEMPTS = 10  # RandomResizedCrop's tries before its centre-crop fallback
RATIO = (3 / 4, 4 / 3)
# Uniform draws per view, by position: (area, ratio) per attempt, then top, left, flip, jitter?,
# 4 for the jitter order, 4 jitter factors, grayscale?, blur?, sigma, solarize?
_CROP = 2 * ATTEMPTS
_FLIP, _JITTER, _ORDER = _CROP + 2, _CROP + 3, _CROP + 4
_FACTORS = _ORDER + 4
_GRAY, _BLUR, _SIGMA, _SOLARIZE = range(_FACTORS + 4, _FACTORS + 8)
DRAWS = _SOLARIZE + 1
_ORDER_CODE = torch.tensor([64, 16, 4, 1])  # a jitter order as one number
# Float bytes of the views made together on the CPU, so that their rows stay in the caches
# between ops: 8 samples of DINO's ImageNet views (2 × 224² + 6 × 128², ~2.4 MB a sample), a
# whole batch of small ones (a 64-image batch at 32 px is ~3 MB; splitting it only adds calls).
# On accelerators the whole batch at once.
CPU_CHUNK_BYTES = 20 * 2**20


@dataclass(frozen=True)
class ViewSpec:
    """One view's augmentation: a ``size`` px crop of area ``scale``, flipped with probability
    ``flip_p``, colour jitter (brightness, contrast, saturation, hue) with probability
    ``jitter_p``, grayscale, blur and solarize probabilities, then ImageNet normalisation."""

    size: int
    scale: tuple[float, float]
    jitter: tuple[float, float, float, float]
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    solarize_p: float = 0.0
    flip_p: float = 0.5

    def jitter_ranges(self) -> list[tuple[float, float]]:
        """ColorJitter's factor ranges: ``[max(0, 1 − j), 1 + j]`` and ``[−hue, hue]``."""
        *scaling, hue = self.jitter
        return [(max(0.0, 1 - j), 1 + j) for j in scaling] + [(-hue, hue)]


def draw_uniforms(seeds: Sequence[int], views: int) -> torch.Tensor:
    """``[B, views, DRAWS]`` float64 uniforms in [0, 1), row ``b`` from ``seeds[b]`` only."""
    generator = torch.Generator()
    rows = []
    for seed in seeds:
        generator.manual_seed(int(seed))
        rows.append(torch.rand(views * DRAWS, generator=generator, dtype=torch.float64))
    return torch.stack(rows).view(len(seeds), views, DRAWS)


def _between(u: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    return low + (high - low) * u


def crop_boxes(
    u: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor, scales: torch.Tensor
) -> torch.Tensor:
    """RandomResizedCrop's boxes ``[B, V, 4]`` (top, left, height, width) from the uniforms
    ``u [B, V, DRAWS]``, image sizes ``[B]`` and per-view area ranges ``scales [V, 2]``."""
    H, W = heights.double().view(-1, 1, 1), widths.double().view(-1, 1, 1)
    area = H * W * _between(u[..., 0:_CROP:2], scales[:, :1], scales[:, 1:])
    log_ratio = _between(u[..., 1:_CROP:2], math.log(RATIO[0]), math.log(RATIO[1])).exp()
    w = (area * log_ratio).sqrt().round()
    h = (area / log_ratio).sqrt().round()
    fits = (w > 0) & (w <= W) & (h > 0) & (h <= H)
    first = fits.to(torch.uint8).argmax(-1, keepdim=True)  # the first attempt that fits
    w, h = w.gather(-1, first).squeeze(-1), h.gather(-1, first).squeeze(-1)
    H, W = H.squeeze(-1), W.squeeze(-1)
    top = (u[..., _CROP] * (H - h + 1)).floor()
    left = (u[..., _CROP + 1] * (W - w + 1)).floor()
    # fallback after ATTEMPTS misses: the largest centred crop within the ratio range
    in_ratio = W / H
    fw = torch.where(in_ratio > RATIO[1], (H * RATIO[1]).round(), W).expand_as(w)
    fh = torch.where(in_ratio < RATIO[0], (W / RATIO[0]).round(), H).expand_as(h)
    missed = ~fits.any(-1)
    w, h = torch.where(missed, fw, w), torch.where(missed, fh, h)
    top = torch.where(missed, ((H - h) / 2).floor(), top)
    left = torch.where(missed, ((W - w) / 2).floor(), left)
    return torch.stack([top, left, h, w], dim=-1).long()


@dataclass
class ViewParams:
    """Every random choice of ``V`` views of ``B`` samples, tensors ``[B, V, ...]``."""

    boxes: torch.Tensor  # [B, V, 4] long: top, left, height, width
    flip: torch.Tensor  # [B, V] bool
    jitter: torch.Tensor  # [B, V] bool: colour jitter applied
    order: torch.Tensor  # [B, V, 4] long: jitter op order (0 brightness ... 3 hue)
    factors: torch.Tensor  # [B, V, 4] float32: brightness, contrast, saturation, hue factors
    gray: torch.Tensor  # [B, V] bool
    blur: torch.Tensor  # [B, V] bool
    sigma: torch.Tensor  # [B, V] float32: blur sigma
    solarize: torch.Tensor  # [B, V] bool

    def samples(self, start: int, stop: int) -> ViewParams:
        """The parameters of samples ``start`` to ``stop`` (exclusive)."""
        return ViewParams(**{name: value[start:stop] for name, value in vars(self).items()})


class BatchedMultiCrop:
    """``(uint8 images, seeds) -> views``: one ``[B, 3, size, size]`` normalised float tensor
    per view spec (``uint8_views``: the uint8 pixels before normalisation), sample ``b``'s views
    drawn from ``seeds[b]`` alone. Images may differ in size."""

    def __init__(self, specs: Sequence[ViewSpec]) -> None:
        if not specs:
            raise ValueError("need at least one view")
        self.specs = tuple(specs)
        self.sizes = [spec.size for spec in self.specs]
        # the views of each size, made together; samples per chunk on the CPU: as many as fit
        # CPU_CHUNK_BYTES of float views
        self._by_size = {
            size: [v for v, s in enumerate(self.sizes) if s == size] for size in self.sizes
        }
        self._cpu_chunk = max(1, CPU_CHUNK_BYTES // sum(3 * size * size * 4 for size in self.sizes))

    def _column(self, *fields: str) -> torch.Tensor:
        """``[V, len(fields)]`` float64 spec values."""
        return torch.tensor(
            [[getattr(s, f) for f in fields] for s in self.specs], dtype=torch.float64
        )

    def draw(
        self, seeds: Sequence[int], heights: Sequence[int], widths: Sequence[int]
    ) -> ViewParams:
        """The random parameters of every view of images of the given sizes, drawn as torchvision
        v2 draws them; sample ``b``'s from ``seeds[b]`` only."""
        u = draw_uniforms(seeds, len(self.specs))
        scales = torch.tensor([s.scale for s in self.specs], dtype=torch.float64)
        boxes = crop_boxes(u, torch.tensor(heights), torch.tensor(widths), scales)
        ranges = torch.tensor([s.jitter_ranges() for s in self.specs], dtype=torch.float64)
        probs = self._column("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p")
        drawn = u[..., [_FLIP, _JITTER, _GRAY, _BLUR, _SOLARIZE]] < probs
        flip, jitter, gray, blur, solarize = drawn.unbind(-1)
        return ViewParams(
            boxes=boxes,
            flip=flip,
            jitter=jitter,
            order=u[..., _ORDER : _ORDER + 4].argsort(-1),  # a uniformly random permutation
            factors=_between(
                u[..., _FACTORS : _FACTORS + 4], ranges[..., 0], ranges[..., 1]
            ).float(),
            gray=gray,
            blur=blur,
            sigma=_between(u[..., _SIGMA], *ops.BLUR_SIGMA).float(),
            solarize=solarize,
        )

    def __call__(self, images: Sequence[torch.Tensor], seeds: Sequence[int]) -> list[torch.Tensor]:
        return [ops.normalise(view) for view in self.uint8_views(images, seeds)]

    def uint8_views(
        self, images: Sequence[torch.Tensor], seeds: Sequence[int]
    ) -> list[torch.Tensor]:
        """The views as uint8 ``[B, 3, size, size]``, what loader workers hand over."""
        if len(images) != len(seeds) or not images:
            raise ValueError(f"{len(images)} images for {len(seeds)} seeds")
        for image in images:
            if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(
                    f"multi-crop views need uint8 RGB images [3, H, W], got {image.dtype} "
                    f"{tuple(image.shape)}"
                )
        params = self.draw(seeds, [im.shape[-2] for im in images], [im.shape[-1] for im in images])
        count, device = len(images), images[0].device
        views = [_empty((count, 3, size, size), device) for size in self.sizes]
        chunk = self._cpu_chunk if device.type == "cpu" else count
        for first in range(0, count, chunk):
            last = min(first + chunk, count)
            for size, chosen in self._by_size.items():
                outs = [views[v][first:last] for v in chosen]
                part = params.samples(first, last)
                self._views_of_size(images[first:last], part, chosen, size, outs)
        return views

    @staticmethod
    def _views_of_size(
        images: Sequence[torch.Tensor],
        params: ViewParams,
        chosen: list[int],
        size: int,
        outs: list[torch.Tensor],
    ) -> None:
        """Writes the views ``chosen`` (all ``size`` px) of every sample to ``outs``, their
        rows worked on together.

        Rows are numbered ``v * B + b`` (view-major) and processed sorted by (blur?, jitter
        order): each op then works on contiguous slices. The crops are resized and flipped in
        uint8 and turn float at the output size."""
        count = len(images)
        index = torch.tensor(chosen)

        def rows_of(t: torch.Tensor) -> torch.Tensor:  # [B, V, ...] → [per·B, ...] view-major
            return t[:, index].transpose(0, 1).flatten(0, 1)

        order, blur = rows_of(params.order), rows_of(params.blur)
        code = torch.where(rows_of(params.jitter), (order * _ORDER_CODE).sum(-1) + 1, 0)
        key, rows = (blur.long() * 1000 + code).sort(stable=True)
        boxes = torch.cat([(rows % count)[:, None], rows_of(params.boxes)[rows]], dim=1)
        flips = rows_of(params.flip)[rows].tolist()
        x = ops.resized_crops(images, boxes.tolist(), flips, size).float().mul_(1 / 255)
        device = x.device
        factors, order = rows_of(params.factors)[rows].to(device), order[rows]
        jitter_ops = fused_ops.jitter_ops(size, device)
        runs, lengths = key.unique_consecutive(return_counts=True)
        stops = lengths.cumsum(0).tolist()
        for run, start, stop in zip(runs.tolist(), [0, *stops[:-1]], stops, strict=True):
            if run % 1000:  # jittered: the run's rows share one order of the four ops
                for op in order[start].tolist():
                    jitter_ops[op](x[start:stop], factors[start:stop, op])
        _apply_rows(x, rows_of(params.gray)[rows], lambda p: ops.grayscale(p).expand_as(p))
        blurred = int(blur.sum())
        if blurred:  # the blurred rows sort last
            tail = x[len(rows) - blurred :]
            sigma = rows_of(params.sigma)[rows][-blurred:]
            tail.copy_(ops.gaussian_blur(tail, sigma, ops.blur_kernel_size(size)))
        _apply_rows(x, rows_of(params.solarize)[rows], ops.solarize)
        levels = ops.to_uint8(x)
        where = rows.argsort().to(device)  # row v * B + b sits at levels[where[v * B + b]]
        for v, out in enumerate(outs):
            torch.index_select(levels, 0, where[v * count : (v + 1) * count], out=out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.specs)})"


def _empty(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """An uninitialised uint8 tensor; in a loader worker, in shared memory, as torch's
    ``default_collate`` allocates its batches there: sending the batch to the training process
    then copies nothing."""
    if device.type != "cpu" or torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8, device=device)
    empty = torch.empty(0, dtype=torch.uint8)
    storage = empty._typed_storage()._new_shared(math.prod(shape), device=device)
    return empty.new(storage).view(shape)


def _apply_rows(x: torch.Tensor, selected: torch.Tensor, op) -> None:
    """``x[selected] = op(x[selected])`` for a boolean row mask (nothing when none is)."""
    index = selected.nonzero().flatten().to(x.device)
    if len(index):
        x[index] = op(x.index_select(0, index))
