"""Reference numbers of OpenGait's Gait3D, GREW and CCPG evaluators on synthetic features.

Not a test (no ``test_`` prefix): it runs OpenGait's own evaluator functions
(``opengait/evaluation/evaluator.py``: ``evaluate_Gait3D``, ``evaluate_real_scene`` with
``GREW``, ``GREW_submission`` and ``evaluate_CCPG``) outside the project, with the reference's
virtual environment, and stores the features and the reference's outputs as small fixtures that
``tests/test_protocols_field.py`` compares gaitcli with.

Regenerate the fixtures (from the repository root)::

    /work/ref/venv/bin/python tests/parity/evaluators_harness.py /path/to/OpenGait \
        [--out tests/fixtures/parity]

``--full --out DIR`` makes the same files at the data sets' own sizes (not committed; compare
them with ``python tests/parity/evaluators_harness.py --compare DIR`` in gaitcli's environment).

It needs numpy and torch (CPU is enough: the reference's ``.cuda()`` calls are made no-ops) and
nothing of OpenGait beyond ``opengait/evaluation`` (its ``utils`` package is replaced by a stub
with the three functions the evaluators import). The reference reads the Gait3D probe list from
``./datasets/Gait3D/Gait3D.json`` and writes the GREW file under ``./GREW_result/``: the harness
runs it inside a temporary folder that holds the synthetic partition.

The synthetic sets have each data set's naming (OpenGait's ``id/type/view`` as its rearranging
scripts produce them):

* Gait3D: ids ``0002``.., types ``camidC_videoidV``, views ``seqS``; ``PROBE_SET`` holds one
  ``id-type-view`` per test id; some ids have no other sequence (their probe has no match), one
  probe entry names a sequence that is not in the features.
* GREW: gallery ids ``00001``.. with types ``01`` and ``02``, each view an 8-character video id;
  probes are id ``probe``, type ``03``, view = the video id.
* CCPG: ids ``100``.., the seven cloth codes of the four settings as types, views ``01``..``04``
  with a ``_N`` suffix on some (the evaluator keeps what precedes the first ``_``); a few
  sequences dropped so that some probes lack a same-setting gallery match.

Embeddings are identity centres plus noise, ``[n, channels, parts]`` for the reference (its
layout) and stored as ``[n, parts, channels]`` (gaitcli's) in version-1 feature files (plain
``.npz`` with ``embeddings``, ``labels``, ``types``, ``views``). Both metrics (``euc``, ``cos``)
are run for every evaluator.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import io
import json
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

PARTS, CHANNELS = 4, 8
SIZES = {"gait3d": 40, "grew": 30, "grew_probes": 45, "ccpg": 16, "ccpg_views": 4, "spread": 1.0}
FULL = {"gait3d": 1000, "grew": 6000, "grew_probes": 6000, "ccpg": 100, "ccpg_views": 10, "spread": 3.2}
"""``--full``: the test sets' sizes (Gait3D 1000 test ids, GREW 6000 (its competition has 24000
probes; 6000 keep the reference's dense matrix small), CCPG 100 ids) at GaitBase's 16 x 256, the
noise scaled up so that the scores stay away from 100 % at that width."""
METRICS = ("euc", "cos")
_LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))


def _embeddings(rng: np.random.Generator, labels: list[str], spread: float) -> np.ndarray:
    """``[n, channels, parts]`` float32: a centre per label plus noise of scale ``spread``."""
    centres = {lab: rng.normal(size=(CHANNELS, PARTS)) for lab in sorted(set(labels))}
    spread *= SIZES["spread"]
    return np.stack([centres[lab] + spread * rng.normal(size=(CHANNELS, PARTS)) for lab in labels]).astype(
        np.float32
    )


def gait3d_set(rng: np.random.Generator) -> tuple[dict[str, object], dict[str, list[str]]]:
    labels, types_, views = [], [], []
    probe = []
    ids = [f"{i:04d}" for i in rng.choice(np.arange(1, 4000), size=SIZES["gait3d"], replace=False)]
    for k, pid in enumerate(sorted(ids)):
        count = 1 if k % 9 == 4 else int(rng.integers(2, 7))  # every 9th id: the probe alone
        for j in range(count):
            labels.append(pid)
            types_.append(f"camid{int(rng.integers(0, 40))}_videoid{int(rng.integers(1, 4))}")
            views.append(f"seq{j}")
        first = len(labels) - count
        probe.append("-".join([labels[first], types_[first], views[first]]))
    probe.append("9999-camid1_videoid1-seq0")  # an entry without a sequence
    emb = _embeddings(rng, labels, 1.1)
    partition = {"TRAIN_SET": ["0000"], "TEST_SET": sorted(set(labels)), "PROBE_SET": probe}
    return {"embeddings": emb, "labels": labels, "types": types_, "views": views}, partition


def grew_set(rng: np.random.Generator) -> dict[str, object]:
    labels, types_, views = [], [], []
    ids = [f"{i:05d}" for i in range(1, SIZES["grew"] + 1)]
    used: set[str] = set()

    def video() -> str:
        while True:
            name = "".join(rng.choice(_LETTERS, 8))
            if name not in used:
                used.add(name)
                return name

    for pid in ids:
        for t in ("01", "02"):
            labels.append(pid)
            types_.append(t)
            views.append(video())
    truth = [ids[int(i)] for i in rng.integers(0, len(ids), size=SIZES["grew_probes"])]
    for _ in truth:
        labels.append("probe")
        types_.append("03")
        views.append(video())
    # probes: their true identity's centre (unknown to the evaluator), drawn with the same centres
    centre_labels = labels[: 2 * len(ids)] + truth
    emb = _embeddings(rng, centre_labels, 1.0)
    return {"embeddings": emb, "labels": labels, "types": types_, "views": views}


CCPG_TYPES = ("U0_D0_BG", "U0_D0", "U1_D1", "U2_D2", "U3_D3", "U0_D3", "U1_D0")


def ccpg_set(rng: np.random.Generator) -> dict[str, object]:
    labels, types_, views = [], [], []
    for i in range(100, 100 + SIZES["ccpg"]):
        pid = f"{i:03d}"
        for t in CCPG_TYPES:
            for cam in (f"{c:02d}" for c in range(1, SIZES["ccpg_views"] + 1)):
                if rng.random() < 0.06:
                    continue  # a missing walk
                labels.append(pid)
                types_.append(t)
                views.append(cam if rng.random() < 0.5 else f"{cam}_{int(rng.integers(1, 3))}")
    emb = _embeddings(rng, labels, 1.2)
    return {"embeddings": emb, "labels": labels, "types": types_, "views": views}


# ----------------------------------------------------------------------------------------------
# the reference
# ----------------------------------------------------------------------------------------------


class _Log:
    """The reference's message manager: keeps what it logs (GREW's rank-10 / rank-20 are only
    logged, as ``'%.3f'`` of values already rounded to 2 decimals, so the text is exact)."""

    lines: list[str] = []

    def log_info(self, *args: object, **kwargs: object) -> None:
        self.lines.append(" ".join(str(a) for a in args))


def _logged_ranks() -> dict[str, float]:
    """``==Rank-K==`` followed by its value, from the lines logged since the last call."""
    lines, out = _Log.lines, {}
    for head, value in zip(lines, lines[1:], strict=False):
        if head.startswith("==Rank-") and head.endswith("=="):
            out[head.strip("=")] = float(value)
    _Log.lines = []
    return out


def load_evaluator(opengait: Path) -> types.ModuleType:
    """``opengait.evaluation.evaluator`` with ``utils`` stubbed and ``.cuda()`` a no-op."""
    import torch

    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    utils = types.ModuleType("utils")
    utils.get_msg_mgr = lambda: _Log()  # type: ignore[attr-defined]
    utils.mkdir = lambda path: os.makedirs(path, exist_ok=True)  # type: ignore[attr-defined]
    utils.is_tensor = torch.is_tensor  # type: ignore[attr-defined]
    sys.modules["utils"] = utils
    pkg_dir = opengait / "opengait" / "evaluation"
    pkg = types.ModuleType("ogeval")
    pkg.__path__ = [str(pkg_dir)]  # type: ignore[attr-defined]
    sys.modules["ogeval"] = pkg
    for name in ("metric", "re_rank", "evaluator"):
        spec = importlib.util.spec_from_file_location(f"ogeval.{name}", pkg_dir / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"ogeval.{name}"] = module
        spec.loader.exec_module(module)
    return sys.modules["ogeval.evaluator"]


def _data(s: dict[str, object]) -> dict[str, object]:
    """A fresh copy as the reference's inference returns it (lists; CCPG edits its views)."""
    return {"embeddings": np.array(s["embeddings"]), "labels": list(s["labels"]),  # type: ignore[call-overload]
            "types": list(s["types"]), "views": list(s["views"])}  # type: ignore[call-overload]


def _floats(d: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in d.items():
        arr = np.asarray(value)
        out[key.rsplit("/", 1)[-1]] = arr.astype(float).tolist() if arr.ndim else float(arr)
    return out


def run_reference(ev: types.ModuleType, work: Path, sets: dict[str, object], partition: dict[str, list[str]],
                  out: Path) -> dict[str, object]:
    ref: dict[str, dict[str, object]] = {"gait3d": {}, "grew": {}, "ccpg": {}}
    cwd = os.getcwd()
    os.chdir(work)
    try:
        (work / "datasets" / "Gait3D").mkdir(parents=True, exist_ok=True)
        (work / "datasets" / "Gait3D" / "Gait3D.json").write_text(json.dumps(partition))
        for metric in METRICS:
            ref["gait3d"][metric] = _floats(ev.evaluate_Gait3D(_data(sets["gait3d"]), "Gait3D", metric))
            _logged_ranks()
            ref["grew"][metric] = _floats(ev.evaluate_real_scene(_data(sets["grew"]), "GREW", metric))
            ref["grew"][metric].update(_logged_ranks())  # type: ignore[union-attr]
            ccpg = ev.evaluate_CCPG(_data(sets["ccpg"]), "CCPG", metric)
            ref["ccpg"][metric] = _floats(ccpg)
            for key, acc in ccpg.items():  # what it logs from these matrices, by its own de_diag
                name = key.rsplit("/", 1)[-1]
                ref["ccpg"][metric][f"{name}_include"] = float(np.mean(acc))  # type: ignore[index]
                ref["ccpg"][metric][f"{name}_exclude"] = float(ev.de_diag(acc))  # type: ignore[index]
                ref["ccpg"][metric][f"{name}_exclude_views"] = ev.de_diag(acc, True).tolist()  # type: ignore[index]
            ref["ccpg"][metric].update(_ccpg_reid(ev, sets["ccpg"], metric))  # type: ignore[union-attr]
            before = set(glob.glob("GREW_result/*.csv"))
            with contextlib.redirect_stdout(io.StringIO()):
                ev.GREW_submission(_data(sets["grew"]), "GREW", metric)
            (written,) = set(glob.glob("GREW_result/*.csv")) - before
            (out / f"evaluators_grew_{metric}.csv").write_bytes(Path(written).read_bytes())
            os.remove(written)
    finally:
        os.chdir(cwd)
    return ref


def _ccpg_reid(ev: types.ModuleType, s: dict[str, object], metric: str) -> dict[str, object]:
    """The re-identification numbers ``evaluate_CCPG`` logs but does not return (rank-1, mAP,
    mINP per setting): its own ``evaluate_many`` on its own masks, repeated here because the
    evaluator only prints them."""
    metric_mod = sys.modules["ogeval.metric"]
    data = _data(s)
    feature, label, seq_type = data["embeddings"], np.array(data["labels"]), data["types"]
    view_np = np.array([str(v).split("_")[0] for v in data["views"]])  # type: ignore[attr-defined]
    probes = [["U0_D0_BG", "U0_D0"], ["U3_D3"], ["U1_D0"], ["U0_D0_BG"]]
    galleries = [["U1_D1", "U2_D2", "U3_D3"], ["U0_D3"], ["U1_D1"], ["U0_D0"]]
    out: dict[str, object] = {}
    for name, p, g in zip(("CL", "UP", "DN", "BG"), probes, galleries, strict=True):
        gm, pm = np.isin(seq_type, g), np.isin(seq_type, p)
        dist = metric_mod.cuda_dist(feature[pm], feature[gm], metric).cpu().numpy()  # type: ignore[index]
        cmc, ap, inp = metric_mod.evaluate_many(dist, label[pm], label[gm], view_np[pm], view_np[gm])
        out[f"reid_{name}"] = {"rank1": float(cmc[0] * 100), "map": float(ap * 100), "minp": float(inp * 100)}
    return out


def save_features(path: Path, s: dict[str, object]) -> None:
    emb = np.ascontiguousarray(np.asarray(s["embeddings"]).transpose(0, 2, 1))  # [n, parts, channels]
    np.savez(path, embeddings=emb, labels=np.array(s["labels"]), types=np.array(s["types"]),
             views=np.array(s["views"]))


def compare(folder: Path) -> None:
    """gaitcli's numbers on the files of ``folder`` against the reference's stored there: the
    largest absolute difference per kind of number, whether the GREW files are identical, and the
    time each protocol took (run in gaitcli's environment)."""
    import time

    from gaitcli.evaluation import evaluate_features
    from gaitcli.evaluation.submission import submission_csv

    ref = json.loads((folder / "evaluators_reference.json").read_text())["reference"]
    worst: dict[str, float] = {}

    def note(kind: str, ours: object, theirs: object) -> None:
        diff = float(np.max(np.abs(np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float))))
        worst[kind] = max(worst.get(kind, 0.0), diff)

    for metric in METRICS:
        runs = {}
        for name in ("gait3d", "grew", "ccpg"):
            with np.load(folder / f"evaluators_{name}.npz") as z:
                f = {k: z[k] for k in z.files}
            start = time.perf_counter()
            res = evaluate_features(f["embeddings"], f["labels"], f["types"], f["views"], protocol=name,
                                    metric=metric, partition=folder / "evaluators_gait3d_partition.json"
                                    if name == "gait3d" else None, submission=name == "grew")
            runs[name] = res.result
            print(f"{name} {metric}: {len(f['labels'])} sequences, {time.perf_counter() - start:.2f} s")
        g3d, grew, ccpg = runs["gait3d"], runs["grew"], runs["ccpg"]
        assert g3d.retrieval is not None and grew.retrieval is not None and ccpg.retrieval is not None
        r = ref["gait3d"][metric]
        row = g3d.retrieval["Gait3D"].scores
        note("gait3d rank-k (reference float32)", [row[f"rank{k}"] for k in (1, 5, 10)],
             [r[f"Rank-{k}"] for k in (1, 5, 10)])
        note("gait3d mAP / mINP", [row["map"], row["minp"]], [r["mAP"], r["mINP"]])
        r = ref["grew"][metric]
        note("grew rank-k", [grew.retrieval["GREW"].scores[f"rank{k}"] for k in (1, 5, 10, 20)],
             [r[f"Rank-{k}"] for k in (1, 5, 10, 20)])
        assert grew.submission is not None
        theirs = (folder / f"evaluators_grew_{metric}.csv").read_bytes()
        same = submission_csv(grew.submission).encode() == theirs
        print(f"GREW submission ({metric}) byte-identical: {same}")
        r = ref["ccpg"][metric]
        for name in ("CL", "UP", "DN", "BG"):
            assert ccpg.tables.matrix is not None
            note("ccpg matrix cells", ccpg.tables.matrix["rank1"][name], r[name])
            note("ccpg means", [ccpg.tables.rank1_exclude[name].mean, ccpg.tables.rank1_include[name].mean],
                 [r[f"{name}_exclude"], r[f"{name}_include"]])
            scores = ccpg.retrieval[name].scores
            note("ccpg re-id rank-1 (reference float32)", scores["rank1"], r[f"reid_{name}"]["rank1"])
            note("ccpg re-id mAP / mINP", [scores["map"], scores["minp"]],
                 [r[f"reid_{name}"]["map"], r[f"reid_{name}"]["minp"]])
    for kind, diff in worst.items():
        print(f"max |gaitcli - reference| {kind}: {diff:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("opengait", type=Path, nargs="?",
                        help="OpenGait checkout (the folder holding opengait/)")
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="instead: gaitcli's numbers on DIR's files against the reference's "
                             "(run in gaitcli's environment)")
    default_out = Path(__file__).resolve().parents[1] / "fixtures" / "parity"
    parser.add_argument("--out", type=Path, default=default_out)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--full", action="store_true",
                        help="the data sets' own sizes at 16 parts x 256 channels (not for the fixtures)")
    args = parser.parse_args()
    if args.compare is not None:
        compare(args.compare)
        return
    if args.opengait is None:
        parser.error("give the OpenGait checkout (or --compare DIR)")
    if args.full:
        global PARTS, CHANNELS
        PARTS, CHANNELS = 16, 256
        SIZES.update(FULL)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    g3d, partition = gait3d_set(rng)
    sets = {"gait3d": g3d, "grew": grew_set(rng), "ccpg": ccpg_set(rng)}
    ev = load_evaluator(args.opengait.resolve())
    with tempfile.TemporaryDirectory() as tmp:
        ref = run_reference(ev, Path(tmp), sets, partition, args.out)
    for name, s in sets.items():
        save_features(args.out / f"evaluators_{name}.npz", s)
    (args.out / "evaluators_gait3d_partition.json").write_text(json.dumps(partition, indent=1) + "\n")
    ref_doc = {"source": "OpenGait opengait/evaluation/evaluator.py", "seed": args.seed, "reference": ref}
    (args.out / "evaluators_reference.json").write_text(json.dumps(ref_doc, indent=1) + "\n")
    print(json.dumps(ref, indent=1)[:3000])


if __name__ == "__main__":
    main()
