"""fetch_dataset against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import threading
import zipfile

import numpy as np
import pytest

from trainables.data.fetch import DATASETS, DataFetchError, DatasetSource, RemoteFile, fetch_dataset
from trainables.data.mnist import MNIST, write_idx


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_dir(tmp_path):
    """(folder served, base URL, list of requested paths)."""
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _fake_mnist(folder) -> tuple[RemoteFile, ...]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 5, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 3, dtype=np.uint8),
    }
    files = []
    for name, array in arrays.items():
        write_idx(folder / name, array)
        data = (folder / name).read_bytes()
        files.append(RemoteFile(name, len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()))
    return tuple(files)


def _source(files, unpack="gunzip", folder="mnist", name="mnist"):
    return {name: DatasetSource(name, ("http://unused.invalid/",), files, unpack, folder)}


def test_mnist_download_verify_unpack_and_skip(tmp_path, http_dir):
    served, base, requests = http_dir
    table = _source(_fake_mnist(served))
    root = tmp_path / "data"
    folder = fetch_dataset("mnist", root, base_urls=[base], sources=table)
    assert folder == root / "mnist"
    assert len(requests) == 4
    assert (folder / "train-images-idx3-ubyte").is_file()  # unpacked next to the .gz
    assert len(MNIST(folder, "train")) == 5 and len(MNIST(folder, "test")) == 3
    assert not list(folder.glob("*.part"))
    # Idempotent: present and verified -> nothing downloaded again.
    assert fetch_dataset("mnist", root, base_urls=[base], sources=table) == folder
    assert len(requests) == 4


def test_checksum_mismatch_removes_the_file(tmp_path, http_dir):
    served, base, _ = http_dir
    files = list(_fake_mnist(served))
    files[0] = RemoteFile(files[0].name, files[0].size, "0" * 32)
    root = tmp_path / "data"
    with pytest.raises(DataFetchError) as info:
        fetch_dataset("mnist", root, base_urls=[base], sources=_source(tuple(files)))
    message = str(info.value)
    assert "\n" not in message
    assert "checksum mismatch: md5" in message and "expected 000" in message
    assert info.value.dataset == "mnist" and info.value.url == base + files[0].name
    assert list((root / "mnist").iterdir()) == []  # no partial or bad file left


def test_a_corrupt_present_file_is_downloaded_again(tmp_path, http_dir):
    served, base, requests = http_dir
    table = _source(_fake_mnist(served))
    root = tmp_path / "data"
    fetch_dataset("mnist", root, base_urls=[base], sources=table)
    victim = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    victim.write_bytes(b"garbage")
    fetch_dataset("mnist", root, base_urls=[base], sources=table)
    assert requests[-1] == "/t10k-labels-idx1-ubyte.gz" and len(requests) == 5
    assert victim.read_bytes() == (served / victim.name).read_bytes()


def test_unreachable_host_gives_one_clear_line(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = tmp_path / "data"
    with pytest.raises(DataFetchError) as info:
        fetch_dataset("mnist", root, base_urls=[f"http://127.0.0.1:{port}/"])
    message = str(info.value)
    assert "\n" not in message
    assert f"cannot reach 127.0.0.1:{port}:" in message
    assert f"fetch on a machine with internet and copy {root}" in message
    assert "refused" in message.lower()


def test_http_404_and_unknown_dataset(tmp_path, http_dir):
    _, base, _ = http_dir
    with pytest.raises(DataFetchError, match="HTTP 404"):
        fetch_dataset("mnist", tmp_path, base_urls=[base], sources=_source((RemoteFile("nope.gz"),)))
    with pytest.raises(DataFetchError, match="unknown dataset; valid: cifar10, cifar100, mnist, modelnet10, modelnet40"):
        fetch_dataset("cifar", tmp_path)


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_modelnet_zip_is_unpacked_once(tmp_path, http_dir):
    served, base, requests = http_dir
    off = b"OFF\n4 1 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n"
    (served / "ModelNet10.zip").write_bytes(
        _zip_bytes({"ModelNet10/chair/train/chair_0001.off": off, "ModelNet10/chair/test/chair_0002.off": off})
    )
    table = _source((RemoteFile("ModelNet10.zip"),), "unzip", "ModelNet10", "modelnet10")
    root = tmp_path / "data"
    folder = fetch_dataset("modelnet10", root, base_urls=[base], sources=table)
    assert folder == root / "ModelNet10"
    assert (folder / "chair" / "train" / "chair_0001.off").read_bytes() == off
    fetch_dataset("modelnet10", root, base_urls=[base], sources=table)
    assert len(requests) == 1
    assert sorted(p.name for p in root.iterdir()) == [".ModelNet10.zip.verified", "ModelNet10", "ModelNet10.zip"]


def test_a_corrupt_zip_is_refused(tmp_path, http_dir):
    served, base, _ = http_dir
    good = _zip_bytes({"ModelNet10/a.off": b"OFF\n" * 100})
    (served / "ModelNet10.zip").write_bytes(good[:-30])
    table = _source((RemoteFile("ModelNet10.zip"),), "unzip", "ModelNet10", "modelnet10")
    with pytest.raises(DataFetchError, match="corrupt"):
        fetch_dataset("modelnet10", tmp_path, base_urls=[base], sources=table)
    assert not (tmp_path / "ModelNet10.zip").exists()


def test_the_known_table():
    assert set(DATASETS) == {"mnist", "modelnet10", "modelnet40", "cifar10", "cifar100"}
    assert all(f.md5 and f.size for f in DATASETS["mnist"].files)
    assert all(f.name.endswith(".gz") for f in DATASETS["mnist"].files)
