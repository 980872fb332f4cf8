"""Trackers on the cached detections of the shipped detector: they run, and on their real output the
book's MOTA, IDF1 and HOTA still equal motmetrics' and TrackEval's."""

import numpy as np
import pytest

from efsora_helpers.video import frames as F
from efsora_helpers.video import metrics as M
from efsora_helpers.video import track as T
from efsora_helpers.video.detect import detections_root, read_detections

pytest.importorskip("trackers")
NAME = "vest_on_in_lane"
if not (detections_root() / f"{NAME}_det.txt").exists():
    pytest.skip("no cached detections (python -m efsora_helpers.video.detect)", allow_module_level=True)


@pytest.fixture(scope="module", params=[NAME, "busy_aisle"])  # busy_aisle: where an early MOTA was 2 switches off
def runs(request):
    gt_rows = F.mot_rows(request.param)
    gt = M.by_frame(gt_rows[gt_rows[:, 7] == 1])  # workers
    det = read_detections(request.param)
    kwargs = {"high_conf_det_threshold": 0.5, "track_activation_threshold": 0.5}
    return gt, {kind: T.track(kind, det, F.meta(request.param)["frames"], **(kwargs if kind == "bytetrack" else {}))
                for kind in ("bytetrack", "sort", "botsort")}


def test_trackers_give_ids_to_the_workers(runs):
    gt, out = runs
    for kind, rows in out.items():
        assert len(rows) > 0.5 * sum(map(len, gt.values())), kind
        assert set(rows[:, 7]) == {1}
        scores = M.clear_mot(gt, M.by_frame(rows)) | M.hota(gt, M.by_frame(rows))
        assert scores["mota"] > 0.3 and scores["hota"] > 0.3, (kind, scores["mota"], scores["hota"])


@pytest.mark.slow
def test_metrics_on_real_tracker_output_equal_the_references(runs):
    from test_video_metrics import _motmetrics, _trackeval_hota

    gt, out = runs
    for rows in out.values():
        hyp = M.by_frame(rows)
        ours, ref = M.clear_mot(gt, hyp) | M.identity(gt, hyp), _motmetrics(gt, hyp)
        for key in ("num_switches", "num_misses", "num_false_positives"):
            assert ours[key] == ref[key], key
        for key in ("mota", "idf1"):
            assert ours[key] == pytest.approx(ref[key], abs=1e-9), key
        pytest.importorskip("trackeval")
        np.testing.assert_allclose(M.hota(gt, hyp)["hota_per_alpha"], _trackeval_hota(gt, hyp)["HOTA"], atol=1e-9)
