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
import numpy as np

from liif import backends
from liif.config import parse_size
from liif.models import checkpoint, presets, registry
from liif.errors import BadInput, ConfigError, UnknownName
from liif.models.init import initial_state
from liif.inference.memory import check_fits
from liif.inference.tiled import Encoding


class Model:
    """A built network plus its backend, device, spec (the original `{name, args}`) and the
    precision it predicts in ('fp32', or 'bf16': bfloat16 autocast, PyTorch only)."""

    def __init__(self, net, backend, spec, device, precision="fp32"):
        backend.autocast(precision, device)  # an unsupported precision fails here, not at the first query
        self.net, self.backend, self.spec, self.device, self.precision = net, backend, spec, device, precision

    def query(self, inp, coord, cell, bsize=30000, max_memory="auto", tile=None):
        """Predict at `coord` (B,Q,2) with cells `cell` (B,Q,2) from normalised `inp` (B,3,h,w).

        Returns (B,Q,3) float32 in the normalised space, like the original `batched_predict`, on
        any input size: each image is encoded and decoded in tiles that fit `max_memory` (bytes,
        "2GB", or "auto": half the free memory; liif/inference/tiled.py), one tile when it fits whole, with
        the output of the untiled computation. The decoder runs on chunks of `bsize` queries.
        `tile`: force square tiles of that many input pixels a side (tests, benchmarks).
        """
        bsize = check_bsize(bsize)  # a bsize <= 0 would decode nothing and return the uninitialised buffer
        inp, coord, cell = (np.asarray(a, dtype=np.float32) for a in (inp, coord, cell))
        out = np.empty(coord.shape[:2] + (3,), np.float32)
        for b in range(inp.shape[0]):
            encoding = Encoding.of_array(self, inp[b], max_memory=max_memory, bsize=bsize, tile=tile)
            out[b] = encoding.query(coord[b], cell[b])
        return out

    def upscale(self, image, size, bsize=30000, max_memory="auto", tile=None, progress=True):
        """Upscale a uint8 image (HxW grey, HxWx3 RGB or HxWx4 RGBA) to `size` = (H, W), uint8 RGB out.

        Any input size: tiles that fit `max_memory` (see `query`), written into the uint8 output in
        place, chunk by chunk (coordinates are made per chunk); the output's own size is checked
        against the free memory before any work starts. `progress`: a bar over the tiles, and when
        it is a function, `progress(done, total)` after each chunk with the output pixels done so far.
        """
        image = to_rgb(np.asarray(image))
        height, width = parse_size(size)
        bsize = check_bsize(bsize)
        check_fits(height * width * 3, f"a {height}x{width} output image", advice="ask for a smaller size")
        return self.encode(image, max_memory=max_memory, bsize=bsize, tile=tile,
                           progress=progress).render((height, width))

    def encode(self, image, max_memory="auto", bsize=30000, tile=None, cache=False, progress=True):
        """A uint8 image (as `upscale` takes it) prepared for decoding: a `liif.inference.tiled.Encoding`, whose
        `query(coord, cell)` predicts at any coordinates and `render(size)` upscales. Tiles are
        encoded when first needed; `cache=True` keeps their features for later queries (a viewer:
        encode once per image, query any viewport), `nbytes` says how much that holds."""
        return Encoding.of_image(self, to_rgb(np.asarray(image)), max_memory=max_memory, bsize=bsize, tile=tile,
                                 cache=cache, progress=progress)

    def _anchor(self):
        """Any tensor on the model's device, for `B.tensor(..., like=)`."""
        return next(iter(self.net.parameters()))


def build_model(spec, framework="torch", device="auto", precision="fp32", channels_last=False, compile=False):
    """The model `spec` with fresh weights. precision: 'fp32', or 'bf16' (inference under bfloat16
    autocast: faster on a GPU, costs PSNR, see docs/benchmarks.md); channels_last, compile: the
    backend's `optimize` (PyTorch). All three default to the plain float32 model."""
    B = backends.get(framework)
    dev = B.device(device)
    return _on_device(registry.make(spec, B), B, spec, dev, precision, channels_last, compile)


def _on_device(net, B, spec, dev, precision, channels_last, compile):
    net = B.to_device(net, dev)
    return Model(B.optimize(net, channels_last=channels_last, compile=compile), B, spec, dev, precision)


def list_models():
    """The names `create_model` knows: the paper's models (`liif/models/presets.py`), also the options of
    `python run.py model=<name>`."""
    return presets.names()


def create_model(name, pretrained_path=None, framework="torch", device="auto", seed=0, **overrides):
    """The preset `name` (see `list_models`) as a `Model`; `model.net` is the network itself.

    overrides: model arguments replacing the preset's, dicts merged, e.g. `local_ensemble=False` or
    `encoder_spec={"args": {"scale": 3}}`. Without `pretrained_path` the weights are fresh, drawn from
    `seed` as training draws them (the same numbers on both frameworks); with it, the checkpoint's
    weights, after checking that it holds this very model."""
    if name not in presets.PRESETS:
        raise UnknownName(f"unknown model '{name}'; choose one of: {', '.join(list_models())}")
    spec = presets.spec(name)
    presets.merge(spec["args"], overrides)
    problem = registry.spec_problem(spec)
    if problem:
        raise BadInput(problem)
    B = backends.get(framework)
    dev = B.device(device)
    if pretrained_path is None:
        net = registry.make(spec, B)
        B.load_state_dict_numpy(net, initial_state(B.state_dict_numpy(net), seed))
    else:
        net = checkpoint.load(pretrained_path, B, expected=spec, expected_label=f"'{name}'").net
    return _on_device(net, B, spec, dev, "fp32", False, False)


def load_model(path, framework="torch", device="auto", precision="fp32", channels_last=False, compile=False):
    """Load a checkpoint written by the original code or by us onto `framework`; options as `build_model`."""
    return load_model_and_checkpoint(path, framework, device, precision, channels_last, compile)[0]


def load_model_and_checkpoint(path, framework="torch", device="auto", precision="fp32", channels_last=False,
                              compile=False):
    """`load_model`, and the checkpoint's contents (its epoch, its training state: the viewer's labels)."""
    B = backends.get(framework)
    dev = B.device(device)
    loaded = checkpoint.load(path, B)
    return _on_device(loaded.net, B, loaded.spec, dev, precision, channels_last, compile), loaded.ckpt


def infer_options(framework_cfg):
    """`load_model`'s options from a framework config (conf/framework/*.yaml), for test and demo."""
    return {"precision": framework_cfg.infer_precision, "channels_last": framework_cfg.channels_last,
            "compile": framework_cfg.compile}


def tiling_options(infer_cfg):
    """`upscale`/`query`'s tiling options from the config's `infer` node (None: the defaults), for test and demo."""
    if infer_cfg is None:
        return {}
    return {"max_memory": infer_cfg.max_memory, "tile": infer_cfg.tile}


def to_rgb(image):
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


def check_bsize(bsize):
    """The number of queries per decoder call, a positive integer (eval_bsize= on the command line)."""
    if isinstance(bsize, bool) or not isinstance(bsize, (int, np.integer)) or bsize <= 0:
        raise ConfigError(f"the query batch (eval_bsize=) must be a positive integer, got {bsize!r}")
    return int(bsize)
