"""Evaluation: the plan, feature extraction, distances, the CASIA-B / OU-MVLP / cross-view /
generic protocols, and their tables (``gait eval``).

Public API::

    from gaitcli.evaluation import evaluate_model, evaluate_checkpoint, evaluate_features

    result = evaluate_model(model, cfg)               # what the trainer's with_test calls
    result.rank1                                      # {"NM": 97.4, "BG": ..., "CL": ...}
    result.to_json()["rank1_exclude"]["NM"]["views"]["090"]  # per probe view, None when n/a
    result = evaluate_features(emb, labels, types, views, protocol="casia-b", metric="euc")

Modules: ``plan`` (resolve and check everything once), ``extract`` (embeddings of a test split),
``matching`` (run a protocol), ``protocols`` (which sequences are gallery and probes),
``metrics`` (distances), ``results`` (typed results), ``report`` (tables, JSON, CSV, heatmap).
"""

from __future__ import annotations

from .api import (
    dataset_name_of,
    evaluate_checkpoint,
    evaluate_features,
    evaluate_model,
    load_test_split,
    run_plan,
)
from .extract import FeatureSet, FramePicker, extract_features
from .matching import match, run_protocol
from .metrics import distance_block, mean_average_precision, pairwise_distances, rank_k_accuracy
from .plan import EvalOutputs, EvalPlan, ModelOptions, plan_checkpoint, plan_features, plan_model
from .protocols import CASIA_B, CROSS_VIEW, OU_MVLP, PROTOCOLS, ProtocolFit, ProtocolSpec, resolve_protocol
from .report import json_payload, render_results, results_csv, save_heatmap, write_csv, write_json
from .results import EvalResult, ProtocolResult, Seconds, SetSummary, Tables

__all__ = [
    "CASIA_B",
    "CROSS_VIEW",
    "OU_MVLP",
    "PROTOCOLS",
    "EvalOutputs",
    "EvalPlan",
    "EvalResult",
    "FeatureSet",
    "FramePicker",
    "ModelOptions",
    "ProtocolFit",
    "ProtocolResult",
    "ProtocolSpec",
    "Seconds",
    "SetSummary",
    "Tables",
    "dataset_name_of",
    "distance_block",
    "evaluate_checkpoint",
    "evaluate_features",
    "evaluate_model",
    "extract_features",
    "json_payload",
    "load_test_split",
    "match",
    "mean_average_precision",
    "pairwise_distances",
    "plan_checkpoint",
    "plan_features",
    "plan_model",
    "rank_k_accuracy",
    "render_results",
    "resolve_protocol",
    "results_csv",
    "run_plan",
    "run_protocol",
    "save_heatmap",
    "write_csv",
    "write_json",
]
