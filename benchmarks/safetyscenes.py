"""Benchmark: SafetyScenes generation speed, and the default models' training and inference time.

Prints figures; asserts nothing about speed (speed goals live here, not in timed tests).
Run: .venv/bin/python benchmarks/safetyscenes.py [--images 40]
"""

import argparse
import json
import os
import platform
import time

import efsora_helpers as eh
from efsora_helpers.paths import repo_root
from efsora_helpers.safetyscenes import render_scene
from efsora_helpers.safetyscenes.dataset import encode_jpeg


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    eh.setup(quiet=True)
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'default')}")

    start = time.perf_counter()
    scenes = [render_scene(700_000 + i) for i in range(args.images)]
    render_s = time.perf_counter() - start
    start = time.perf_counter()
    for i, scene in enumerate(scenes):
        encode_jpeg(scene.image, 700_000 + i)
    encode_s = time.perf_counter() - start
    print(f"generation: {args.images / render_s:.1f} scenes/s rendered, "
          f"{args.images / (render_s + encode_s):.1f} images/s with JPEG encoding (640x480)")

    models = repo_root() / "data" / "models"
    for record_path in sorted(models.glob("*.train.json")):
        record = json.loads(record_path.read_text())
        a = record["arguments"]
        print(f"training {record['weights']}: {record['wall_time_s'] / 60:.1f} min for {a['epochs']} epochs "
              f"at {a['imgsz']} px on {record['machine']}")
    from ultralytics import YOLO

    for weights in sorted(models.glob("*.pt")):
        model = YOLO(str(weights))
        image = scenes[0].image
        model.predict(image, imgsz=416, verbose=False)  # warm-up
        start = time.perf_counter()
        for scene in scenes[:20]:
            model.predict(scene.image, imgsz=416, verbose=False)
        per_image = (time.perf_counter() - start) / min(20, len(scenes))
        print(f"inference {weights.name}: {per_image * 1000:.0f} ms/image ({1 / per_image:.1f} images/s) at 416 px, CPU")


if __name__ == "__main__":
    main()
