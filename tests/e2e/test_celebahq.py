"""Table 4's CelebA-HQ recipe end to end on a tiny CelebA-HQ-layout folder: size-varied
ground truths (sr-implicit-uniform-varied) for training, the paired 64 -> 128 split for
validation and test (plain RGB PSNR), with split.json honoured. The CLI's path after composition, in process."""
import json

import numpy as np
import pytest
from PIL import Image

from conftest import compose, run_task_with_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def celebahq(tmp_path_factory):
    """CelebAHQ/{32,64,128,256}/ (the same 'faces' at each size) and split.json."""
    from skimage import data
    root = tmp_path_factory.mktemp("data")
    photos = [data.astronaut()[:400, 50:450], data.chelsea()[:300, 100:400], data.coffee()[:400, 150:550],
              data.rocket()[:400, 100:500], data.astronaut()[100:500, 0:400]]
    names = [f"{i:05d}.png" for i in range(len(photos))]
    for size in (32, 64, 128, 256):
        (root / "CelebAHQ" / str(size)).mkdir(parents=True)
        for name, photo in zip(names, photos):
            Image.fromarray(np.ascontiguousarray(photo)).resize((size, size), Image.BICUBIC).save(root / "CelebAHQ" / str(size) / name)
    (root / "CelebAHQ" / "split.json").write_text(json.dumps({"train": names[:3], "val": names[3:]}))
    return root


TINY = ["model.args.encoder_spec.args.n_resblocks=1", "model.args.encoder_spec.args.n_feats=8",
        "train.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=2", "train.num_workers=0",
        "device=cpu", "framework.threads=1"]


@pytest.mark.parametrize("experiment, mlp", [("table4_celebahq_64_128_liif", ["model.args.imnet_spec.args.hidden_list=[16]"]),
                                             ("table4_celebahq_64_128_upsample", [])])
def test_table4_recipe_trains_and_tests_on_the_split(celebahq, tmp_path, experiment, mlp):
    status, err = run_task_with_overrides(compose(f"experiment={experiment}", *TINY, *mlp, f"paths.data_dir={celebahq}"),
                                          f"output_dir={tmp_path / 'run'}")
    assert status == 0, err[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["paper"]["table"] == 4
    [record] = metrics["records"]
    assert record["n_images"] == 2 and record["eval_type"] == "none" and record["lr_source"] == "files"
    assert np.isfinite(record["psnr"]) and metrics["train"]["history"][0]["val_psnr"] is not None


def test_size_varied_batches_keep_the_lr_and_vary_the_gt(celebahq):
    from liif.data.image_folder import PairedImageFolders
    from liif.data.wrappers import SRImplicitUniformVaried
    root = celebahq / "CelebAHQ"
    pairs = PairedImageFolders(str(root / "32"), str(root / "256"), split_file=str(root / "split.json"), split_key="train")
    wrapper = SRImplicitUniformVaried(pairs, 32, 256, sample_q=100)
    cells = [wrapper[i]["cell"][0, 0] for i in range(len(wrapper))]
    assert len(wrapper) == 3 and all(wrapper[i]["inp"].shape == (3, 32, 32) for i in range(3))
    assert cells == pytest.approx([2 / 32, 2 / 144, 2 / 256])  # GT side 32 -> 256 linearly in the index
