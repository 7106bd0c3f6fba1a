"""``gait zoo`` offline: a loopback HTTP server (Range supported) serves a tiny GaitGL checkpoint in
OpenGait's ``.pt`` layout that the test makes; get downloads, resumes, checks hashes and converts
without running pickled code; verify scores the result beside the published numbers."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import pickle
import re
import socket
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gaitcli.build import build_model
from gaitcli.cli import app
from gaitcli.evaluation import evaluate_checkpoint
from gaitcli.models import load_checkpoint
from gaitcli.zoo.catalogue import CATALOGUE_ENV, CatalogueError, load_catalogue

pytestmark = pytest.mark.usefixtures("one_thread")

IDS = ("001", "002", "003")
TYPES = ("nm-01", "nm-02", "nm-05", "bg-01", "cl-01")
VIEWS = ("000", "090")

OPENGAIT_CONFIG = """\
data_cfg:
  dataset_name: CASIA-B
  dataset_root: your_path
  dataset_partition: ./datasets/CASIA-B/CASIA-B.json
  num_workers: 1
  remove_no_gallery: false
  test_dataset_name: CASIA-B
evaluator_cfg:
  enable_float16: false
  restore_ckpt_strict: true
  restore_hint: 80000
  save_name: GaitGL
  sampler:
    batch_size: 4
    sample_type: all_ordered
    type: InferenceSampler
  metric: euc
model_cfg:
  model: GaitGL
  channels: [4, 8, 8]
  class_num: 3
trainer_cfg:
  enable_float16: false
  save_name: GaitGL
  total_iter: 80000
"""


# ----------------------------------------------------------------------------------------------
# the loopback server
# ----------------------------------------------------------------------------------------------


class Server:
    """Files by path; ``cut[path] = n`` sends only the first n bytes of the next full answer
    (announcing the whole length) and drops the connection; ``requests`` logs (path, Range)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                path = self.path
                rng = self.headers.get("Range")
                server.requests.append((path, rng))
                body = server.files.get(path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                found = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if found and not server.ignore_range:
                    start = int(found.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                send = body[start:]
                if path in server.cut:
                    send = send[: server.cut.pop(path)]
                self.wfile.write(send)
                self.wfile.flush()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


# ----------------------------------------------------------------------------------------------
# what the server serves
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def tiny_model():
    torch.manual_seed(0)
    model = build_model({"model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3},
                         "data_cfg": {"dataset_name": "CASIA-B"}})
    with torch.no_grad():
        model.Bn.running_var.uniform_(0.5, 1.5)
    return model.eval()


@functools.lru_cache(maxsize=1)
def opengait_pt(model) -> bytes:
    """A checkpoint laid out as OpenGait's save_ckpt writes it (DDP prefixes, optimiser, iteration)."""
    buf = io.BytesIO()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    torch.save({"model": {"module." + k: v for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(), "scheduler": {"last_epoch": 80000}, "iteration": 80000}, buf)
    return buf.getvalue()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_pt(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save({"model": {"a": torch.zeros(1)}, "iteration": _Evil(marker)}, buf)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


PUBLISHED = """\
    published:
      - {metric: rank1, set: NM, value: 97.4, paper: 97.4}
      - {metric: rank1, set: BG, value: 94.5, paper: 94.5}
      - {metric: rank1, set: CL, value: 83.8, paper: 83.6}
      - {metric: mAP, set: NM, value: 86.2, protocol: cross-view}
"""


def entry(name, url, sha256, config_url, config_sha, member=None):
    lines = [f"  - name: {name}", "    model: GaitGL", "    title: GaitGL (tiny)", "    dataset: CASIA-B",
             f"    url: {url}", "    url_source: local", f"    sha256: '{sha256}'",
             "    config: configs/gaitgl/gaitgl.yaml", f"    config_url: {config_url}",
             f"    config_sha256: '{config_sha}'", "    published_source: the test"]
    if member:
        lines.append(f'    member: "{member}"')
    return "\n".join(lines) + "\n" + PUBLISHED


@pytest.fixture
def zoo(server, tmp_path):
    """A catalogue on the loopback server: pinned, unpinned, wrongly pinned, archived and evil entries."""
    model = tiny_model()
    pt = opengait_pt(model)
    config = OPENGAIT_CONFIG.encode()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("CASIA-B/GaitSet/GaitSet/checkpoints/GaitSet-40000.pt", b"not this one")
        zf.writestr("CASIA-B/GaitGL/GaitGL/checkpoints/GaitGL-80000.pt", pt)
    marker = tmp_path / "PWNED"
    evil = evil_pt(marker)
    server.files.update({"/GaitGL-80000.pt": pt, "/gaitgl.yaml": config, "/models.zip": archive.getvalue(),
                         "/evil.pt": evil})
    cfg_url, cfg_sha = server.url("/gaitgl.yaml"), sha(config)
    text = "format: 1\nopengait_commit: test\nentries:\n" + "".join([
        entry("gaitgl-tiny", server.url("/GaitGL-80000.pt"), sha(pt), cfg_url, cfg_sha),
        entry("gaitgl-unpinned", server.url("/GaitGL-80000.pt"), "unknown", cfg_url, cfg_sha),
        entry("gaitgl-wrong", server.url("/GaitGL-80000.pt"), "0" * 64, cfg_url, cfg_sha),
        entry("gaitgl-zip", server.url("/models.zip"), sha(archive.getvalue()), cfg_url, cfg_sha,
              member="*GaitGL/checkpoints/GaitGL-80000.pt"),
        entry("gaitgl-zip-missing", server.url("/models.zip"), sha(archive.getvalue()), cfg_url, cfg_sha,
              member="*GaitPart/checkpoints/*.pt"),
        entry("evil", server.url("/evil.pt"), sha(evil), cfg_url, cfg_sha),
        entry("gone", server.url("/nothing-here.pt"), "unknown", cfg_url, cfg_sha),
    ])
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(text)
    return {"catalogue": catalogue, "out": tmp_path / "zoo", "pt": pt, "model": model, "marker": marker,
            "server": server, "tmp": tmp_path}


def run(z, *args):
    return CliRunner().invoke(app, ["zoo", *map(str, args), "--catalogue", str(z["catalogue"]),
                                    "--out", str(z["out"])])


def one_error_line(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("error:")


def seqs():
    g = torch.Generator().manual_seed(7)
    return [(torch.rand(n, 64, 44, generator=g) > 0.5).float() for n in (5, 2)]


def downloads(z):
    folder = z["out"] / "downloads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ----------------------------------------------------------------------------------------------
# the packaged catalogue
# ----------------------------------------------------------------------------------------------


def test_packaged_catalogue_holds_the_published_anchors():
    cat = load_catalogue()
    by = {e.name: e for e in cat.entries}

    def rank1(name):
        return [r.value for r in by[name].published if r.metric == "rank1" and r.protocol is None]

    assert rank1("gaitbase-casiab") == [97.6, 94.0, 77.4]
    assert rank1("gaitgl-casiab") == [97.4, 94.5, 83.8]
    assert [r.paper for r in by["gaitgl-casiab"].published][:3] == [97.4, 94.5, 83.6]
    assert rank1("deepgaitv2-oumvlp") == [92.0]
    assert rank1("deepgaitv2-grew") == [79.4]
    assert rank1("deepgaitv2-gait3d") == [74.4]
    assert by["gaitbase-casiab"].config == "configs/gaitbase/gaitbase_da_casiab.yaml"
    for e in cat.entries:  # nobody has pinned a released checkpoint yet; every config is pinned
        assert e.sha256 is None and e.config_sha256 is not None
        assert e.url.startswith("https://") and e.config_url.startswith("https://raw.githubusercontent.com/")
    result = CliRunner().invoke(app, ["zoo"])
    assert result.exit_code == 0 and "gaitbase-casiab" in result.output and "unknown" in result.output


def test_catalogue_override_and_one_line_mistakes(tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: 1\nentries:\n  - name: x\n    model: GaitGL\n    dataset: D\n"
                   "    url: https://a/b.pt\n    url_source: local\n    sha256: abc\n"
                   "    config: c.yaml\n    config_url: https://a/c.yaml\n")
    with pytest.raises(CatalogueError, match=r"entries\[0\] \(x\): sha256: expected 64 hex digits"):
        load_catalogue(bad)
    monkeypatch.setenv(CATALOGUE_ENV, str(bad))
    result = CliRunner().invoke(app, ["zoo", "list"])
    assert result.exit_code == 2 and one_error_line(result) and "bad.yaml" in result.output
    monkeypatch.setenv(CATALOGUE_ENV, str(tmp_path / "none.yaml"))
    result = CliRunner().invoke(app, ["zoo", "list"])
    assert result.exit_code == 2 and one_error_line(result) and "GAIT_ZOO_CATALOGUE" in result.output


def test_unknown_name_suggests(zoo):
    result = run(zoo, "get", "gaitgl-tin")
    assert result.exit_code == 2 and one_error_line(result) and "did you mean gaitgl-tiny" in result.output


# ----------------------------------------------------------------------------------------------
# get
# ----------------------------------------------------------------------------------------------


def test_get_downloads_checks_and_converts(zoo):
    result = run(zoo, "get", "gaitgl-tiny", "--json", zoo["tmp"] / "get.json")
    assert result.exit_code == 0, result.output
    ckpt = zoo["out"] / "gaitgl-tiny" / "gaitgl-tiny.safetensors"
    loaded = load_checkpoint(ckpt)
    assert loaded.checkpoint_meta["iteration"] == 80000
    torch.testing.assert_close(loaded.embed(seqs()), zoo["model"].embed(seqs()), rtol=1e-5, atol=1e-6)
    record = json.loads((zoo["out"] / "gaitgl-tiny" / "zoo.json").read_text())
    assert record["sha256"] == sha(zoo["pt"]) and record["sha256_source"] == "catalogue"
    assert json.loads((zoo["tmp"] / "get.json").read_text())["convert"]["model"] == "GaitGL"
    assert not [n for n in downloads(zoo) if n.endswith(".part")]
    # a second get finds the checkpoint and fetches nothing
    asked = len(zoo["server"].requests)
    again = run(zoo, "get", "gaitgl-tiny")
    assert again.exit_code == 0 and "already converted" in again.output
    assert len(zoo["server"].requests) == asked


def test_interrupted_download_resumes_with_a_range_request(zoo):
    half = len(zoo["pt"]) // 2
    zoo["server"].cut["/GaitGL-80000.pt"] = half
    first = run(zoo, "get", "gaitgl-tiny")
    assert first.exit_code == 2 and one_error_line(first), first.output
    assert f"stopped after {half} of {len(zoo['pt'])} bytes" in first.output and "resume" in first.output
    parts = [zoo["out"] / "downloads" / n for n in downloads(zoo)]
    assert len(parts) == 1 and parts[0].name.endswith(".part") and parts[0].stat().st_size == half
    assert not (zoo["out"] / "gaitgl-tiny" / "gaitgl-tiny.safetensors").exists()
    second = run(zoo, "get", "gaitgl-tiny")
    assert second.exit_code == 0, second.output
    assert ("/GaitGL-80000.pt", f"bytes={half}-") in zoo["server"].requests
    assert f"resumed at {half} bytes" in second.output
    final = zoo["out"] / "downloads" / downloads(zoo)[0]
    assert final.read_bytes() == zoo["pt"]
    loaded = load_checkpoint(zoo["out"] / "gaitgl-tiny" / "gaitgl-tiny.safetensors")
    torch.testing.assert_close(loaded.embed(seqs()), zoo["model"].embed(seqs()), rtol=1e-5, atol=1e-6)


def test_a_server_that_ignores_the_range_is_read_from_the_start(zoo):
    zoo["server"].cut["/GaitGL-80000.pt"] = 100
    assert run(zoo, "get", "gaitgl-tiny").exit_code == 2
    zoo["server"].ignore_range = True
    result = run(zoo, "get", "gaitgl-tiny")
    assert result.exit_code == 0, result.output
    assert (zoo["out"] / "downloads" / downloads(zoo)[0]).read_bytes() == zoo["pt"]


def test_wrong_pinned_hash_is_refused_and_the_file_not_kept(zoo):
    result = run(zoo, "get", "gaitgl-wrong")
    assert result.exit_code == 2 and one_error_line(result)
    assert f"SHA-256 is {sha(zoo['pt'])}, not the pinned {'0' * 64}" in result.output
    assert downloads(zoo) == []
    assert not (zoo["out"] / "gaitgl-wrong" / "gaitgl-wrong.safetensors").exists()
    # the user's own pin is checked the same way
    result = run(zoo, "get", "gaitgl-unpinned", "--sha256", "1" * 64)
    assert result.exit_code == 2 and "not the pinned" in result.output and downloads(zoo) == []


def test_unknown_hash_refuses_without_sha256_then_converts_with_it(zoo):
    result = run(zoo, "get", "gaitgl-unpinned")
    assert result.exit_code == 2 and one_error_line(result)
    digest = sha(zoo["pt"])
    assert "no SHA-256 is pinned" in result.output and digest in result.output
    assert "--sha256 HEX" in result.output and "never run" in result.output
    assert not (zoo["out"] / "gaitgl-unpinned" / "gaitgl-unpinned.safetensors").exists()
    assert len(downloads(zoo)) == 1  # kept, so that its hash can be checked and nothing is fetched twice
    bad = run(zoo, "get", "gaitgl-unpinned", "--sha256", "xyz")
    assert bad.exit_code == 2 and one_error_line(bad) and "--sha256 xyz" in bad.output
    asked = len(zoo["server"].requests)
    result = run(zoo, "get", "gaitgl-unpinned", "--sha256", digest.upper())
    assert result.exit_code == 0, result.output
    assert "matches the user pin" in result.output
    record = json.loads((zoo["out"] / "gaitgl-unpinned" / "zoo.json").read_text())
    assert record["sha256_source"] == "user"
    assert [p for p, _ in zoo["server"].requests[asked:]] == ["/gaitgl.yaml"]  # the checkpoint was reused
    # a pin that contradicts the catalogue's is refused
    result = run(zoo, "get", "gaitgl-tiny", "--sha256", "2" * 64)
    assert result.exit_code == 2 and "the catalogue pins" in result.output


def test_malicious_pickle_is_refused_even_when_pinned(zoo):
    result = run(zoo, "get", "evil")
    assert result.exit_code == 2 and one_error_line(result)
    assert "refused" in result.output and "could run code" in result.output
    assert not zoo["marker"].exists()
    assert not (zoo["out"] / "evil" / "evil.safetensors").exists()


def test_archive_member_is_converted_and_a_missing_one_named(zoo):
    result = run(zoo, "get", "gaitgl-zip")
    assert result.exit_code == 0, result.output
    assert "member CASIA-B/GaitGL/GaitGL/checkpoints/GaitGL-80000.pt" in result.output
    loaded = load_checkpoint(zoo["out"] / "gaitgl-zip" / "gaitgl-zip.safetensors")
    torch.testing.assert_close(loaded.embed(seqs()), zoo["model"].embed(seqs()), rtol=1e-5, atol=1e-6)
    assert [p.name for p in (zoo["out"] / "gaitgl-zip").iterdir() if p.name.startswith(".")] == []
    asked = len(zoo["server"].requests)
    missing = run(zoo, "get", "gaitgl-zip-missing")  # the same archive: not fetched again
    assert missing.exit_code == 2 and one_error_line(missing)
    assert "no member matches" in missing.output and "GaitSet-40000.pt" in missing.output
    assert [p for p, _ in zoo["server"].requests[asked:]] == ["/gaitgl.yaml"]


def test_network_failures_are_one_line(zoo):
    result = run(zoo, "get", "gone")
    assert result.exit_code == 2 and one_error_line(result) and "HTTP 404" in result.output
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run(zoo, "get", "gaitgl-tiny", "--url", f"http://127.0.0.1:{port}/x.pt", "--timeout", "5")
    assert result.exit_code == 2 and one_error_line(result) and "cannot download" in result.output
    result = run(zoo, "get", "gaitgl-tiny", "--url", "ftp://example.org/x.pt")
    assert result.exit_code == 2 and one_error_line(result) and "--url" in result.output


# ----------------------------------------------------------------------------------------------
# verify
# ----------------------------------------------------------------------------------------------


def make_tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in IDS:
        for t in TYPES:
            for v in VIEWS:
                folder = root / i / t / v
                folder.mkdir(parents=True)
                frames = np.zeros((int(rng.integers(3, 6)), 64, 64), np.uint8)
                top = 8 + 4 * int(i)
                frames[:, top : top + 30, 22 + int(v) // 30 : 40] = 255
                frames[:, 50:, :] = rng.integers(0, 2, size=(len(frames), 14, 64), dtype=np.uint8) * 255
                (folder / f"{v}.pkl").write_bytes(pickle.dumps(frames))
    return root


def test_verify_prints_its_numbers_beside_the_published_ones(zoo):
    tree = make_tree(zoo["tmp"] / "pkl")
    part = zoo["tmp"] / "part.json"
    part.write_text(json.dumps({"TRAIN_SET": [], "TEST_SET": list(IDS)}))
    before = run(zoo, "verify", "gaitgl-tiny", "--data", tree)
    assert before.exit_code == 2 and one_error_line(before) and "gait zoo get gaitgl-tiny" in before.output
    assert run(zoo, "get", "gaitgl-tiny").exit_code == 0
    out_json = zoo["tmp"] / "verify.json"
    result = run(zoo, "verify", "gaitgl-tiny", "--data", tree, "--partition", part, "--device", "cpu",
                 "--json", out_json)
    assert result.exit_code == 0, result.output
    ckpt = zoo["out"] / "gaitgl-tiny" / "gaitgl-tiny.safetensors"
    expected = evaluate_checkpoint(ckpt, data=tree, partition=part, device="cpu")
    cross = evaluate_checkpoint(ckpt, data=tree, partition=part, device="cpu", protocol="cross-view",
                                want_map=True)
    rows = {(r["metric"], r["set"]): r for r in json.loads(out_json.read_text())["rows"]}
    for probe_set in ("NM", "BG", "CL"):
        row = rows[("rank1", probe_set)]
        assert row["protocol"] == "auto" and row["measured"] == pytest.approx(expected.rank1[probe_set])
        assert row["difference"] == pytest.approx(round(row["measured"] - row["value"], 2))
    assert rows[("rank1", "CL")]["value"] == 83.8 and rows[("rank1", "CL")]["paper"] == 83.6
    assert rows[("mAP", "NM")]["protocol"] == "cross-view"
    assert rows[("mAP", "NM")]["measured"] == pytest.approx(cross.result.tables.map["NM"].mean)
    text = " ".join(result.output.split())
    assert "rank1 NM auto 97.40 97.40" in text and f"{expected.rank1['NM']:.2f}" in text
    assert not list((zoo["out"] / "gaitgl-tiny").glob(".verify-features*"))


def test_measured_value_reads_every_table_shape():
    from gaitcli.zoo.catalogue import PublishedRow
    from gaitcli.zoo.verify import measured_value

    single_view = {"rank1": {"NM": 91.5, "BG": 80.0}, "rank5_exclude": {"NM": {"mean": 99.0}},
                   "map": {"NM": {"views": {}, "mean": 70.25}}}
    assert measured_value(single_view, PublishedRow("rank1", "BG", 1.0)) == 80.0
    assert measured_value(single_view, PublishedRow("rank5", "NM", 1.0)) == 99.0
    assert measured_value(single_view, PublishedRow("mAP", "NM", 1.0)) == 70.25
    assert measured_value(single_view, PublishedRow("rank1", "CL", 1.0)) is None
    assert measured_value(single_view, PublishedRow("rank1", None, 1.0)) is None  # two sets: ambiguous
    field = {"rank1": {"Gait3D": 60.5}, "map": None,
             "retrieval": {"Gait3D": {"rank1": 60.5, "map": 52.0, "minp": 30.0, "probes": 4}}}
    assert measured_value(field, PublishedRow("rank1", None, 1.0)) == 60.5
    assert measured_value(field, PublishedRow("mAP", None, 1.0)) == 52.0
    assert measured_value(field, PublishedRow("mINP", None, 1.0)) == 30.0
