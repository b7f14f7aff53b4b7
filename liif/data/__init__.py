"""Framework-neutral data pipeline (NumPy + Pillow): the original LIIF datasets and wrappers.

The registry keeps the original names and config shape, so an original dataset spec
`{'dataset': {name, args}, 'wrapper': {name, args}}` builds unchanged with `make_wrapped`; `make_train_sets` turns a dataset config into such specs.
"""
from liif.data.image_folder import ImageFolder, PairedImageFolders, image_folder, paired_image_folders, read_image
from liif.data.layouts import require, test_set
from liif.data.loader import iterate_batches, len_batches
from liif.data.resize import resize_bicubic
from liif.data.sample import ensure_sample_set
from liif.data.wrappers import SRImplicitDownsampled, SRImplicitPaired, SRImplicitUniformVaried
from liif.registry import Registry

registry = Registry("dataset")
datasets = registry.entries
register = registry.register


def make(spec, args=None):
    """Build `spec` = {'name', 'args'}; `args` (if given) update a copy of spec['args']."""
    return registry.get(spec["name"])(**registry.args_of(spec, args))


def make_wrapped(spec):
    """The original `{'dataset': ..., 'wrapper': ...}` config node -> the wrapped dataset."""
    return make(spec["wrapper"], args={"dataset": make(spec["dataset"])})


# config argument names are the original's (root_path, root_path_1, ...), hence the factories
register("image-folder")(image_folder)
register("paired-image-folders")(paired_image_folders)
register("sr-implicit-downsampled")(SRImplicitDownsampled)
register("sr-implicit-paired")(SRImplicitPaired)
register("sr-implicit-uniform-varied")(SRImplicitUniformVaried)

from liif.data.training_sets import make_train_sets, split_spec  # noqa: E402  (builds through the registry above)

__all__ = [
    "register", "make", "make_wrapped", "datasets",
    "read_image", "ImageFolder", "PairedImageFolders",
    "resize_bicubic", "SRImplicitDownsampled", "SRImplicitPaired", "SRImplicitUniformVaried",
    "iterate_batches", "len_batches", "ensure_sample_set",
    "require", "test_set", "make_train_sets", "split_spec",
]
