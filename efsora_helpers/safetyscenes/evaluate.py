"""Measuring the SafetyScenes models on a test set rendered from unseen seeds.

``evaluate(weights, n_images)`` renders a fresh test split (seeds from ``FRESH_TEST_BASE``, never
used for training or validation), runs ultralytics' validator for per-class AP, and cross-checks
the box mAP with ``pycocotools`` on the COCO export of the same images: two independent
implementations of the same metric must agree (within 0.02 here). Taught in
``notebooks/setup/safetyscenes.ipynb``.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

from .dataset import FRESH_TEST_BASE, write_split
from .render import CLASSES


def coco_map(model, images_dir: Path, coco_json: Path, imgsz: int, iou_type: str = "bbox") -> dict:
    """mAP@0.5:0.95 and mAP@0.5 of ``model`` computed by pycocotools' COCOeval."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from ..perception.metrics import cocoeval_summary
    from ..perception.schema import encode_mask

    gt = COCO(str(coco_json)) if not isinstance(coco_json, COCO) else coco_json
    detections = []
    for image in gt.dataset["images"]:
        # retina_masks: masks at the image's resolution, as the ground-truth RLEs are
        result = model.predict(str(Path(images_dir) / image["file_name"]), imgsz=imgsz, conf=0.001, iou=0.7,
                               max_det=300, verbose=False, retina_masks=iou_type == "segm")[0]
        masks = result.masks.data.cpu().numpy() if iou_type == "segm" and result.masks is not None else None
        for k, ((x1, y1, x2, y2), score, cls) in enumerate(zip(result.boxes.xyxy.tolist(), result.boxes.conf.tolist(),
                                                               result.boxes.cls.tolist())):
            detection = {"image_id": image["id"], "category_id": int(cls) + 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            if masks is not None:
                rle = encode_mask(masks[k] > 0.5)
                detection["segmentation"] = {"size": list(rle.size), "counts": rle.data}
            detections.append(detection)
    if not detections:
        return {"map50_95": 0.0, "map50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its table
        evaluator = COCOeval(gt, gt.loadRes(detections), iou_type)
        evaluator.params.maxDets = [1, 10, 300]  # ultralytics keeps up to 300 detections per image
        evaluator.evaluate()
        evaluator.accumulate()
    summary = cocoeval_summary(evaluator, [c["name"] for c in gt.dataset["categories"]])
    return {"map50_95": summary["map50_95"], "map50": summary["map50"]}


def evaluate(weights: Path, n_images: int = 100, imgsz: int = 416, seed_base: int = FRESH_TEST_BASE,
             cross_check: bool = True) -> dict:
    """Per-class AP and overall mAP on ``n_images`` fresh scenes (plus the pycocotools check)."""
    from ultralytics import YOLO

    model = YOLO(str(weights))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_split(root, "test", list(range(seed_base, seed_base + n_images)), progress=False)
        (root / "data.yaml").write_text(
            "train: images/test\nval: images/test\ntest: images/test\nnames:\n" + "".join(f"  {i}: {c}\n" for i, c in enumerate(CLASSES))
        )
        data = root / "data.yaml"
        if model.task == "detect":  # compare against the exact boxes, as pycocotools does
            from .train import detection_view

            data = detection_view(root, root / "detect", ["test"])
        # overlap_mask=False: with the default, ultralytics packs the ground-truth masks into one map
        # where smaller masks overwrite larger ones, so a worker's true mask would lose the PPE they wear.
        extra = {"overlap_mask": False} if model.task == "segment" else {}
        metrics = model.val(data=str(data), split="test", imgsz=imgsz, batch=16, device="cpu",
                            plots=False, verbose=False, project=str(root / "runs"), name="val", **extra)
        box = metrics.box
        report = {
            "weights": Path(weights).name,
            "test_seeds": [seed_base, seed_base + n_images - 1],
            "images": n_images,
            "imgsz": imgsz,
            "box_map50": round(float(box.map50), 4),
            "box_map50_95": round(float(box.map), 4),
            "box_ap50_per_class": {CLASSES[int(c)]: round(float(ap), 4) for c, ap in zip(box.ap_class_index, box.ap50)},
        }
        if getattr(metrics, "seg", None) is not None and model.task == "segment":
            report["mask_map50"] = round(float(metrics.seg.map50), 4)
            report["mask_map50_95"] = round(float(metrics.seg.map), 4)
        report["speed_ms_per_image"] = {k: round(float(v), 1) for k, v in metrics.speed.items()}
        if cross_check:
            coco = coco_map(model, root / "images" / "test", root / "coco" / "test.json", imgsz)
            report["pycocotools_box_map50"] = round(coco["map50"], 4)
            report["pycocotools_box_map50_95"] = round(coco["map50_95"], 4)
            if model.task == "segment":
                segm = coco_map(model, root / "images" / "test", root / "coco" / "test.json", imgsz, iou_type="segm")
                report["pycocotools_mask_map50"] = round(segm["map50"], 4)
                report["pycocotools_mask_map50_95"] = round(segm["map50_95"], 4)
    return report


def save_report(report: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
