"""The R-CNN RoI heads as Detectron2 configures them, on torchvision's detection models.

Two of Detectron2's defaults differ from torchvision's:

* pooling: ``POOLER_TYPE: ROIAlignV2`` with ``POOLER_SAMPLING_RATIO: 0`` for the box and the mask
  head, i.e. ``torchvision.ops.roi_align(..., aligned=True, sampling_ratio=0)``: pixel centres at
  half-integer coordinates and ``ceil(RoI size / output size)`` sampling points per bin.
  torchvision's ``MultiScaleRoIAlign`` takes no ``aligned`` and its detectors sample 2 points;
  ``MultiScaleRoIAlignV2`` adds both and keeps torchvision's FPN level mapping.
* box regression: ``ROI_BOX_HEAD.SMOOTH_L1_BETA: 0.0``, a smooth-L1 loss with β = 0, which is L1,
  summed over the foreground RoIs and divided by the number of sampled RoIs. torchvision's
  ``fastrcnn_loss`` fixes β = 1/9; ``DetectronRoIHeads`` computes its training losses with a
  configurable β (classification and mask losses as torchvision's) and infers as torchvision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_loss
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _setup_scales


class MultiScaleRoIAlignV2(MultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` (same FPN level per RoI, same scales) pooling with
    ``roi_align(..., aligned=aligned)``; ``aligned=True, sampling_ratio=0`` is Detectron2's
    ROIAlignV2, ``aligned=False`` pools exactly as torchvision's."""

    def __init__(
        self,
        featmap_names: list[str],
        output_size: int,
        sampling_ratio: int,
        *,
        aligned: bool,
    ) -> None:
        super().__init__(featmap_names, output_size, sampling_ratio)
        self.aligned = aligned

    def forward(
        self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        """Pool each of ``boxes`` (per image, in image coordinates) from its FPN level of ``x``."""
        features = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                features, image_shapes, self.canonical_scale, self.canonical_level
            )
        rois = _convert_to_roi_format(boxes)
        levels = self.map_levels(boxes)  # all 0 when there is one level
        result = features[0].new_zeros((len(rois), features[0].shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(features, self.scales, strict=True)):
            index = torch.where(levels == level)[0]
            pooled = roi_align(
                feature,
                rois[index],
                self.output_size,
                spatial_scale=scale,
                sampling_ratio=self.sampling_ratio,
                aligned=self.aligned,
            )
            result[index] = pooled.to(result.dtype)  # autocast may pool levels in other dtypes
        return result

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, aligned={self.aligned})"


def fast_rcnn_loss(
    class_logits: Tensor,
    box_regression: Tensor,
    labels: list[Tensor],
    regression_targets: list[Tensor],
    beta: float,
) -> tuple[Tensor, Tensor]:
    """torchvision's ``fastrcnn_loss`` with smooth-L1 ``beta`` (it fixes 1/9; Detectron2: 0).

    Classification: cross-entropy over the sampled RoIs. Box regression: smooth-L1 between the
    deltas predicted for each foreground RoI's class and its targets, summed and divided by the
    number of sampled RoIs (foreground and background), as Detectron2 and torchvision normalise.
    """
    labels_all = torch.cat(labels)
    targets = torch.cat(regression_targets)
    classification = F.cross_entropy(class_logits, labels_all)
    foreground = torch.where(labels_all > 0)[0]
    deltas = box_regression.reshape(len(class_logits), -1, 4)[foreground, labels_all[foreground]]
    box_loss = F.smooth_l1_loss(deltas, targets[foreground], beta=beta, reduction="sum")
    return classification, box_loss / labels_all.numel()


class DetectronRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` (box head, optional mask head; no keypoints) whose training
    losses use ``fast_rcnn_loss`` with ``box_smooth_l1_beta``; inference is torchvision's."""

    def __init__(self, *args: object, box_smooth_l1_beta: float, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.box_smooth_l1_beta = box_smooth_l1_beta

    @classmethod
    def replacing(cls, heads: RoIHeads, box_smooth_l1_beta: float) -> DetectronRoIHeads:
        """The same submodules, sampling and inference settings as ``heads``, with β."""
        if heads.has_keypoint():
            raise ValueError("DetectronRoIHeads has no keypoint head")
        return cls(
            heads.box_roi_pool,
            heads.box_head,
            heads.box_predictor,
            heads.proposal_matcher.high_threshold,
            heads.proposal_matcher.low_threshold,
            heads.fg_bg_sampler.batch_size_per_image,
            heads.fg_bg_sampler.positive_fraction,
            heads.box_coder.weights,
            heads.score_thresh,
            heads.nms_thresh,
            heads.detections_per_img,
            mask_roi_pool=heads.mask_roi_pool,
            mask_head=heads.mask_head,
            mask_predictor=heads.mask_predictor,
            box_smooth_l1_beta=box_smooth_l1_beta,
        )

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Training: ``([], losses)`` from the RoIs torchvision samples; else torchvision's."""
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("training needs targets")
        proposals, matched, labels, regression_targets = self.select_training_samples(
            proposals, targets
        )
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = fast_rcnn_loss(
            class_logits, box_regression, labels, regression_targets, self.box_smooth_l1_beta
        )
        losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        if self.has_mask():
            losses["loss_mask"] = self._mask_loss(
                features, proposals, image_shapes, targets, matched, labels
            )
        return [], losses

    def _mask_loss(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]],
        matched: list[Tensor],
        labels: list[Tensor],
    ) -> Tensor:
        """torchvision's mask loss on the foreground RoIs of the sampled ``proposals``."""
        foreground = [torch.where(image_labels > 0)[0] for image_labels in labels]
        mask_proposals = [p[i] for p, i in zip(proposals, foreground, strict=True)]
        mask_matched = [m[i] for m, i in zip(matched, foreground, strict=True)]
        pooled = self.mask_roi_pool(features, mask_proposals, image_shapes)
        mask_logits = self.mask_predictor(self.mask_head(pooled))
        gt_masks = [t["masks"] for t in targets]
        gt_labels = [t["labels"] for t in targets]
        return maskrcnn_loss(mask_logits, mask_proposals, gt_masks, gt_labels, mask_matched)


def roi_pool(featmap_names: list[str], output_size: int, det: object) -> nn.Module:
    """The RoI pooler ``eval.detection`` (``det``) asks for: ROIAlignV2 by default."""
    return MultiScaleRoIAlignV2(
        featmap_names, output_size, det.roi_sampling_ratio, aligned=det.roi_align_aligned
    )
