"""evaluate --protocol kitti-eigen on a bag of a miniature KITTI drive, against eigen_errors on the same arrays."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import write_kitti_drive

from mono_depth_ros.bagio import BagReader
from mono_depth_ros.bagio.decode import decode_depth
from mono_depth_ros.inference import DepthEstimator
from mono_depth_ros.model_file import ModelMetadata, save_model_file
from mono_depth_ros.networks import DepthNet
from mono_depth_ros_training.evaluate import main
from mono_depth_ros_training.kitti.evaluate import eigen_scaling
from mono_depth_ros_training.kitti.protocol import STEREO_SCALE_FACTOR, eigen_errors, format_eigen_table
from mono_depth_ros_training.kitti.raw import DEPTH_TOPIC, kitti_to_bag

FRAMES = 3
IN_W, IN_H = 128, 64
MIN_DEPTH, MAX_DEPTH = 0.1, 100.0


@pytest.fixture(scope="module")
def kitti_bag(tmp_path_factory):
    root = tmp_path_factory.mktemp("kitti_eval")
    (bag,) = kitti_to_bag([write_kitti_drive(root / "kitti", frames=FRAMES)], root / "bags", progress=False)
    with BagReader(bag) as reader:
        gts = [decode_depth(msg).astype(np.float64) for _, _, _, msg in reader.messages([DEPTH_TOPIC])]
    assert len(gts) == FRAMES and all(np.count_nonzero(gt) > 100 for gt in gts)
    return bag, gts


def _model(path, **metadata):
    save_model_file(path, ModelMetadata(input_width=IN_W, input_height=IN_H, min_depth=MIN_DEPTH,
                                        max_depth=MAX_DEPTH, **metadata), DepthNet(18))
    return str(path)


def _sigmoid(k):
    """The known sigmoid disparity the patched network returns for the k-th image of a run (float32)."""
    x = np.arange(IN_W, dtype=np.float32)[None, :] / IN_W
    return np.broadcast_to(np.float32(0.05 * (k + 1)) + np.float32(0.04) * x, (IN_H, IN_W)).astype(np.float32)


@pytest.fixture
def known_network(monkeypatch):
    calls = []

    def disparity(self, image):
        assert tuple(image.shape[-2:]) == (IN_H, IN_W)
        s = torch.from_numpy(_sigmoid(len(calls) % FRAMES).copy())[None, None]
        calls.append(s)
        return s

    monkeypatch.setattr(DepthEstimator, "disparity", disparity)
    min_disp, max_disp = 1 / MAX_DEPTH, 1 / MIN_DEPTH
    # network depth in model units at the network's resolution
    return [1.0 / (np.float32(min_disp) + np.float32(max_disp - min_disp) * _sigmoid(k)).astype(np.float64)
            for k in range(FRAMES)]


def _run(capsys, tmp_path, bag, model, *extra):
    out = tmp_path / "kitti.json"
    code = main(["--protocol", "kitti-eigen", "--model", model, "--bag", str(bag), "--device", "cpu",
                 "--json", str(out), *extra])
    text = capsys.readouterr().out
    assert code == 0, text
    return text, json.loads(out.read_text())["rows"][0]


def _check(text, row, expected, median_scaling, fixed_scale):
    assert format_eigen_table(expected) in text
    assert row["median_scaling"] is median_scaling and row["fixed_scale"] == pytest.approx(fixed_scale)
    assert row["frames"] == FRAMES
    for name in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"):
        assert row[name] == pytest.approx(expected[name], rel=1e-5, abs=1e-9)


def test_relative_model_is_median_scaled(kitti_bag, known_network, tmp_path, capsys):
    bag, gts = kitti_bag
    model = _model(tmp_path / "relative.safetensors", metric=False)
    text, row = _run(capsys, tmp_path, bag, model)
    expected = eigen_errors(gts, known_network, median_scaling=True)
    _check(text, row, expected, True, 1.0)
    assert "scale ratios" in text and "ratio_mean" in row
    unscaled = eigen_errors(gts, known_network, median_scaling=False)
    assert abs(unscaled["abs_rel"] - expected["abs_rel"]) > 1e-3  # the two differ: the test can tell them apart


def test_metric_model_is_not_median_scaled_and_fixed_scale_option(kitti_bag, known_network, tmp_path, capsys):
    bag, gts = kitti_bag
    model = _model(tmp_path / "metric.safetensors", metric=True, depth_scale=2.0)
    text, row = _run(capsys, tmp_path, bag, model)
    _check(text, row, eigen_errors(gts, known_network, median_scaling=False, fixed_scale=2.0), False, 2.0)
    assert "scale ratios" not in text and "ratio_mean" not in row
    text, row = _run(capsys, tmp_path, bag, model, "--fixed-scale", "3")
    _check(text, row, eigen_errors(gts, known_network, median_scaling=False, fixed_scale=3.0), False, 3.0)
    assert row["fixed_scale_from"] == "--fixed-scale"


def test_imported_monodepth2_stereo_weights_get_the_stereo_factor(kitti_bag, known_network, tmp_path, capsys):
    bag, gts = kitti_bag
    # as import_monodepth2 writes it (depth_scale deliberately not 5.4: the benchmark's factor wins)
    training = {"source": "monodepth2", "trained_with": "stereo"}
    model = _model(tmp_path / "stereo.safetensors", metric=True, depth_scale=2.0, training=training)
    text, row = _run(capsys, tmp_path, bag, model)
    expected = eigen_errors(gts, known_network, median_scaling=False, fixed_scale=STEREO_SCALE_FACTOR)
    _check(text, row, expected, False, STEREO_SCALE_FACTOR)
    assert "imported Monodepth2 stereo weights" in text
    mono = ModelMetadata(metric=False, training={"source": "monodepth2", "trained_with": "monocular video"})
    assert eigen_scaling(mono) == (True, 1.0, "the model file's depth_scale")


def test_a_real_network_runs_and_errors_are_reported(kitti_bag, tmp_path, capsys):
    bag, _ = kitti_bag
    model = _model(tmp_path / "real.safetensors", metric=False)
    text, row = _run(capsys, tmp_path, bag, model)
    assert row["frames"] == FRAMES and all(np.isfinite(row[name]) for name in ("abs_rel", "rmse", "a1"))
    with pytest.raises(SystemExit):
        main(["--protocol", "kitti-eigen", "--bag", str(bag), "--baseline", "constant"])
    with pytest.raises(SystemExit):
        main(["--model", model, "--bag", str(bag), str(bag)])  # several bags: kitti-eigen only
    assert main(["--protocol", "kitti-eigen", "--model", model, "--bag", str(bag), "--max-depth", "1",
                 "--device", "cpu"]) == 1
    assert "no left image" in capsys.readouterr().err
