"""The training and validation sets of a dataset config, built through the dataset registry.

A split (`liif.config.SplitConfig`) becomes the original LIIF dataset spec
`{'dataset': {name, args}, 'wrapper': {name, args}}` (`split_spec`), which `liif.data.make_wrapped`
builds, exactly as it builds a spec copied from the original configs. The CLI, the Python API
and the tests all go this way. Recipes:

- `sr-implicit-downsampled` (DIV2K, the sample set, any folder): an `image-folder` on `root`,
  cropped and downsampled by the recipe (`train.inp_size`, `train.sample_q`, the scale range).
- `sr-implicit-paired`, `sr-implicit-uniform-varied` (DIV2K's LR files, CelebA-HQ): a
  `paired-image-folders` on `lr_root`/`hr_root`, with the split's own sizes and `sample_q`.
"""
import os

from liif.data import layouts
from liif.data.image_folder import image_size
from liif.errors import ConfigError, DataError


def split_spec(split, train, scale, augment, seed=0, on_bad_file="error"):
    """The original `{'dataset', 'wrapper'}` spec of `split` (a SplitConfig) under the recipe `train`
    (a TrainConfig) and the scale range `scale` (a ScaleConfig)."""
    folder = {"first_k": split.first_k, "repeat": split.repeat, "cache": split.cache, "on_bad_file": on_bad_file,
              "split_file": split.split_file, "split_key": split.split_key}
    if split.wrapper == "sr-implicit-downsampled":
        dataset = {"name": "image-folder", "args": {"root_path": split.root, **folder}}
        args = {"inp_size": train.inp_size, "scale_min": scale.min, "scale_max": scale.max, "sample_q": train.sample_q}
    else:
        dataset = {"name": "paired-image-folders", "args": {"root_path_1": split.lr_root, "root_path_2": split.hr_root,
                                                            **folder}}
        if split.wrapper == "sr-implicit-uniform-varied":
            args = {"size_min": split.size_min, "size_max": split.size_max, "gt_resize": split.gt_resize}
        else:
            args = {"inp_size": split.inp_size}
        args["sample_q"] = split.sample_q
    return {"dataset": dataset, "wrapper": {"name": split.wrapper, "args": {**args, "augment": augment, "seed": seed}}}


def make_train_sets(dataset, train, scale, seed=0, on_bad_file="error", data_dir="data"):
    """(training set, validation set or None) of `dataset` (a DatasetConfig), each folder checked
    first: a missing one shows the expected layout, an image smaller than the crop is named."""
    from liif.data import make_wrapped, registry
    if dataset.train is None:
        raise ConfigError(f"dataset '{dataset.name}' is a test-only dataset; train on dataset=sample, div2k or folder")
    if dataset.name == "sample":
        from liif.data.sample import ensure_sample_set
        ensure_sample_set(os.path.dirname(dataset.train.root))

    def build(split, augment, name):
        registry.get(split.wrapper)  # an unknown wrapper is named, with the known ones, before anything else
        spec = split_spec(split, train, scale, augment, seed, on_bad_file)
        roots = ("root",) if split.wrapper == "sr-implicit-downsampled" else ("lr_root", "hr_root")
        for key in roots:
            if getattr(split, key) is None:
                raise ConfigError(f"dataset.{name}.{key} is not set: wrapper {split.wrapper} reads its images from "
                                  + " and ".join(f"dataset.{name}.{k}" for k in roots))
        if split.wrapper == "sr-implicit-downsampled":
            tree = (layouts.DIV2K_TREE.format(root=data_dir) if dataset.layout == "div2k"
                    else layouts.FOLDER_TREE.format(root=split.root))
            layouts.require(split.root, tree)
        else:
            for root in (split.lr_root, split.hr_root):
                layouts.require(root, layouts.FOLDER_TREE.format(root=root))
        built = make_wrapped(spec)
        if split.wrapper == "sr-implicit-downsampled":
            check_crop_fits(built.dataset.files, round(train.inp_size * (scale.max or scale.min)))
        elif split.wrapper == "sr-implicit-paired" and split.inp_size:
            check_crop_fits(built.dataset.dataset_1.files, split.inp_size, "LR", f"dataset.{name}.inp_size")
        return built

    train_set = build(dataset.train, train.augment, "train")
    return train_set, (build(dataset.val, False, "val") if dataset.val is not None else None)


def check_crop_fits(files, side, kind="HR", settings="train.inp_size or scale.max"):
    """Every training image must hold the largest crop (checked from file headers, up front,
    rather than failing in the middle of an epoch)."""
    for path in files:
        h, w = image_size(path)
        if min(h, w) < side:
            raise DataError(f"{path} is {h}x{w}, smaller than the {side}x{side} {kind} crop that {settings} "
                            f"asks for; remove it, or lower {settings}")
