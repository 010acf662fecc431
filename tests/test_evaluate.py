"""`sprites eval`: joining ground truth and predictions by source, scores, counts, errors."""

from __future__ import annotations

import csv
import json

import h5py
import numpy as np
import pytest

from pipeline.cli import cli
from pipeline.errors import SpritesError
from pipeline.evaluation.evaluate import evaluate, read_labels
from pipeline.core.project import init_project
from pipeline.core.runner import run_stages
from pipeline.core.store import read_strings, stage_attrs, write_stage
import stages

QUIET = {"log": lambda *a, **k: None, "progress": False}


def _labels(project) -> list[tuple[str, int]]:
    with open(project.ground_truth_dir / "labels.csv", newline="", encoding="utf-8") as f:
        return [(s, int(l)) for s, l in list(csv.reader(f))[1:]]


def _crop_sources(project) -> list[str]:
    with h5py.File(project.stage_path("ingest"), "r") as f:
        return read_strings(f["source"])


def _fake_decompose(project, K: int, front=None, instance=None, semantic=None, instance_fg=None) -> None:
    """A complete cache/decompose.h5 made by hand (rows = crops of ingest.h5)."""
    ingest = stage_attrs(project.stage_path("ingest"))
    n = len(_crop_sources(project))
    meta = {"stage": "decompose", "fingerprint": "fake", "deps_json": {"ingest": ingest["run_id"]},
            "stage_version": 1}
    with write_stage(project.stage_path("decompose"), meta) as f:
        f.create_dataset("front", data=np.asarray(front if front is not None else np.zeros(n), dtype=np.int16))
        f.create_dataset("sprite", data=np.asarray(f["front"][()])[:, None])
        if instance is not None:
            f.create_dataset("instance", data=np.asarray(instance, dtype=np.uint8))
        if semantic is not None:
            f.create_dataset("semantic", data=np.asarray(semantic, dtype=np.uint8))
        if instance_fg is not None:
            f.create_dataset("instance_fg", data=np.asarray(instance_fg, dtype=np.uint8))
        f.attrs.update({"sprites": K, "layers": 1, "count": n})


@pytest.fixture(scope="module")
def glyphs(tmp_path_factory):
    """A tiny glyphs project, trained one epoch and decomposed."""
    root = tmp_path_factory.mktemp("glyphs") / "proj"
    project = init_project(root, example="glyphs", count=60, sets=["train.epochs=1", "model.sprites=3"])
    run_stages(project, project.config(), ["decompose"], stages=stages.STAGES, **QUIET)
    return project


@pytest.fixture
def ingested(tmp_path):
    """make(example, count) → a project of that example with only the ingest run."""
    def make(example: str = "glyphs", count: int = 40, *sets: str):
        project = init_project(tmp_path / example, example=example, count=count, sets=list(sets))
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **QUIET)
        return project
    return make


def test_real_project_keys_ranges_and_json(glyphs):
    result = evaluate(glyphs, stages=stages.STAGES)
    c = result["clustering"]
    assert {"acc", "avg_acc", "nmi", "ari", "n", "n_classes", "n_clusters", "mapping", "empty", "unlabelled"} <= set(c)
    assert 0 <= c["acc"] <= 1 and 0 <= c["nmi"] <= 1 and -1 <= c["ari"] <= 1
    assert c["n"] == 60 and c["n_clusters"] == 3 and c["n_classes"] == 10
    assert result["counts"]["labels"]["matched_crops"] == 60
    assert result["counts"]["labels"]["crops_without_ground_truth"] == 0
    assert result["decompose"]["state"] == "fresh"
    assert len(result["decompose"]["fingerprint"]) == 64
    assert "masks" not in result  # glyphs ship no masks
    saved = json.loads((glyphs.exports_dir / "eval.json").read_text(encoding="utf-8"))
    assert saved["clustering"] == c and saved["date"]
    assert result["path"] == str(glyphs.exports_dir / "eval.json")
    assert not list(glyphs.exports_dir.glob("*.tmp-*"))


def test_perfect_and_permuted_predictions(ingested):
    project = ingested("glyphs", 40)
    truth = dict(_labels(project))
    y = np.array([truth[s] for s in _crop_sources(project)])
    _fake_decompose(project, 10, front=y)
    c = evaluate(project)["clustering"]
    assert c["acc"] == 1.0 and c["nmi"] == pytest.approx(1.0) and c["ari"] == pytest.approx(1.0)
    _fake_decompose(project, 10, front=(y + 3) % 10)  # a relabelling: Hungarian undoes it
    c = evaluate(project)["clustering"]
    assert c["acc"] == 1.0 and c["mapping"]["3"] == 0  # cluster 3 = class 0


def test_empty_unlabelled_and_unmatched_are_counted(ingested, tmp_path):
    project = ingested("glyphs", 40)
    sources = _crop_sources(project)
    truth = dict(_labels(project))
    y = np.array([truth[s] for s in sources])
    front = y.copy()
    front[:4] = -1                           # 4 crops with every layer empty
    _fake_decompose(project, 10, front=front)
    csv_path = tmp_path / "labels.csv"
    rows = [("source", "label")] + [(s, truth[s]) for s in sources[:-5]]   # 5 crops without a label
    rows[5] = (rows[5][0], -1)               # one unlabelled image (row 5 = crop 4)
    rows.append(("elsewhere/missing.png", 2))  # a label without a crop
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    result = evaluate(project, labels=csv_path)
    counts, c = result["counts"]["labels"], result["clustering"]
    assert counts["crops"] == 40 and counts["matched_crops"] == 35
    assert counts["crops_without_ground_truth"] == 5 and counts["ground_truth_without_crop"] == 1
    assert counts["examples_ground_truth_without_crop"] == ["elsewhere/missing.png"]
    assert c["unlabelled"] == 1 and c["empty"] == 4 and c["n"] == 34
    assert c["acc"] == pytest.approx(30 / 34)  # empties count as errors
    assert 0 < c["nmi"] < 1


def test_string_labels_and_semicolons(ingested, tmp_path):
    project = ingested("glyphs", 20)
    sources = _crop_sources(project)
    _fake_decompose(project, 2, front=[i % 2 for i in range(len(sources))])
    path = tmp_path / "names.csv"
    path.write_text("\ufeffSource;Label;note\n" + "".join(f"./{s};{'ab'[i % 2]};x\n" for i, s in enumerate(sources)),
                    encoding="utf-8")
    labels, names, n_classes = read_labels(path)
    assert names == ["a", "b"] and n_classes == 2
    c = evaluate(project, labels=path)["clustering"]
    assert c["acc"] == 1.0 and c["class_names"] == ["a", "b"]


def test_masks_perfect_prediction(ingested):
    project = ingested("tetrominoes", 8)
    with h5py.File(project.ground_truth_dir / "masks.h5", "r") as f:
        gt = dict(zip(read_strings(f["source"]), zip(f["instance"][()], f["semantic"][()])))
    order = _crop_sources(project)
    inst = np.stack([gt[s][0] for s in order])
    sem = np.stack([gt[s][1] for s in order])
    _fake_decompose(project, 19, front=np.zeros(len(order)), instance=inst, semantic=sem)
    m = evaluate(project, masks=project.ground_truth_dir / "masks.h5")["masks"]
    assert m["ari_fg"] == pytest.approx(1.0) and m["ari"] == pytest.approx(1.0)
    assert m["acc"] == pytest.approx(1.0) and m["acc_nobkg"] == pytest.approx(1.0)
    assert m["n_images"] == 8 and m["n_classes"] == 20 and m["fg_iou"] == pytest.approx(1.0)
    # a relabelled prediction (layers and sprites permuted) scores the same
    _fake_decompose(project, 19, front=np.zeros(len(order)), instance=np.where(inst > 0, 4 - inst, 0),
                    semantic=np.where(sem > 0, 20 - sem, 0))
    m2 = evaluate(project, masks=project.ground_truth_dir / "masks.h5")["masks"]
    assert m2["ari_fg"] == pytest.approx(1.0) and m2["acc"] == pytest.approx(1.0)


def test_ari_fg_counts_background_pixels_for_the_closest_layer(ingested):
    """The papers' protocol: ARI-FG reads `instance_fg` (background pixels reassigned), ARI `instance`."""
    project = ingested("tetrominoes", 8)
    with h5py.File(project.ground_truth_dir / "masks.h5", "r") as f:
        gt = dict(zip(read_strings(f["source"]), f["instance"][()]))
    inst = np.stack([gt[s] for s in _crop_sources(project)])
    eroded = inst.copy()
    eroded[:, ::2] = 0                                   # every other row left to the background
    _fake_decompose(project, 19, instance=eroded)
    without = evaluate(project, masks=project.ground_truth_dir / "masks.h5")["masks"]
    _fake_decompose(project, 19, instance=eroded, instance_fg=inst)
    with_fg = evaluate(project, masks=project.ground_truth_dir / "masks.h5")["masks"]
    assert without["ari_fg"] < 0.9 and with_fg["ari_fg"] == pytest.approx(1.0)
    assert with_fg["ari"] == pytest.approx(without["ari"])
    # foreground IoU over all pixels: the eroded prediction covers the truth's rows 1, 3, 5, …
    assert without["fg_iou"] == pytest.approx(((eroded > 0).sum()) / ((inst > 0).sum()))


def test_masks_on_a_trained_coins_project_with_resize(tmp_path):
    project = init_project(tmp_path / "coins", example="coins", count=16,
                           sets=["train.epochs=1", "ingest.size=32", "train.batch_size=8"])
    run_stages(project, project.config(), ["decompose"], stages=stages.STAGES, **QUIET)
    result = evaluate(project)  # both labels.csv and masks.h5 from ground_truth/
    m = result["masks"]
    for key in ("ari_fg", "ari", "miou", "macc", "miou_nobkg", "macc_nobkg"):
        assert -1 <= m[key] <= 1, key
    assert 0 <= m["miou"] <= 1 and m["n_images"] == 16
    assert any("resized" in n for n in result["notes"])  # 64 px masks → 32 px crops
    assert "clustering" in result


def test_bad_labels_csv(ingested, tmp_path):
    project = ingested("glyphs", 10)
    _fake_decompose(project, 10)
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\na.png,1\n", encoding="utf-8")
    with pytest.raises(SpritesError, match=r"bad\.csv.*'source'.*'label'"):
        evaluate(project, labels=bad)
    nothing = tmp_path / "nomatch.csv"
    nothing.write_text("source,label\nnot/here.png,1\n", encoding="utf-8")
    with pytest.raises(SpritesError, match="none of the 1 sources"):
        evaluate(project, labels=nothing)
    with pytest.raises(SpritesError, match="not found"):
        evaluate(project, labels=tmp_path / "absent.csv")


def test_masks_file_missing_datasets(ingested, tmp_path):
    project = ingested("glyphs", 10)
    _fake_decompose(project, 10)
    path = tmp_path / "masks.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("semantic", data=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(SpritesError, match=r"masks\.h5.*source, instance"):
        evaluate(project, masks=path)


def test_missing_decompose_and_missing_ground_truth(ingested, tmp_path):
    project = ingested("glyphs", 10)
    with pytest.raises(SpritesError, match="sprites run all"):
        evaluate(project)
    bare = init_project(tmp_path / "bare", images=str(project.root / "images"), sets=["ingest.size=16"])
    with pytest.raises(SpritesError, match="--labels"):
        evaluate(bare)


def test_cli_eval(glyphs, cli_runner):
    result = cli_runner.invoke(cli, ["eval", "--project", str(glyphs.root)])
    assert result.exit_code == 0, result.output
    assert "clustering: acc " in result.output and "(n = 60" in result.output
    assert "eval.json" in result.output
    bad = cli_runner.invoke(cli, ["eval", "--project", str(glyphs.root), "--labels", str(glyphs.root / "nope.csv")])
    assert bad.exit_code == 1 and "Error:" in bad.output and "Traceback" not in bad.output


def test_masks_in_image_coordinates_are_cut_and_placed_in_the_crop():
    from pipeline.evaluation.evaluate import _to_crop
    mask = np.zeros((40, 20), np.uint8)   # image 20 wide, 40 high
    mask[:20] = 1                         # top half object 1
    mask[20:] = 2                         # bottom half object 2
    whole = {"size": np.array([[20, 40]]), "box": np.array([[0, 0, 20, 40]]), "content_box": np.array([[4, 0, 8, 16]])}
    out = _to_crop(mask, 16, whole, 0)
    assert (out[:, :4] == 0).all() and (out[:, 12:] == 0).all()   # padding = background
    assert (out[:8, 4:12] == 1).all() and (out[8:, 4:12] == 2).all()
    # the bottom-half box of the same image, masks given at half resolution
    half = {"size": np.array([[20, 40]]), "box": np.array([[0, 20, 20, 20]]), "content_box": np.array([[0, 0, 16, 16]])}
    out = _to_crop(mask[::2, ::2], 16, half, 0)
    assert (out == 2).all()


class TestBoxLabels:
    """Labels of several crops per page: `source,x,y,w,h,label`, joined to crops by box overlap."""

    @pytest.fixture
    def pages(self, tmp_path):
        from PIL import Image
        root = tmp_path / "pages"
        root.mkdir()
        for p in range(2):
            page = np.full((60, 120), 230, np.uint8)
            for j in range(3):
                page[10:40, 10 + 35 * j:35 + 35 * j] = 30 + 60 * j   # three dark squares
            Image.fromarray(page).save(root / f"p{p}.png")
        boxes = tmp_path / "boxes.csv"
        boxes.write_text("source,x,y,w,h\n" + "".join(f"p{p}.png,{8 + 35 * j},8,29,34\n" for p in range(2) for j in range(3)))
        return root, boxes

    def test_each_crop_takes_its_box_label(self, tmp_path, pages):
        root, boxes = pages
        project = init_project(tmp_path / "proj", images=str(root),
                               sets=["ingest.crop=boxes", f"ingest.boxes={boxes}", "ingest.size=16", "ingest.channels=1"])
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **QUIET)
        # the labelled boxes are the letters' tight boxes: smaller than the crops' (IoU 0.6), one unlabelled page-corner box
        labels = tmp_path / "labels.csv"
        labels.write_text("source,x,y,w,h,label\n" + "".join(f"p{p}.png,{10 + 35 * j},10,25,30,{'abc'[j]}\n"
                                                              for p in range(2) for j in range(3))
                          + "p1.png,100,50,10,10,d\n")
        _fake_decompose(project, K=3, front=[0, 1, 2, 0, 1, 2])
        result = evaluate(project, labels=labels)
        c, counts = result["clustering"], result["counts"]["labels"]
        assert c["acc"] == 1.0 and c["n"] == 6 and c["class_names"] == ["a", "b", "c", "d"]
        assert counts["matched_crops"] == 6 and counts["crops_without_ground_truth"] == 0
        assert counts["ground_truth_without_crop"] == 1 and counts["ground_truth_with_several_crops"] == 0

    def test_boxes_that_overlap_no_crop_are_an_error(self, tmp_path, pages):
        root, boxes = pages
        project = init_project(tmp_path / "proj", images=str(root),
                               sets=["ingest.crop=boxes", f"ingest.boxes={boxes}", "ingest.size=16", "ingest.channels=1"])
        run_stages(project, project.config(), ["ingest"], stages=stages.STAGES, **QUIET)
        _fake_decompose(project, K=3)
        labels = tmp_path / "far.csv"
        labels.write_text("source,x,y,w,h,label\np0.png,0,45,5,5,a\n")
        with pytest.raises(SpritesError, match="overlaps a crop of its page"):
            evaluate(project, labels=labels)
        labels.write_text("source,x,y,w,h,label\np0.png,a,1,2,3,a\n")
        with pytest.raises(SpritesError, match="x, y, w, h must be numbers"):
            evaluate(project, labels=labels)
