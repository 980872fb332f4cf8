"""The `efsora` command: clear one-line errors, never a traceback."""

import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "efsora_helpers.cli", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_subcommands():
    out = run("--help").stdout
    for sub in ("env", "assets", "questions", "book"):
        assert sub in out


def test_missing_official_asset_is_a_one_line_error():
    result = run("assets", "fetch", "yolov8n-coco")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("efsora: error:") and "--download" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_unknown_asset_is_a_one_line_error():
    result = run("assets", "fetch", "no-such-asset")
    assert result.returncode == 2 and "efsora assets list" in result.stderr


def test_assets_list_and_questions_check():
    listing = run("assets", "list")
    assert listing.returncode == 0 and "smollm2-135m-instruct-q4" in listing.stdout
    assert run("questions", "render", "--check").returncode == 0


def test_scenes_render_writes_an_image_and_its_ground_truth(tmp_path):
    result = run("scenes", "render", "1234", "-o", str(tmp_path / "scene.png"))
    assert result.returncode == 0, result.stderr
    truth = __import__("json").loads((tmp_path / "scene.json").read_text())
    assert truth["seed"] == 1234 and (tmp_path / "scene.png").stat().st_size > 10_000


def test_scenes_render_bad_output_is_a_one_line_error(tmp_path):
    for target in (tmp_path / "scene.gif", tmp_path / "missing" / "scene.jpg"):
        result = run("scenes", "render", "1", "-o", str(target))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.startswith("efsora: error:")
