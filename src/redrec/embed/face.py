"""Face encoder: dlib's ResNet face descriptor (128-d), working offline.

The pipeline is the one dlib's authors published with the model: find the face with
dlib's HOG frontal-face detector, fit the 5-point landmark model inside that box, let
dlib align and crop a 150x150 chip from the landmarks, and run the ResNet on it. Two
choices matter for small, centred face crops such as the ORL faces (92x112 grey):

* when the detector finds no face, the whole image is used as the face box (the image
  *is* the face), instead of refusing the image;
* grey images are fed as RGB (the channel copied three times): the network was
  trained on colour images and expects three channels.

The model files ship inside the ``face-recognition-models`` wheel. That package's
``__init__`` imports ``pkg_resources``, which setuptools 81+ no longer has, so its
folder is located with ``importlib.util.find_spec`` and never imported.

``dlib`` is imported on first use, so ``import redrec`` stays fast without it.
"""

from __future__ import annotations

import importlib.util
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from redrec.exceptions import ConfigError, InvalidInput, NotFoundError

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["FaceEncoder", "FaceImage", "EncodedFace", "models_dir"]

# What ``encode`` accepts for one image: a file path, the file's bytes, a PIL image, or
# an array (HxW grey or HxWx3 RGB, uint8).
FaceImage = Union[str, Path, bytes, "PILImage.Image", np.ndarray]

_SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"
_RESNET_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
# Larger photos are shrunk before detection: HOG time grows with the pixel count and a
# face in a photo this size is still far above the detector's 80x80 minimum.
_MAX_SIDE = 1600
_EXTRA_HINT = "install the faces extra: pip install 'redrec[faces]'"


def models_dir() -> Path:
    """The folder of dlib model files inside the ``face-recognition-models`` wheel."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"face-recognition-models is not installed; {_EXTRA_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    for name in (_SHAPE_MODEL, _RESNET_MODEL):
        if not (folder / name).is_file():
            raise ConfigError(f"face-recognition-models lacks {name} under {folder}")
    return folder


@dataclass(frozen=True)
class EncodedFace:
    """One image's descriptor and the face box it came from.

    ``detected`` is False when the detector found no face and the whole image was used.
    ``box`` is (left, top, right, bottom) in the image's pixels.
    """

    vector: np.ndarray
    box: tuple[int, int, int, int]
    detected: bool


class FaceEncoder:
    """dlib ResNet face descriptors (128-d float32), compared with cosine distance.

    ``upsample``: how many times the detector doubles the image before looking; 0 suits
    images where the face fills the frame (ORL), 1 finds faces down to ~40 px in photos.
    ``jitter``: dlib's test-time augmentation (n random crops averaged); 0 is the
    published setting and n costs n+1 network passes.
    ``padding``: margin dlib keeps around the aligned face chip (its default, 0.25).

    The models load on the first ``encode``. One encoder may be shared by threads:
    calls into dlib are serialised by a lock (dlib's objects are not thread-safe and
    hold the GIL anyway).
    """

    name = "dlib-resnet-v1"
    dim = 128

    def __init__(self, *, upsample: int = 0, jitter: int = 0, padding: float = 0.25) -> None:
        if isinstance(upsample, bool) or not isinstance(upsample, int) or not 0 <= upsample <= 3:
            raise InvalidInput(f"upsample must be an integer from 0 to 3, got {upsample!r}")
        if isinstance(jitter, bool) or not isinstance(jitter, int) or not 0 <= jitter <= 100:
            raise InvalidInput(f"jitter must be an integer from 0 to 100, got {jitter!r}")
        if not 0.0 <= float(padding) <= 1.0:
            raise InvalidInput(f"padding must be between 0 and 1, got {padding!r}")
        self.upsample = upsample
        self.jitter = jitter
        self.padding = float(padding)
        self._lock = threading.Lock()
        self._models: tuple[Any, Any, Any, Any] | None = None

    def __repr__(self) -> str:
        return f"FaceEncoder(upsample={self.upsample}, jitter={self.jitter})"

    def _load(self) -> tuple[Any, Any, Any, Any]:
        if self._models is None:
            try:
                import dlib
            except ImportError as exc:
                raise ConfigError(f"dlib is not installed; {_EXTRA_HINT}") from exc
            folder = models_dir()
            self._models = (
                dlib,
                dlib.get_frontal_face_detector(),
                dlib.shape_predictor(str(folder / _SHAPE_MODEL)),
                dlib.face_recognition_model_v1(str(folder / _RESNET_MODEL)),
            )
        return self._models

    def encode(self, images: Sequence[FaceImage], *, progress: bool = False) -> np.ndarray:
        """One descriptor per image, as an (n, 128) float32 array."""
        faces = self.encode_faces(images, progress=progress)
        if not faces:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([f.vector for f in faces])

    def encode_one(self, image: FaceImage) -> EncodedFace:
        return self.encode_faces([image])[0]

    def encode_faces(
        self, images: Sequence[FaceImage], *, progress: bool = False
    ) -> list[EncodedFace]:
        """Descriptors with their face boxes. Every image is read before any is
        encoded, so a bad file fails fast instead of after minutes of work."""
        if isinstance(images, str | Path | bytes | np.ndarray) or not isinstance(images, Sequence):
            images = [images]  # type: ignore[list-item]
        arrays = [load_rgb(image) for image in images]
        from tqdm import tqdm

        out = []
        with self._lock:
            dlib, detector, shaper, resnet = self._load()
            for rgb in tqdm(arrays, desc="encode faces", unit="face", disable=not progress):
                out.append(self._encode_array(dlib, detector, shaper, resnet, rgb))
        return out

    def _encode_array(
        self, dlib: Any, detector: Any, shaper: Any, resnet: Any, rgb: np.ndarray
    ) -> EncodedFace:
        height, width = rgb.shape[:2]
        found = detector(rgb, self.upsample)
        if len(found):
            rect = max(found, key=lambda r: r.area())  # the main subject: the largest face
        else:
            rect = dlib.rectangle(0, 0, width - 1, height - 1)
        shape = shaper(rgb, rect)
        vector = resnet.compute_face_descriptor(rgb, shape, self.jitter, self.padding)
        return EncodedFace(
            vector=np.asarray(vector, dtype=np.float32),
            box=(int(rect.left()), int(rect.top()), int(rect.right()), int(rect.bottom())),
            detected=bool(len(found)),
        )


def load_rgb(source: FaceImage) -> np.ndarray:
    """An image as a C-contiguous HxWx3 uint8 RGB array (grey copied to three channels).

    A private loader: ``redrec.embed.image`` did not exist when this was written. Raises
    NotFoundError for a missing file, InvalidInput for anything that is not a readable
    image (including truncated or corrupt files).
    """
    if isinstance(source, np.ndarray):
        return _array_rgb(source)
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise ConfigError(f"pillow is not installed; {_EXTRA_HINT}") from exc
    if isinstance(source, Image.Image):
        return _pil_rgb(source, "image")
    if isinstance(source, bytes | bytearray):
        if not source:
            raise InvalidInput("empty image data")
        return _open(io.BytesIO(source), "image data", Image, UnidentifiedImageError)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise NotFoundError(f"no such file: {path}")
        if not path.is_file():
            raise InvalidInput(f"{path} is not a file")
        with path.open("rb") as stream:
            return _open(stream, str(path), Image, UnidentifiedImageError)
    raise InvalidInput(
        f"an image must be a path, bytes, a PIL image or an array, got {type(source).__name__}"
    )


def _open(stream: Any, what: str, image_mod: Any, unidentified: type[Exception]) -> np.ndarray:
    try:
        with image_mod.open(stream) as img:
            img.load()  # decode now: a truncated file fails here, not later
            return _pil_rgb(img, what)
    except unidentified:
        raise InvalidInput(f"{what} is not an image (or not a format Pillow reads)") from None
    except (OSError, ValueError, SyntaxError, image_mod.DecompressionBombError) as exc:
        raise InvalidInput(f"cannot read {what}: corrupt or truncated image ({exc})") from None


def _pil_rgb(img: PILImage.Image, what: str) -> np.ndarray:
    if img.width < 8 or img.height < 8:
        raise InvalidInput(f"{what} is too small to hold a face ({img.width}x{img.height})")
    if max(img.size) > _MAX_SIDE:
        img = img.copy()
        img.thumbnail((_MAX_SIDE, _MAX_SIDE))
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def _array_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InvalidInput(f"an image array must be HxW, HxWx3 or HxWx4, got {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.size and (not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 255):
            raise InvalidInput("an image array must hold values from 0 to 255")
        arr = arr.astype(np.uint8)
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise InvalidInput(f"image is too small to hold a face ({arr.shape[1]}x{arr.shape[0]})")
    return np.ascontiguousarray(arr[:, :, :3])
