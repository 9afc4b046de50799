"""ImageEncoder and load_image on real images: ORL faces, scikit-image samples, a local
HTTP server."""

from __future__ import annotations

import functools
import http.server
import io
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from redrec.embed.image import ImageEncoder, load_image
from redrec.exceptions import ConfigError, InvalidInput, NotFoundError

ORL = Path("/work/shared/data/ru402/orl")
pytestmark = pytest.mark.skipif(not ORL.is_dir(), reason="ORL faces not available")


def face(person: int, shot: int) -> Path:
    return ORL / f"s{person}" / f"{shot}.bmp"


@pytest.fixture(scope="module")
def torch_enc() -> ImageEncoder:
    return ImageEncoder(batch_size=8)


@pytest.fixture(scope="module")
def onnx_enc(tmp_path_factory: pytest.TempPathFactory) -> ImageEncoder:
    return ImageEncoder(backend="onnx", cache_dir=tmp_path_factory.mktemp("onnx-models"))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a real PNG, a text file named .jpg and a truncated JPEG."""
    root = tmp_path_factory.mktemp("images")
    Image.fromarray(skimage.data.coffee()).save(root / "coffee.png")
    (root / "notes.jpg").write_text("this is not an image\n")
    buf = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(buf, format="JPEG")
    (root / "broken.jpg").write_bytes(buf.getvalue()[:300])
    return root


@pytest.fixture(scope="module")
def server(files: Path) -> Iterator[str]:
    """An http.server on 127.0.0.1 serving ``files``; yields its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(files))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_encoder_contract(torch_enc: ImageEncoder) -> None:
    assert torch_enc.name == "efficientnet-lite0"
    assert torch_enc.dim == 1280
    vecs = torch_enc.encode([face(1, 1), face(2, 1), Image.fromarray(skimage.data.astronaut())])
    assert vecs.shape == (3, 1280) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert torch_enc.encode([]).shape == (0, 1280)


def test_faces_of_one_person_are_closer_than_faces_of_others(torch_enc: ImageEncoder) -> None:
    people = range(1, 7)
    vecs = torch_enc.encode([face(p, s) for p in people for s in (1, 2, 3, 4)])  # 3 batches
    labels = np.repeat(np.arange(len(people)), 4)
    sims = vecs @ vecs.T
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    assert sims[same & off_diagonal].mean() > sims[~same].mean() + 0.05
    # Nearest other face is of the same person for most faces.
    np.fill_diagonal(sims, -1)
    assert (labels[sims.argmax(axis=1)] == labels).mean() >= 0.75


def test_features_follow_content_not_pixels(torch_enc: ImageEncoder) -> None:
    cat = Image.fromarray(skimage.data.chelsea())
    mirrored = cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    coffee = Image.fromarray(skimage.data.coffee())
    a, b, c = torch_enc.encode([cat, mirrored, coffee])
    assert a @ b > a @ c + 0.2


def test_onnx_backend_gives_the_same_vectors(
    torch_enc: ImageEncoder, onnx_enc: ImageEncoder
) -> None:
    assert onnx_enc.name == "efficientnet-lite0+onnx"
    images = [face(3, 1), face(4, 2), Image.fromarray(skimage.data.rocket())]
    got, want = onnx_enc.encode(images), torch_enc.encode(images)
    assert got.dtype == np.float32
    assert (got * want).sum(axis=1).min() > 0.9999


def test_every_kind_of_source_gives_the_same_vector(
    onnx_enc: ImageEncoder, files: Path, server: str
) -> None:
    path = files / "coffee.png"
    sources = [
        path,
        str(path),
        path.read_bytes(),
        Image.open(path),
        Image.open(path).convert("RGBA"),  # opaque alpha: same pixels
        f"{server}/coffee.png",
    ]
    vecs = onnx_enc.encode(sources)
    assert (vecs @ vecs[0]).min() > 0.99999


def test_grayscale_becomes_rgb_and_transparency_becomes_white() -> None:
    gray = load_image(face(1, 1))
    assert gray.mode == "RGB" and gray.size == (92, 112)
    r, g, b = (np.asarray(ch) for ch in gray.split())
    assert (r == g).all() and (g == b).all()
    clear = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert load_image(clear).getpixel((0, 0)) == (255, 255, 255)


def test_missing_file_is_not_found_naming_it(torch_enc: ImageEncoder, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jpg"
    with pytest.raises(NotFoundError, match="nope.jpg"):
        torch_enc.encode([face(1, 1), missing])


def test_text_file_named_jpg_is_invalid_naming_it(files: Path) -> None:
    with pytest.raises(InvalidInput, match="notes.jpg"):
        load_image(files / "notes.jpg")


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n garbage", b"GIF89a\x00\x01"])
def test_corrupt_bytes_are_invalid(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="not an image"):
        load_image(data)


def test_truncated_jpeg_is_invalid(files: Path) -> None:
    with pytest.raises(InvalidInput, match="broken.jpg"):
        load_image(files / "broken.jpg")


def test_url_that_is_not_an_image_is_invalid(server: str) -> None:
    with pytest.raises(InvalidInput, match="notes.jpg"):
        load_image(f"{server}/notes.jpg")


def test_url_that_fails_is_invalid_naming_it(server: str) -> None:
    with pytest.raises(InvalidInput, match="missing.png.*404"):
        load_image(f"{server}/missing.png")
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.png"
    with pytest.raises(InvalidInput, match=f"127.0.0.1:{port}"):
        load_image(url, timeout=2)


def test_oversized_download_is_invalid(server: str) -> None:
    with pytest.raises(InvalidInput, match="larger than"):
        load_image(f"{server}/coffee.png", max_bytes=1000)


@pytest.mark.parametrize(
    ("source", "match"),
    [("ftp://example.com/a.png", "only http"), (42, "int"), (Path("/"), "directory")],
)
def test_unusable_sources_are_invalid(source: object, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        load_image(source)  # type: ignore[arg-type]


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown image backend"):
        ImageEncoder(backend="tflite")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="batch_size"):
        ImageEncoder(batch_size=0)
    with pytest.raises(ConfigError, match="threads"):
        ImageEncoder(threads=1)


def test_progress_bar_goes_to_stderr(
    onnx_enc: ImageEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    onnx_enc.encode([face(5, 1), face(5, 2)], progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "2/2" in captured.err
