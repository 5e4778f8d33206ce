import pytest
import torch

pytest.importorskip("skimage", reason="scikit-image not installed")

from slimtorch.data import UNLABELLED, get_dataset, is_unlabelled  # noqa: E402
from slimtorch.data.photos import CALIB_PHOTOS, EVAL_PHOTOS  # noqa: E402
from slimtorch.measure import measure  # noqa: E402


def test_photo_splits_are_disjoint_normalised_and_unlabelled():
    assert not set(CALIB_PHOTOS) & set(EVAL_PHOTOS)
    calib, evals = get_dataset("photos", calib_per_photo=1, eval_per_photo=2, size=32)
    assert len(calib) == len(CALIB_PHOTOS) and len(evals) == 2 * len(EVAL_PHOTOS)
    x, y = evals.tensors
    assert x.shape[1:] == (3, 32, 32) and (y == UNLABELLED).all()
    assert -3 < float(x.mean()) < 3 and is_unlabelled(evals)
    assert not torch.equal(calib.tensors[0][:1], evals.tensors[0][:1])


def test_measure_on_unlabelled_data_reports_agreement_not_accuracy():
    _, evals = get_dataset("photos", calib_per_photo=1, eval_per_photo=1, size=32)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5))
    rec = measure(model, evals[0][0][None], data=evals, reference=model, latency_batches=())
    assert rec.accuracy is None and rec.agreement == 1.0


def test_three_photo_splits_keep_whole_photos_apart():
    from slimtorch.data.photos import photo_splits

    cal, sel, test, info = photo_splits(1, 1, 1, size=32)
    assert info["disjoint"] is True
    assert (len(cal), len(sel), len(test)) == (info["calibration"], info["selection"], info["test"])
    assert not set(info["photos"]["selection"]) & (set(info["photos"]["test"]) | set(info["photos"]["calibration"]))
    assert sel.shape[1:] == (3, 32, 32) and float(sel.std()) > 0.1  # the silhouette and the stereo view load as RGB
