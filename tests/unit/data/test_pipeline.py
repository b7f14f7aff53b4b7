"""The data pipeline on generated files: decoding, folders, caches, wrappers, loader, layouts."""
import os

import numpy as np
import pytest
from PIL import Image

from liif import data
from liif.data import (ImageFolder, PairedImageFolders, SRImplicitDownsampled, SRImplicitPaired,
                       SRImplicitUniformVaried, ensure_sample_set, iterate_batches, len_batches, read_image,
                       resize_bicubic, test_set)
from liif.data.loader import batch_order
from liif.data.sample import MARKER, SPLITS
from liif.errors import DataLayoutError, ImageError


def rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path, img, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im = Image.fromarray(img) if mode is None else Image.fromarray(img).convert(mode)
    im.save(path)
    return str(path)


def make_folder(root, n, h=24, w=36, seed=0):
    for k in range(n):
        save(os.path.join(root, f"{k:04d}.png"), rgb(h, w, seed + k))
    return str(root)


# ---------------------------------------------------------------- read_image

def test_read_image_converts_every_mode_to_rgb(tmp_path):
    img = rgb(8, 10)
    grey = img[..., 0]
    assert np.array_equal(read_image(save(tmp_path / "l.png", grey)), np.repeat(grey[..., None], 3, 2))
    rgba = np.concatenate([img, np.full((8, 10, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(read_image(save(tmp_path / "a.png", rgba)), img)  # alpha dropped, not blended
    pal = Image.fromarray(img).quantize(16)
    pal.save(tmp_path / "p.png")
    assert np.array_equal(read_image(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))
    for path in ("l.png", "a.png", "p.png"):
        out = read_image(tmp_path / path)
        assert out.dtype == np.uint8 and out.shape == (8, 10, 3)


def test_read_image_scales_16_bit_by_the_high_byte(tmp_path):
    values = np.array([[0, 255, 256, 32767], [32768, 65280, 65534, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I;16")
    out = read_image(tmp_path / "g16.png")
    expected = np.array([[0, 0, 1, 127], [128, 255, 255, 255]], np.uint8)
    assert np.array_equal(out, np.repeat(expected[..., None], 3, 2))


@pytest.mark.parametrize("content", ["junk", "truncated"])
def test_read_image_bad_file_raises_one_line_naming_it(tmp_path, content):
    good = open(save(tmp_path / "good.png", rgb(64, 64)), "rb").read()
    path = tmp_path / "bad.png"
    path.write_bytes(b"not an image" if content == "junk" else good[:len(good) // 2])
    with pytest.raises(ImageError) as e:
        read_image(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, ValueError)


# ---------------------------------------------------------------- ImageFolder

def test_folder_order_first_k_and_repeat(tmp_path):
    root = make_folder(tmp_path / "imgs", 3)
    imgs = [rgb(24, 36, k) for k in range(3)]
    ds = ImageFolder(root, repeat=2)
    assert len(ds) == 6
    for i in range(6):
        assert np.array_equal(ds[i], imgs[i % 3])
    assert np.array_equal(ds[-1], imgs[2])
    with pytest.raises(IndexError):
        ds[6]
    first = ImageFolder(root, first_k=2)
    assert len(first) == 2 and np.array_equal(first[1], imgs[1])


def test_folder_non_image_file_error_or_skip(tmp_path):
    root = make_folder(tmp_path / "imgs", 2)
    (tmp_path / "imgs" / "notes.txt").write_text("x")
    (tmp_path / "imgs" / ".DS_Store").write_bytes(b"x")  # hidden files are ignored silently
    with pytest.raises(ValueError, match="notes.txt"):
        ImageFolder(root)
    with pytest.warns(UserWarning, match="notes.txt"):
        ds = ImageFolder(root, on_bad_file="skip")
    assert [os.path.basename(f) for f in ds.files] == ["0000.png", "0001.png"]


def test_folder_accepts_extensions_in_any_case(tmp_path):
    save(tmp_path / "d" / "b.JPG", rgb(8, 8))
    save(tmp_path / "d" / "a.Png", rgb(8, 8))
    assert [os.path.basename(f) for f in ImageFolder(tmp_path / "d").files] == ["a.Png", "b.JPG"]


def test_folder_missing_or_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ImageFolder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in"):
        ImageFolder(tmp_path / "empty")


def test_cache_modes_agree_and_bin_cache_is_written_then_reused(tmp_path):
    root = tmp_path / "imgs"
    save(root / "a.b.png", rgb(10, 12)[..., 0])  # grey and dotted: the original's bin cache broke both
    save(root / "c.png", np.concatenate([rgb(10, 12, 1), np.zeros((10, 12, 1), np.uint8)], 2))  # RGBA
    arrays = {c: [ImageFolder(root, cache=c)[i] for i in range(2)] for c in ("none", "in_memory", "bin")}
    for c in ("in_memory", "bin"):
        for a, b in zip(arrays["none"], arrays[c]):
            assert a.shape == (10, 12, 3) and np.array_equal(a, b)

    bin_files = [tmp_path / "_bin_imgs" / "a.b.png.npy", tmp_path / "_bin_imgs" / "c.png.npy"]
    assert all(f.exists() for f in bin_files)
    sentinel = np.zeros((10, 12, 3), np.uint8)  # the image's shape: a whole, valid cache file
    np.save(bin_files[0], sentinel)  # the image unchanged: a second folder must read it, not decode
    assert np.array_equal(ImageFolder(root, cache="bin")[0], sentinel)
    os.utime(root / "a.b.png", (os.path.getmtime(bin_files[0]) + 10,) * 2)  # image edited later
    assert np.array_equal(ImageFolder(root, cache="bin")[0], arrays["none"][0])


def test_in_memory_items_are_read_only(tmp_path):
    ds = ImageFolder(make_folder(tmp_path / "imgs", 1), cache="in_memory")
    with pytest.raises(ValueError):
        ds[0][0, 0, 0] = 1  # items are shared: an in-place edit would corrupt every later epoch


def test_paired_folders_zip_by_sorted_name_and_check_counts(tmp_path):
    lr_root, hr_root = make_folder(tmp_path / "lr", 2, 6, 9), make_folder(tmp_path / "hr", 2, 12, 18, seed=10)
    pairs = PairedImageFolders(lr_root, hr_root)
    lr, hr = pairs[1]
    assert np.array_equal(lr, rgb(6, 9, 1)) and np.array_equal(hr, rgb(12, 18, 11))
    save(tmp_path / "hr" / "0002.png", rgb(12, 18))
    with pytest.raises(ValueError) as e:
        PairedImageFolders(lr_root, hr_root)
    assert all(s in str(e.value) for s in ("2 in", "3 in", lr_root, hr_root))


# ---------------------------------------------------------------- resize

def test_resize_int_is_the_shorter_edge_and_same_size_is_a_copy():
    img = rgb(30, 50)
    assert resize_bicubic(img, 12).shape == (12, 20, 3)  # torchvision Resize(int) keeps the aspect
    assert resize_bicubic(img.transpose(1, 0, 2), 12).shape == (20, 12, 3)
    assert resize_bicubic(img, (7, 9)).shape == (7, 9, 3)
    assert np.array_equal(resize_bicubic(img, (30, 50)), img)


# ---------------------------------------------------------------- wrappers

def assert_same(a, b):
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def differs(a, b):
    return any(a[k].shape != b[k].shape or not np.array_equal(a[k], b[k]) for k in a)


def train_wrapper(images, **kw):
    return SRImplicitDownsampled(images, inp_size=8, scale_min=1, scale_max=4, augment=True, sample_q=64, **kw)


def test_training_sample_format():
    sample = train_wrapper([rgb(40, 40)])[0]
    shapes = {k: v.shape for k, v in sample.items()}
    assert shapes == {"inp": (3, 8, 8), "coord": (64, 2), "cell": (64, 2), "gt": (64, 3)}
    assert all(v.dtype == np.float32 for v in sample.values())
    assert 0 <= sample["gt"].min() and sample["gt"].max() <= 1 and np.abs(sample["coord"]).max() < 1


def test_items_depend_only_on_seed_epoch_and_index():
    images = [rgb(40, 40, k) for k in range(4)]
    a, b = train_wrapper(images), train_wrapper(images)
    forward = [a[i] for i in range(4)]
    backward = [b[i] for i in reversed(range(4))][::-1]
    for x, y in zip(forward, backward):
        assert_same(x, y)
    a.set_epoch(1)
    assert all(differs(a[i], forward[i]) for i in range(4))
    assert all(differs(train_wrapper(images, seed=1)[i], forward[i]) for i in range(4))


def test_paired_training_crop_is_aligned():
    # HR = LR with each pixel repeated 3x3, so an aligned crop gives HR = LR repeated
    lr = rgb(12, 10)
    hr = np.repeat(np.repeat(lr, 3, 0), 3, 1)
    wrapper = SRImplicitPaired([(lr, hr)], inp_size=4, augment=True)
    for epoch in range(8):  # several crops and flip combinations
        wrapper.set_epoch(epoch)
        s = wrapper[0]
        gt = s["gt"].reshape(12, 12, 3).transpose(2, 0, 1)
        assert np.array_equal(gt, np.repeat(np.repeat(s["inp"], 3, 1), 3, 2))


def test_uniform_varied_gt_size_grows_with_index():
    pairs = [(rgb(8, 8, k), rgb(64, 64, k)) for k in range(3)]
    wrapper = SRImplicitUniformVaried(pairs, size_min=16, size_max=64)
    sizes = [wrapper[i]["gt"].shape[0] for i in range(3)]
    assert sizes == [16 * 16, 40 * 40, 64 * 64]
    assert np.allclose(wrapper[1]["cell"], 2 / 40)
    resized = SRImplicitUniformVaried(pairs, size_min=16, size_max=64, gt_resize=20, sample_q=100, augment=True)[2]
    assert resized["gt"].shape == (100, 3) and np.allclose(resized["cell"], 2 / 20)


# ---------------------------------------------------------------- loader

def test_loader_batches_shuffle_and_workers_agree():
    images = [rgb(40, 40, k) for k in range(7)]
    wrapper = train_wrapper(images)
    kw = dict(batch_size=3, shuffle=True, seed=5, epoch=2)
    serial = list(iterate_batches(wrapper, **kw))
    parallel = list(iterate_batches(wrapper, num_workers=2, **kw))
    assert [b["inp"].shape[0] for b in serial] == [3, 3, 1] and len_batches(wrapper, 3) == 3
    assert len(parallel) == len(serial)
    for x, y in zip(serial, parallel):
        assert_same(x, y)
    # the batches are the items (of epoch 2) in a shuffled order
    wrapper.set_epoch(2)
    items = [wrapper[i]["inp"] for i in range(7)]
    order = [next(i for i in range(7) if np.array_equal(items[i], inp)) for b in serial for inp in b["inp"]]
    assert sorted(order) == list(range(7)) and order != list(range(7))
    dropped = list(iterate_batches(wrapper, drop_last=True, **kw))
    assert len(dropped) == len_batches(7, 3, drop_last=True) == 2


class CountingImages(list):
    """A list of images that records which the loader reads."""

    def __init__(self, images):
        super().__init__(images)
        self.reads = []

    def __getitem__(self, i):
        self.reads.append(i)
        return super().__getitem__(i)


@pytest.mark.parametrize("rank, world", [(0, 1), (1, 2)])
def test_loader_makes_only_the_batches_asked_for(rank, world):
    images = CountingImages(rgb(40, 40, k) for k in range(11))
    wrapper = train_wrapper(images)
    kw = dict(batch_size=4, shuffle=True, seed=5, epoch=2, rank=rank, world_size=world)
    full = list(iterate_batches(wrapper, **kw))
    assert len(full) == 3  # 11 items in batches of 4, 4, 3; over two ranks 2+2, 2+2, 2+1
    for start, stop, n_read in [(2, None, (3, 1)), (1, 2, (4, 2)), (0, 1, (4, 2)), (3, None, (0, 0))]:
        images.reads.clear()
        part = list(iterate_batches(wrapper, start_batch=start, stop_batch=stop, **kw))
        assert len(images.reads) == n_read[world - 1]  # the items of the batches yielded, no other
        assert len(part) == len(full[start:stop])
        for got, expected in zip(part, full[start:stop]):
            assert_same(got, expected)


def test_loader_epochs_differ():
    wrapper = train_wrapper([rgb(40, 40, k) for k in range(4)])
    e0 = next(iterate_batches(wrapper, 4, epoch=0))
    e1 = next(iterate_batches(wrapper, 4, epoch=1))
    assert wrapper.epoch == 1 and differs(e0, e1)
    orders = [batch_order(20, shuffle=True, seed=0, epoch=e) for e in (0, 1)]
    assert sorted(orders[0]) == list(range(20)) and not np.array_equal(orders[0], orders[1])
    assert np.array_equal(batch_order(20, shuffle=True, seed=0, epoch=1), orders[1])


# ---------------------------------------------------------------- sample set

def test_sample_set_materialises_once(tmp_path):
    root = ensure_sample_set(tmp_path / "sample")
    assert os.path.isfile(os.path.join(root, MARKER))
    for split, names in SPLITS.items():
        ds = ImageFolder(os.path.join(root, split))
        assert len(ds) == len(names)
        for i in range(len(ds)):
            img = ds[i]
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
            assert img.shape[0] == 240 and img.shape[1] in (240, 360)
    marker_time = os.path.getmtime(os.path.join(root, MARKER))
    assert ensure_sample_set(root) == root
    assert os.path.getmtime(os.path.join(root, MARKER)) == marker_time
    assert [p for p in os.listdir(tmp_path) if p != "sample"] == []  # no temporary folder left


def test_sample_set_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a complete sample set"):
        ensure_sample_set(tmp_path / "sample")


# ---------------------------------------------------------------- layouts and test sets

def test_layout_error_names_the_path_and_shows_the_tree(tmp_path):
    from liif.config import TestSetConfig
    from liif.evaluation.evaluate import expected_layout
    entry = TestSetConfig(name="Set5", hr=f"{tmp_path}/benchmark/Set5/HR", scales=[2],  # conf/dataset/benchmark.yaml
                          lr=f"{tmp_path}/benchmark/Set5/LR_bicubic/X{{scale}}")
    with pytest.raises(DataLayoutError) as e:
        test_set(entry.hr, entry.lr.format(scale=2), 2, layout_text=expected_layout(entry))
    message = str(e.value)
    assert entry.hr in message
    assert f"{tmp_path}/benchmark/Set5/LR_bicubic/X{{2,3,4}}/*.png" in message
    assert isinstance(e.value, FileNotFoundError)


def test_a_missing_div2k_folder_shows_the_div2k_tree(tmp_path):
    from liif.config import DatasetConfig, ScaleConfig, SplitConfig, TrainConfig
    dataset = DatasetConfig(name="div2k", layout="div2k", train=SplitConfig(root=f"{tmp_path}/DIV2K/DIV2K_train_HR"))
    with pytest.raises(DataLayoutError) as e:
        data.make_train_sets(dataset, TrainConfig(), ScaleConfig(), data_dir=str(tmp_path))
    assert f"{tmp_path}/DIV2K/DIV2K_valid_LR_bicubic/X2/*.png" in str(e.value)


def test_test_set_uses_lr_files_when_present(tmp_path):
    hr, lr = str(tmp_path / "HR"), lambda scale: str(tmp_path / "LR_bicubic" / f"X{scale}")
    make_folder(hr, 2, 25, 37)  # not multiples of 2: the HR is cut to 24x36
    make_folder(lr(2), 2, 12, 18, seed=10)
    paired = test_set(hr, lr(2), 2)
    assert isinstance(paired, SRImplicitPaired)
    assert np.array_equal(paired[0]["inp"], rgb(12, 18, 10).transpose(2, 0, 1) / np.float32(255))
    assert paired[0]["gt"].shape == (24 * 36, 3)

    down = test_set(hr, lr(3), 3)  # no X3 folder: downsample the HR
    assert isinstance(down, SRImplicitDownsampled)
    assert down[0]["inp"].shape == (3, 8, 12) and down[0]["gt"].shape == (24 * 36, 3)


@pytest.mark.parametrize("lr_hw", [(12, 12), (8, 18)])  # wrong height ratio, wrong width ratio
def test_test_set_rejects_pairs_of_the_wrong_scale(tmp_path, lr_hw):
    make_folder(tmp_path / "HR", 1, 24, 36)
    make_folder(tmp_path / "X3", 1, *lr_hw)
    with pytest.raises(ValueError) as e:
        test_set(str(tmp_path / "HR"), str(tmp_path / "X3"), 3)
    assert "0000.png" in str(e.value) and "x3" in str(e.value)


# ---------------------------------------------------------------- registry

def test_make_wrapped_builds_an_original_config(tmp_path):
    root = make_folder(tmp_path / "imgs", 2, 40, 40)
    spec = {
        "dataset": {"name": "image-folder", "args": {"root_path": root, "repeat": 3, "cache": "in_memory"}},
        "wrapper": {"name": "sr-implicit-downsampled",
                    "args": {"inp_size": 8, "scale_max": 4, "augment": True, "sample_q": 64}},
    }
    ds = data.make_wrapped(spec)
    assert isinstance(ds, SRImplicitDownsampled) and len(ds) == 6 and ds[5]["gt"].shape == (64, 3)
    assert "dataset" not in spec["wrapper"]["args"]  # make copies the args it updates
    with pytest.raises(KeyError, match="image-folder"):
        data.make({"name": "imagefolder", "args": {}})
    assert sorted(data.datasets) == ["image-folder", "paired-image-folders", "sr-implicit-downsampled",
                                     "sr-implicit-paired", "sr-implicit-uniform-varied"]


class _SignalReport:
    """Items that say how the process making them handles SIGTERM and SIGINT."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        import signal
        return {"default_sigterm": np.array(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL),
                "ignores_sigint": np.array(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)}


def test_workers_do_not_inherit_the_trainers_signal_handlers():
    """Workers forked during training must die on Pool.terminate()'s SIGTERM (the trainer's own
    handler only sets a flag: a pool that cannot be terminated hangs the run) and leave Ctrl-C to
    the parent."""
    import signal
    from liif.data.loader import iterate_batches
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        batches = list(iterate_batches(_SignalReport(), 2, num_workers=2))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert all(b["default_sigterm"].all() and b["ignores_sigint"].all() for b in batches)


@pytest.mark.slow
def test_a_worker_terminated_before_it_has_reset_the_trainers_handler_still_ends(monkeypatch):
    """Pool.terminate() may come before a worker has run its initializer (a worker slow to start, on a
    busy machine, when the others made every item): the SIGTERM must not reach the trainer's handler
    that the worker inherited, which only sets a flag; else the worker lives on and the join waits for
    ever (seen once: a test hung the suite)."""
    import multiprocessing
    import signal
    import threading
    import time
    from liif.data import loader
    original = loader._init_worker

    def slow_to_start(dataset):
        time.sleep(1)  # terminate() comes meanwhile: no batch is asked for
        original(dataset)
    monkeypatch.setattr(loader, "_init_worker", slow_to_start)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        done = threading.Thread(target=lambda: list(loader.iterate_batches(_SignalReport(), 2, num_workers=2, stop_batch=0)),
                                daemon=True)
        done.start()
        done.join(timeout=30)
    finally:
        signal.signal(signal.SIGTERM, previous)
        hung = done.is_alive()
        for child in multiprocessing.active_children():  # a hung pool's workers, not to outlive the test
            child.kill()
    assert not hung, "Pool.terminate() left a worker running: the join waited"


def test_a_split_file_is_read_as_input(tmp_path):
    """A split file (CelebA-HQ's {split: [names]}) may be named by a run folder's saved settings: its names
    are read in order; /dev/zero, a folder, deep nesting, another shape are one DataError line, at once."""
    from liif.data.image_folder import split_names
    from liif.errors import DataError
    make_folder(str(tmp_path / "imgs"), 3)
    split = tmp_path / "split.json"
    split.write_text('{"train": ["0002.png", "0000.png"], "val": ["0001.png"]}')
    assert [os.path.basename(f) for f in ImageFolder(tmp_path / "imgs", split_file=split, split_key="train").files] == [
        "0002.png", "0000.png"]
    with pytest.raises(DataLayoutError, match="not a regular file"):
        split_names("/dev/zero", "train")  # was read forever
    with pytest.raises(DataLayoutError, match="not a regular file"):
        split_names(tmp_path, "train")
    for text, words in [("[" * 100_000 + "]" * 100_000, "nests 100000 deep"), ('{"train": "0000.png"}', "no list"),
                        ('{"train": [1, 2]}', "no list"), ('["0000.png"]', "no list"), ("\xff", "not JSON"),
                        ('{"val": []}', "no list of image names under 'train'")]:
        split.write_text(text, encoding="latin-1")
        with pytest.raises(DataError, match=words) as e:
            split_names(split, "train")
        assert "\n" not in str(e.value)
