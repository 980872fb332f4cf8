"""Benchmark: the perception engine's speed per stage and end to end, its overhead over calling the
libraries directly, and detection quality per class on the SafetyScenes test split.

Prints figures; asserts nothing about speed (speed goals live here, not in timed tests).
Goal: engine time / direct library time <= 1.05 (the schema, rules and timers cost almost nothing).
Run: .venv/bin/python benchmarks/perception.py [--images 20] [--rounds 3]
"""

import argparse
import json
import os
import platform
import time

import cv2
import numpy as np

import efsora_helpers as eh
from efsora_helpers.paths import repo_root
from efsora_helpers.perception.engine import PerceptionEngine


def _median_seconds(fn, images, rounds):
    """Median over rounds of the time to run ``fn`` on every image (rounds absorb noise from shared cores)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for image in images:
            fn(image)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    eh.setup(chapter="perception", quiet=True)
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}")

    scenes = repo_root() / "data" / "safetyscenes"
    paths = sorted((scenes / "images" / "test").glob("*.jpg"))[: args.images]
    images = [cv2.imread(str(p)) for p in paths]
    engine = PerceptionEngine()
    loads = engine.warm_up()
    print(f"model load (s): {json.dumps(loads)}")
    det, seg, ocr = engine.detector, engine.segmenter, engine.ocr
    print(f"{len(images)} images 640x480; detector/segmenter inference size {det.imgsz} px; OCR {ocr.name} on the whole image")

    # Each library called directly, exactly as the engine calls it, without the engine around it.
    direct = {
        "detection": lambda im: det.model.predict(im, imgsz=det.imgsz, conf=0.25, iou=0.7, device="cpu", verbose=False),
        "segmentation": lambda im: seg.model.predict(im, imgsz=seg.imgsz, conf=0.25, iou=0.7, device="cpu", verbose=False),
        "ocr": lambda im: ocr.reader.readtext(im),
    }
    per_stage = {stage: _median_seconds(fn, images, args.rounds) for stage, fn in direct.items()}
    for stage, seconds in per_stage.items():
        print(f"  {stage:<13} {len(images) / seconds:6.2f} images/s  ({1000 * seconds / len(images):7.1f} ms/image)")
    engine_total = _median_seconds(engine.perceive, images, args.rounds)
    print(f"  {'end to end':<13} {len(images) / engine_total:6.2f} images/s  ({1000 * engine_total / len(images):7.1f} ms/image)")

    # Overhead: the engine and the direct calls alternate image by image, so load on shared cores
    # hits both sides alike; the ratio is the median over rounds.
    no_ocr = engine.derive(ocr=False)
    for label, eng, stages in (("with OCR", engine, ("detection", "segmentation", "ocr")),
                               ("without OCR", no_ocr, ("detection", "segmentation"))):
        ratios = []
        for _ in range(args.rounds):
            direct_s = engine_s = 0.0
            for image in images:
                start = time.perf_counter()
                for stage in stages:
                    direct[stage](image)
                direct_s += time.perf_counter() - start
                start = time.perf_counter()
                eng.perceive(image)
                engine_s += time.perf_counter() - start
            ratios.append(engine_s / direct_s)
        print(f"engine overhead {label}: engine / direct = {np.median(ratios):.3f} "
              f"(rounds: {', '.join(f'{r:.3f}' for r in ratios)}; goal <= 1.05)")

    _quality(det)


def _quality(det) -> None:
    """Per-class AP on the shipped test split: our metric and pycocotools side by side."""
    from efsora_helpers.perception import metrics

    root = repo_root() / "data" / "safetyscenes"
    names = [det.names[i] for i in sorted(det.names)]
    preds, truths, sizes = [], [], []
    for gt_path in sorted((root / "ground_truth" / "test").glob("*.json")):
        gt = json.loads(gt_path.read_text())
        r = det.model.predict(str(root / gt["image_path"]), imgsz=det.imgsz, conf=0.001, iou=0.7, max_det=100,
                              device="cpu", verbose=False)[0]
        preds.append({"boxes": r.boxes.xyxy.numpy(), "scores": r.boxes.conf.numpy(),
                      "labels": r.boxes.cls.numpy().astype(int)})
        truths.append({"boxes": np.array([o["bbox"] for o in gt["objects"]], np.float32).reshape(-1, 4),
                       "labels": np.array([names.index(o["label"]) for o in gt["objects"]], int)})
        sizes.append((gt["image_info"]["height"], gt["image_info"]["width"]))
    report = metrics.evaluate_detections(preds, truths, names)
    reference = metrics.coco_reference(preds, truths, names, sizes)
    print(f"detection quality, SafetyScenes test split ({len(truths)} images, conf 0.001):")
    print(report.table().round(3).to_string())
    print(f"mAP50 {report.map50:.3f} (pycocotools {reference['map50']:.3f}); "
          f"mAP50-95 {report.map50_95:.3f} (pycocotools {reference['map50_95']:.3f})")


if __name__ == "__main__":
    main()
