"""The cell protocol of the test (`test.cell_clip`, liif/evaluation/protocol.py): the cell that
reaches `Model.query` at each test scale, each family's published default, the override, and
what metrics.json records. The oracle: LTE's evaluation of one crop with and without the clip
(tests/fixtures/official_lte/eval_cellclip.npz), once the `lte` model is registered."""
import json

import numpy as np
import pytest
from PIL import Image

import liif
from conftest import ROOT, compose, run_task_with_overrides, typed
from liif.config import TestConfig, TestSetConfig
from liif.errors import ConfigError
from liif.evaluation import protocol
from liif.evaluation.evaluate import evaluate

HR_SHAPE = (96, 120)  # a multiple of 2, 6 and 12: the cell at scale s is exactly 2/H, 2/W of the HR


@pytest.fixture(scope="module")
def tiny_model():
    return liif.create_model("edsr_baseline_liif", device="cpu", encoder_spec={"args": {"n_resblocks": 1, "n_feats": 8}},
                             imnet_spec={"args": {"hidden_list": [8]}})


@pytest.fixture(scope="module")
def crop_folder(tmp_path_factory):
    from skimage import data
    folder = tmp_path_factory.mktemp("crop")
    Image.fromarray(np.ascontiguousarray(data.astronaut()[300:396, 100:220])).save(folder / "0.png")
    return folder


class Spy:
    """A model that records the cell each `query` gets and answers with the wrapped model;
    `name` stands in for its spec's name (the family whose protocol applies)."""

    def __init__(self, model, name):
        self.model, self.cells = model, []
        self.spec = {**model.spec, "name": name}

    def query(self, inp, coord, cell, **kwargs):
        self.cells.append(np.array(cell))
        return self.model.query(inp, coord, cell, **kwargs)


def cells_at(model, name, folder, scales, cell_clip):
    """{scale: the cell reaching Model.query} and the records of `evaluate` on `folder`."""
    spy = Spy(model, name)
    records = evaluate(spy, [TestSetConfig(name="crop", hr=str(folder), protocol="div2k", scales=list(scales))],
                       cell_clip=cell_clip)
    return dict(zip(scales, spy.cells)), records


def test_the_cell_at_x6_is_multiplied_by_1_5_with_clip_4_and_not_without(tiny_model, crop_folder):
    plain = np.array([2 / HR_SHAPE[0], 2 / HR_SHAPE[1]], np.float32)
    clipped, records = cells_at(tiny_model, "liif", crop_folder, (2, 4, 6), cell_clip=4)
    for s, factor in ((2, 1), (4, 1), (6, 1.5)):  # max(s / 4, 1)
        assert np.array_equal(clipped[s][0], np.tile(plain * np.float32(factor), (HR_SHAPE[0] * HR_SHAPE[1], 1))), s
    assert [r["cell_clip"] for r in records] == [4, 4, 4]
    unclipped, records = cells_at(tiny_model, "liif", crop_folder, (6,), cell_clip=False)
    assert np.array_equal(unclipped[6][0], np.tile(plain, (HR_SHAPE[0] * HR_SHAPE[1], 1)))
    assert records[0]["cell_clip"] is None
    # the clip changes what the model predicts beyond x4 (the LIIF decoder reads the cell), never below
    assert records[0]["psnr"] != cells_at(tiny_model, "liif", crop_folder, (6,), cell_clip=4)[1][0]["psnr"]


@pytest.mark.parametrize("family,expected", [("liif", None), ("metasr", None), ("lte", 4)])
def test_each_family_gets_its_published_protocol_by_default(tiny_model, crop_folder, family, expected):
    """null: LTE's authors clip at their training range (x4), LIIF's and MetaSR's test.py never
    (a stand-in spec name for lte: the protocol follows the name, whatever computes the numbers)."""
    cells, [record] = cells_at(tiny_model, family, crop_folder, (12,), cell_clip=None)
    factor = 1 if expected is None else 3  # x12 / 4
    assert cells[12][0, 0, 0] == np.float32(2 / HR_SHAPE[0]) * np.float32(factor)
    assert record["cell_clip"] == expected


@pytest.mark.parametrize("setting,expected", [(None, 4), (False, None), (0, None), (4, 4), (6, 6), (2.5, 2.5)])
def test_the_setting_overrides_every_family(setting, expected):
    assert protocol.cell_clip_for("lte", setting) == expected
    assert protocol.cell_clip_for("liif", setting) == (None if setting is None else expected)


def test_cell_factor():
    assert [protocol.cell_factor(s, 4) for s in (1, 2, 4, 6, 12, 30)] == [1, 1, 1, 1.5, 3, 7.5]
    assert protocol.cell_factor(30, None) == 1


@pytest.mark.parametrize("bad", [True, 0.5, -4, float("inf"), float("nan")])
def test_impossible_settings_are_one_line_config_errors(bad):
    with pytest.raises(ConfigError, match=r"test\.cell_clip=.* must be a scale >= 1"):
        TestConfig(cell_clip=bad)


@pytest.mark.slow
def test_the_cli_setting_reaches_the_typed_config():
    assert typed("task=test", "checkpoint=x.pth").test.cell_clip is None  # the default: published protocols
    for value, expected in (("4", 4), ("false", False), ("2.5", 2.5), ("null", None)):
        assert typed("task=test", "checkpoint=x.pth", f"test.cell_clip={value}").test.cell_clip == expected


@pytest.mark.slow
def test_metrics_json_records_the_protocol_of_each_number(tmp_path, crop_folder, fixtures_dir):
    ckpt = str(fixtures_dir / "ckpt_edsr-baseline-liif.pth")
    base = compose("task=test", f"checkpoint={ckpt}", "dataset=folder", f"dataset.path={crop_folder}",
                   f"dataset.test_path={crop_folder}", "scales=[2,6]", "device=cpu")
    runs = {}
    for name, extra in (("default", []), ("clip4", ["test.cell_clip=4"])):
        status, err = run_task_with_overrides(base, *extra, f"output_dir={tmp_path / name}")
        assert status == 0, err
        runs[name] = {r["scale"]: r for r in json.loads((tmp_path / name / "metrics.json").read_text())["records"]}
    assert {s: r["cell_clip"] for s, r in runs["default"].items()} == {2: None, 6: None}  # LIIF's protocol
    assert {s: r["cell_clip"] for s, r in runs["clip4"].items()} == {2: 4, 6: 4}
    assert runs["default"][2]["psnr"] == runs["clip4"][2]["psnr"]  # max(2 / 4, 1) = 1: the same cell
    assert runs["default"][6]["psnr"] != runs["clip4"][6]["psnr"]
    from liif.run.record import RunRecord  # and the reader keeps it
    record = RunRecord.from_dict(json.loads((tmp_path / "clip4" / "metrics.json").read_text()))
    assert [r.cell_clip for r in record.records] == [4, 4]


LTE_FIXTURES = ROOT / "tests" / "fixtures" / "official_lte"  # the lte model's oracle fixtures (they land with it)


@pytest.mark.slow
def test_lte_protocol_reproduces_the_authors_evaluation(tmp_path):
    """eval_cellclip.npz: the authors' code (EDSR-baseline-LTE, ckpt_edsr-baseline-lte.pth) on one
    96x120 crop at x2, x6, x12, with their cell clip (the default for lte) and without it
    (test.cell_clip=false): the same LR, predictions to 1e-5 and PSNR to 1e-4 dB."""
    from liif.data import layouts
    from liif.evaluation.evaluate import predict_image
    ref = np.load(LTE_FIXTURES / "eval_cellclip.npz")
    model = liif.load_model(LTE_FIXTURES / "ckpt_edsr-baseline-lte.pth", device="cpu")
    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    hr = ref["x2_hr"]  # the same crop at every scale (the copy keeps x2's only: tests/fixtures/README.md)
    Image.fromarray(np.round(hr.transpose(1, 2, 0) * 255).astype(np.uint8)).save(hr_dir / "0.png")
    for s in (2, 6, 12):
        sample = layouts.test_set(str(hr_dir), None, s)[0]
        assert np.abs(sample["inp"] - ref[f"x{s}_lr"]).max() < 1e-6, s  # the same Pillow-bicubic LR
        for setting, name in ((None, "clip"), (False, "noclip")):
            clip = protocol.cell_clip_for(model.spec["name"], setting)
            assert clip == (4 if setting is None else None)
            pred, _, _ = predict_image(model, sample, 30000, cell_factor=protocol.cell_factor(s, clip))
            assert np.abs(pred - ref[f"x{s}_pred_{name}"]).max() < 1e-5, (s, name)
            [record] = evaluate(model, [TestSetConfig(name="crop", hr=str(hr_dir), protocol="div2k", scales=[s])],
                                cell_clip=setting)
            assert abs(record["psnr"] - float(ref[f"x{s}_psnr_{name}"])) < 1e-4, (s, name, record["psnr"])
            assert record["cell_clip"] == clip
        if s > 4:  # the two protocols give different numbers beyond the training range
            assert np.abs(ref[f"x{s}_pred_clip"] - ref[f"x{s}_pred_noclip"]).max() > 1e-4
