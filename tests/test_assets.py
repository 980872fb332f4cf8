"""The asset registry: verified loads, clear offline errors, opt-in downloads pinned on first use."""

import threading
from functools import partial
from http.server import HTTPServer, SimpleHTTPRequestHandler

import pytest

from efsora_helpers import assets as A


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("EFSORA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EFSORA_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("EFSORA_ALLOW_DOWNLOAD", raising=False)
    yield tmp_path
    for name in [n for n in A._REGISTRY if n.startswith("test-")]:
        del A._REGISTRY[name]


def _download_asset(name, url, sha=None, size=None):
    return A.register(
        A.Asset(name=name, kind="download", description="test file", chapters=(0,), license="CC0",
                url=url, path="file.bin", sha256=sha, size=size),
        replace=True,
    )


def test_every_offline_asset_is_present_and_verified():
    local = [a for a in A.registered() if a.kind != "download"]
    assert local, "the registry is empty"
    for a in local:
        assert A.get_asset(a.name).exists()


def test_registry_rejects_a_file_whose_sha256_differs(home, monkeypatch):
    good = b"the registered bytes"
    sha, size = A.hashlib.sha256(good).hexdigest(), len(good)
    _download_asset("test-weights", "https://example.invalid/file.bin", sha, size)
    weights = home / "weights"
    weights.mkdir()
    monkeypatch.setenv("EFSORA_WEIGHTS_DIR", str(weights))
    (weights / "file.bin").write_bytes(good)
    assert A.get_asset("test-weights").read_bytes() == good
    (weights / "file.bin").write_bytes(b"the registered byteZ")  # same size, one byte off
    with pytest.raises(A.AssetChecksumError, match="not the registered file"):
        A.get_asset("test-weights")
    assert A.status(A.asset("test-weights"), verify=True) == "corrupt"


def test_offline_error_names_the_fixing_command(home):
    _download_asset("test-official", "https://example.invalid/file.bin")
    with pytest.raises(A.AssetMissingError) as err:
        A.get_asset("test-official")
    message = str(err.value)
    assert "No download was attempted" in message
    assert "efsora assets fetch test-official --download" in message


def test_missing_package_asset_names_the_pip_command(home):
    A.register(A.Asset(name="test-pkg", kind="package", description="x", chapters=(0,), license="MIT",
                       package="no-such-dist-efsora", package_version="1.2.3", path="x/y.bin",
                       sha256="0" * 64, size=1))
    with pytest.raises(A.AssetMissingError, match=r"pip install --no-deps no-such-dist-efsora==1\.2\.3"):
        A.get_asset("test-pkg")


def test_registration_requires_hash_and_size_except_for_downloads():
    with pytest.raises(ValueError, match="sha256 and size"):
        A.register(A.Asset(name="test-bad", kind="shipped", description="x", chapters=(0,),
                           license="MIT", path="data/x.bin"))


def test_folder_hash_changes_when_any_file_changes(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("two")
    before = A.sha256_of(tmp_path)
    (tmp_path / "sub" / "b.txt").write_text("twO")
    after = A.sha256_of(tmp_path)
    assert before[0] != after[0] and before[1] == after[1] == 6


def test_opt_in_download_from_a_loopback_server_is_pinned_on_first_use(home, monkeypatch):
    served = home / "served"
    served.mkdir()
    (served / "file.bin").write_bytes(b"official weights v1")
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _download_asset("test-tofu", f"http://127.0.0.1:{server.server_address[1]}/file.bin")
        with pytest.raises(A.AssetMissingError):
            A.get_asset("test-tofu")  # no opt-in, no download
        path = A.get_asset("test-tofu", download=True)
        assert path.read_bytes() == b"official weights v1"
        path.write_bytes(b"official weights v2")  # replaced behind the registry's back
        with pytest.raises(A.AssetChecksumError):
            A.get_asset("test-tofu")
    finally:
        server.shutdown()
