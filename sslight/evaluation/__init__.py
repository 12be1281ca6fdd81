"""Evaluations of a pretrained backbone: linear probe on frozen features and semi-supervised
fine-tuning (k-NN lives in ``sslight.engine.knn``, shared with the pretraining monitor)."""

from sslight.evaluation.classifier import (
    Classifier,
    evaluate_topk,
    fit_classifier,
    load_labelled_data,
    train_classifier_epoch,
)
from sslight.evaluation.features import FeatureExtractor, extract
from sslight.evaluation.linear import linear_eval
from sslight.evaluation.semi import percent_tag, read_split_file, semi_supervised

__all__ = [
    "Classifier",
    "FeatureExtractor",
    "evaluate_topk",
    "extract",
    "fit_classifier",
    "linear_eval",
    "load_labelled_data",
    "percent_tag",
    "read_split_file",
    "semi_supervised",
    "train_classifier_epoch",
]
