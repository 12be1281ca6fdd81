"""Batched tensor maths of the multi-crop views, with one parameter per row.

Resized crops are made in uint8 with torch's bicubic antialias ``interpolate`` (torchvision v2's
uint8 path); colour jitter, grayscale, Gaussian blur and solarize then work on the
``[N, 3, h, w]`` float tensors of the output size, in place where they can, and the views are
rounded back to uint8 (``to_uint8``), as the seed's PIL pipeline hands its views to ``ToTensor``;
``normalise`` makes them the network's input where it trains. For the same parameters each op
matches its torchvision v2 functional counterpart (``adjust_brightness`` ... ``solarize``)
within float rounding; tests/test_batch_views.py checks it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BLUR_SIGMA = (0.1, 2.0)
SOLARIZE_THRESHOLD = 128
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale
# HSV → RGB: channel c = V − C·clamp(min(k, 4 − k), 0, 1), k = (n_c + 6·hue) mod 6
_HUE_OFFSETS = torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)
_SCALE = 1 / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)  # (x − mean) / std = x·scale + shift
_SHIFT = -torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * _SCALE
_LEVEL_SCALE = _SCALE / 255  # uint8 levels: (v / 255 − mean) / std = v·level_scale + shift


def blur_kernel_size(size: int) -> int:
    """The odd integer nearest 0.1 × ``size``, at least 3 (23 at 224 px)."""
    return max(3, 2 * math.floor((0.1 * size - 1) / 2 + 0.5) + 1)


def _rows(factor: torch.Tensor) -> torch.Tensor:
    return factor.view(-1, 1, 1, 1)


def resized_crops(
    images: Sequence[torch.Tensor], boxes: list[list[int]], flips: list[bool], size: int
) -> torch.Tensor:
    """``[len(boxes), 3, size, size]`` uint8: for each ``(image, top, left, height, width)`` box,
    that crop of the uint8 ``images[image]`` resized bicubic with antialiasing, then flipped
    where ``flips`` says: torchvision v2's ``resized_crop`` and ``horizontal_flip`` on uint8
    images. On CPU that is torch's uint8 antialias kernel, fed channels-last crops (its
    vectorised path); elsewhere, as torchvision does off CPU, a float resize rounded and clamped
    to uint8. One ``interpolate`` per crop: it reads only the pixels of the box."""
    on_cpu = images[0].device.type == "cpu"
    out = torch.empty(len(boxes), 3, size, size, dtype=torch.uint8, device=images[0].device)
    for row, ((b, top, left, height, width), flip) in enumerate(zip(boxes, flips, strict=True)):
        crop = images[b][None, :, top : top + height, left : left + width]
        if on_cpu:
            resized = _resize(crop.contiguous(memory_format=torch.channels_last), size)
        else:
            resized = _resize(crop.float(), size).clamp_(0.0, 255.0).round_()
        out[row] = resized.flip(-1) if flip else resized
    return out


def _resize(crop: torch.Tensor, size: int) -> torch.Tensor:
    """``crop [1, 3, h, w]`` resized to ``[3, size, size]``, bicubic with antialiasing."""
    resized = torch.nn.functional.interpolate(
        crop, size=(size, size), mode="bicubic", antialias=True
    )
    return resized[0]


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """``[N, 1, h, w]`` luma of RGB ``x`` (torchvision's weights)."""
    r, g, b = x.unbind(1)
    return (
        r.mul(GRAY_WEIGHTS[0])
        .add_(g, alpha=GRAY_WEIGHTS[1])
        .add_(b, alpha=GRAY_WEIGHTS[2])[:, None]
    )


def adjust_brightness_(x: torch.Tensor, factor: torch.Tensor) -> None:
    x.mul_(_rows(factor)).clamp_(0.0, 1.0)


def adjust_contrast_(x: torch.Tensor, factor: torch.Tensor) -> None:
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    x.mul_(_rows(factor)).add_(mean.mul_(_rows(1 - factor))).clamp_(0.0, 1.0)


def adjust_saturation_(x: torch.Tensor, factor: torch.Tensor) -> None:
    gray = grayscale(x).mul_(_rows(1 - factor))
    x.mul_(_rows(factor)).add_(gray).clamp_(0.0, 1.0)


def adjust_hue_(x: torch.Tensor, factor: torch.Tensor) -> None:
    """Rotate the HSV hue by ``factor`` turns, keeping value and saturation: each channel is
    ``V − C·clamp(min(k, 4 − k), 0, 1)``, ``k = (n + 6·hue) mod 6`` (n = 5, 3, 1 for R, G, B).
    The hue's sextant is picked with 0/1 masks, as torchvision's ``_rgb_to_hsv`` does
    (``torch.where`` and ``aminmax`` over channels are several times slower on the CPU)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    high = torch.maximum(torch.maximum(r, g), b)
    chroma = high - torch.minimum(torch.minimum(r, g), b)
    inverse = chroma.clamp(min=1e-12).reciprocal_()  # grey pixels: 0 · 1e12, no hue
    is_r = (r == high).to(x.dtype)
    is_g = (g == high).to(x.dtype).mul_(1 - is_r)
    is_b = 1 - is_r - is_g
    hue6 = (g - b).mul_(is_r)
    hue6.add_((b - r).add_(chroma, alpha=2).mul_(is_g))
    hue6.add_((r - g).add_(chroma, alpha=4).mul_(is_b)).mul_(inverse)
    k = hue6 + (_HUE_OFFSETS.to(x.device) + 6 * _rows(factor))
    # mod 6 as torch.remainder computes it, except where k / 6 rounds up to a whole number:
    # there k is next to 0 ≡ 6, where the ramp is 0 either way
    k.sub_(torch.floor(k * (1 / 6)).mul_(6.0))
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0).mul_(chroma)
    torch.sub(high, ramp, out=x)


JITTER_OPS = (adjust_brightness_, adjust_contrast_, adjust_saturation_, adjust_hue_)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Each row blurred with its own ``sigma`` (``kernel_size`` taps, reflected edges), as
    torchvision's ``gaussian_blur``: separable, as two depthwise convolutions over the rows'
    channels, laid out channels-last (the fast depthwise layout on CPU)."""
    rows, channels, height, width = x.shape
    half = kernel_size // 2
    taps = torch.linspace(-half, half, kernel_size, dtype=torch.float32) / math.sqrt(2.0)
    kernel = torch.softmax(-((taps / sigma.float().cpu().view(-1, 1)) ** 2), dim=1)  # [N, k]
    kernel = kernel.repeat_interleave(channels, dim=0).to(x.device)  # one per (row, channel)
    padded = torch.nn.functional.pad(x, [half, half, half, half], mode="reflect")
    flat = padded.view(1, rows * channels, height + 2 * half, width + 2 * half)
    flat = flat.contiguous(memory_format=torch.channels_last)
    groups = rows * channels
    flat = torch.nn.functional.conv2d(flat, kernel.view(groups, 1, kernel_size, 1), groups=groups)
    flat = torch.nn.functional.conv2d(flat, kernel.view(groups, 1, 1, kernel_size), groups=groups)
    return flat.view(rows, channels, height, width)  # channels-last strides


def solarize(x: torch.Tensor) -> torch.Tensor:
    """Invert the pixels at or above 128/255 (torchvision's ``solarize`` on [0, 1] floats)."""
    return torch.where(x >= SOLARIZE_THRESHOLD / 255, 1.0 - x, x)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` floats as uint8 levels, rounded half up (``x`` is overwritten): a quarter of
    the bytes to write, share with the training process and copy to an accelerator."""
    return x.mul_(255.0).add_(0.5).to(torch.uint8)


def normalise(views: torch.Tensor) -> torch.Tensor:
    """uint8 views as ImageNet-normalised float32, ``(v / 255 − mean) / std`` computed as
    ``v · (1 / (255 · std)) − mean / std``: one pass that reads bytes and writes floats, one add
    in place (``addcmul`` with broadcast factors is slower)."""
    return torch.mul(views, _LEVEL_SCALE.to(views.device)).add_(_SHIFT.to(views.device))
