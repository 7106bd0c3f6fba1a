"""Evaluation: feature extraction, distances, the CASIA-B / OU-MVLP / cross-view / generic
protocols, and their tables (``gait eval``).

Public API::

    from gaitcli.evaluation import evaluate_model, evaluate_checkpoint, evaluate_features

    results = evaluate_model(model, cfg)            # what the trainer's with_test calls
    results["rank1"]                                # {"NM": 97.4, "BG": ..., "CL": ...}
    results["rank1_exclude"]["NM"]["views"]["090"]  # per probe view, None when n/a
    results = evaluate_features(emb, labels, types, views, protocol="casia-b", metric="euc")
"""

from __future__ import annotations

from .api import (
    dataset_name_of,
    evaluate_checkpoint,
    evaluate_feature_file,
    evaluate_features,
    evaluate_model,
    load_test_split,
)
from .extract import FeatureSet, FramePicker, extract_features
from .metrics import distance_block, mean_average_precision, pairwise_distances, rank_k_accuracy
from .protocols import CASIA_B, CROSS_VIEW, OU_MVLP, PROTOCOLS, ProtocolSpec, resolve_protocol, run_protocol
from .report import json_payload, render_results, results_csv, save_heatmap, write_csv

__all__ = [
    "CASIA_B",
    "CROSS_VIEW",
    "OU_MVLP",
    "PROTOCOLS",
    "FeatureSet",
    "FramePicker",
    "ProtocolSpec",
    "dataset_name_of",
    "distance_block",
    "evaluate_checkpoint",
    "evaluate_feature_file",
    "evaluate_features",
    "evaluate_model",
    "extract_features",
    "json_payload",
    "mean_average_precision",
    "pairwise_distances",
    "rank_k_accuracy",
    "render_results",
    "resolve_protocol",
    "results_csv",
    "run_protocol",
    "save_heatmap",
    "load_test_split",
    "write_csv",
]
