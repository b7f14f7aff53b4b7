"""The public Python API: `list_models`, `create_model`, `load_model`, `build_model` and the `Model` wrapper.

    liif.list_models()                                  # the presets: 'edsr_baseline_liif', 'rdn_liif' ...
    model = liif.create_model("rdn_liif")               # fresh weights (seeded, the same on both frameworks)
    model = liif.create_model("edsr_baseline_liif", pretrained_path="ckpt.pth", framework="jittor")
    model = liif.load_model("ckpt.pth", framework="torch", device="cpu")   # whatever model the file holds
    model.net                                           # the network itself: a torch.nn.Module (jittor.Module)
    pred = model.query(inp, coord, cell, bsize=30000)   # the original batched_predict
    sr = model.upscale(image, size=(H, W))              # uint8 in, uint8 out, any size (tiled)
    sr = model.upscale(image, size=(H, W), max_memory="2GB")   # within a memory budget
    fast = liif.load_model("ckpt.pth", device="cuda", precision="bf16", channels_last=True, compile=True)

Everything crossing this API is NumPy; the framework stays inside.
"""
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from liif import backends
from liif.backends.contract import Backend
from liif.config import FrameworkConfig, InferConfig, parse_size
from liif.models import checkpoint, presets, registry
from liif.errors import BadInput, ConfigError, UnknownName
from liif.models.init import initial_state
from liif.inference.memory import check_fits
from liif.inference.tiled import Encoding, MaxMemory, Progress

PathLike = Union[str, "os.PathLike[str]"]


class Model:
    """A built network plus its backend, device, spec and the precision it predicts in.

    Args:
        net: the network, a `backend.Module` (torch.nn.Module, jittor.Module), on `device`.
        backend: the backend module that built it (`liif.backends.get`).
        spec: the original `{name, args}` of the model.
        device: where `net` is ('cpu', 'cuda' ...).
        precision: 'fp32', or 'bf16' (bfloat16 autocast, PyTorch only).
    """

    net: Any
    backend: Backend
    spec: Dict[str, Any]
    device: str
    precision: str

    def __init__(self, net: Any, backend: Backend, spec: Dict[str, Any], device: str, precision: str = "fp32") -> None:
        backend.autocast(precision, device)  # an unsupported precision fails here, not at the first query
        self.net, self.backend, self.spec, self.device, self.precision = net, backend, spec, device, precision

    def query(self, inp: npt.ArrayLike, coord: npt.ArrayLike, cell: npt.ArrayLike, bsize: int = 30000,
              max_memory: MaxMemory = "auto", tile: Optional[int] = None) -> npt.NDArray[np.float32]:
        """Predict RGB at any coordinates, like the original `batched_predict`, on any input size.

        Each image is encoded and decoded in tiles that fit `max_memory` (liif/inference/tiled.py),
        one tile when it fits whole, with the output of the untiled computation.

        Args:
            inp: (B,3,h,w) input images, normalised to [-1, 1].
            coord: (B,Q,2) query coordinates, (row, col) in [-1, 1].
            cell: (B,Q,2) the query cells' sizes in the same units.
            bsize: queries per decoder call.
            max_memory: bytes, a size such as "2GB", or "auto" (half the free memory).
            tile: force square tiles of that many input pixels a side (tests, benchmarks).

        Returns:
            (B,Q,3) float32 in the normalised space.
        """
        bsize = check_bsize(bsize)  # a bsize <= 0 would decode nothing and return the uninitialised buffer
        inp, coord, cell = (np.asarray(a, dtype=np.float32) for a in (inp, coord, cell))
        out = np.empty(coord.shape[:2] + (3,), np.float32)
        for b in range(inp.shape[0]):
            encoding = Encoding.of_array(self, inp[b], max_memory=max_memory, bsize=bsize, tile=tile)
            out[b] = encoding.query(coord[b], cell[b])
        return out

    def upscale(self, image: npt.ArrayLike, size: Sequence[int], bsize: int = 30000, max_memory: MaxMemory = "auto",
                tile: Optional[int] = None, progress: Progress = True) -> npt.NDArray[np.uint8]:
        """Upscale a uint8 image to any size, in tiles that fit `max_memory` (see `query`).

        The tiles are written into the uint8 output in place, chunk by chunk (coordinates are made
        per chunk); the output's own size is checked against the free memory before any work starts.

        Args:
            image: uint8, HxW grey, HxWx3 RGB or HxWx4 RGBA (alpha is dropped).
            size: the output's (height, width).
            bsize, max_memory, tile: as `query`.
            progress: a bar over the tiles; a function is also called as `progress(done, total)`
                after each chunk, with the output pixels done so far.

        Returns:
            (height, width, 3) uint8 RGB.
        """
        image = to_rgb(np.asarray(image))
        height, width = parse_size(size)
        bsize = check_bsize(bsize)
        check_fits(height * width * 3, f"a {height}x{width} output image", advice="ask for a smaller size")
        return self.encode(image, max_memory=max_memory, bsize=bsize, tile=tile,
                           progress=progress).render((height, width))

    def encode(self, image: npt.ArrayLike, max_memory: MaxMemory = "auto", bsize: int = 30000,
               tile: Optional[int] = None, cache: bool = False, progress: Progress = True) -> Encoding:
        """A uint8 image prepared for decoding: tiles are encoded when first needed.

        Args:
            image: as `upscale` takes it.
            max_memory, bsize, tile, progress: as `upscale`.
            cache: keep every tile's features for later queries (a viewer: encode once per image,
                query any viewport); `Encoding.nbytes` says how much that holds.

        Returns:
            A `liif.inference.tiled.Encoding`, whose `query(coord, cell)` predicts at any
            coordinates and `render(size)` upscales.
        """
        return Encoding.of_image(self, to_rgb(np.asarray(image)), max_memory=max_memory, bsize=bsize, tile=tile,
                                 cache=cache, progress=progress)

    def _anchor(self) -> Any:
        """Any tensor on the model's device, for `backend.tensor(..., like=)`."""
        return next(iter(self.net.parameters()))


def build_model(spec: Dict[str, Any], framework: str = "torch", device: str = "auto", precision: str = "fp32",
                channels_last: bool = False, compile: bool = False) -> Model:
    """The model `spec` with the framework's default initial weights.

    Args:
        spec: the original `{name, args}` of a registered model.
        framework: 'torch' or 'jittor'.
        device: 'auto' (a GPU if there is one), 'cpu', 'cuda' ...
        precision: 'fp32', or 'bf16' (inference under bfloat16 autocast: faster on a GPU, costs
            PSNR, see docs/benchmarks.md).
        channels_last, compile: the backend's `optimize` (PyTorch). With the defaults, the plain
            float32 model.

    Returns:
        The `Model`.
    """
    backend = backends.get(framework)
    dev = backend.device(device)
    return _on_device(registry.make(spec, backend), backend, spec, dev, precision, channels_last, compile)


def _on_device(net: Any, backend: Backend, spec: Dict[str, Any], dev: str, precision: str, channels_last: bool,
               compile: bool) -> Model:
    net = backend.to_device(net, dev)
    return Model(backend.optimize(net, channels_last=channels_last, compile=compile), backend, spec, dev, precision)


def list_models() -> List[str]:
    """The names `create_model` knows.

    Returns:
        The paper's models (`liif/models/presets.py`), sorted: also the options of
        `python run.py model=<name>`.
    """
    return presets.names()


def create_model(name: str, pretrained_path: Optional[PathLike] = None, framework: str = "torch",
                 device: str = "auto", seed: int = 0, **overrides: Any) -> Model:
    """A preset model, with fresh weights or a checkpoint's.

    Args:
        name: a preset (see `list_models`).
        pretrained_path: a checkpoint holding this very model (checked); None: fresh weights,
            drawn from `seed` as training draws them (the same numbers on both frameworks).
        framework, device: as `build_model`.
        seed: the fresh weights' seed.
        **overrides: model arguments replacing the preset's, dicts merged, e.g.
            `local_ensemble=False` or `encoder_spec={"args": {"scale": 3}}`.

    Returns:
        The `Model` (float32); `model.net` is the network itself.
    """
    if name not in presets.PRESETS:
        raise UnknownName(f"unknown model '{name}'; choose one of: {', '.join(list_models())}")
    spec = presets.spec(name)
    presets.merge(spec["args"], overrides)
    problem = registry.spec_problem(spec)
    if problem:
        raise BadInput(problem)
    backend = backends.get(framework)
    dev = backend.device(device)
    if pretrained_path is None:
        net = registry.make(spec, backend)
        backend.load_state_dict_numpy(net, initial_state(backend.state_dict_numpy(net), seed))
    else:
        net = checkpoint.load(pretrained_path, backend, expected=spec, expected_label=f"'{name}'").net
    return _on_device(net, backend, spec, dev, "fp32", False, False)


def load_model(path: PathLike, framework: str = "torch", device: str = "auto", precision: str = "fp32",
               channels_last: bool = False, compile: bool = False) -> Model:
    """Whatever model a checkpoint holds, with its weights.

    Args:
        path: a checkpoint written by the original code or by this one.
        framework, device, precision, channels_last, compile: as `build_model`.

    Returns:
        The `Model`.

    Raises:
        CheckpointError: the file is not a usable checkpoint (named in the message).
    """
    return load_model_and_checkpoint(path, framework, device, precision, channels_last, compile)[0]


def load_model_and_checkpoint(path: PathLike, framework: str = "torch", device: str = "auto", precision: str = "fp32",
                              channels_last: bool = False, compile: bool = False) -> Tuple[Model, Dict[str, Any]]:
    """`load_model`, and the checkpoint's contents (its epoch, its training state: the viewer's labels)."""
    backend = backends.get(framework)
    dev = backend.device(device)
    loaded = checkpoint.load(path, backend)
    return _on_device(loaded.net, backend, loaded.spec, dev, precision, channels_last, compile), loaded.ckpt


def infer_options(framework_cfg: FrameworkConfig) -> Dict[str, Any]:
    """`load_model`'s options from a framework config (conf/framework/*.yaml), for test and demo."""
    return {"precision": framework_cfg.infer_precision, "channels_last": framework_cfg.channels_last,
            "compile": framework_cfg.compile}


def tiling_options(infer_cfg: Optional[InferConfig]) -> Dict[str, Any]:
    """`upscale`/`query`'s tiling options from the config's `infer` node (None: the defaults), for test and demo."""
    if infer_cfg is None:
        return {}
    return {"max_memory": infer_cfg.max_memory, "tile": infer_cfg.tile}


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 (H,W), (H,W,1), (H,W,3) or (H,W,4) -> (H,W,3); alpha is dropped as Pillow's convert('RGB') does."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise BadInput(f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise BadInput(f"expected a uint8 image, got {image.dtype}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def check_bsize(bsize: Any) -> int:
    """The number of queries per decoder call, a positive integer (eval_bsize= on the command line)."""
    if isinstance(bsize, bool) or not isinstance(bsize, (int, np.integer)) or bsize <= 0:
        raise ConfigError(f"the query batch (eval_bsize=) must be a positive integer, got {bsize!r}")
    return int(bsize)
