"""
Zero-shot ImageNet classification with DiT-XL/2 (GPU, not run here)
===================================================================

Classify ImageNet images with the class-conditional diffusion transformer DiT-XL/2 at
256 px (Peebles & Xie, 2023) and nothing trained, as Li et al. (2023) do: a
:class:`~skdiffusion.diffusers.VAEEncoder` maps each image to DiT's latents, and a
:class:`~skdiffusion.DiffusionClassifier` with ``max_iter=0`` scores the 1000 ImageNet
classes on them with the DiT wrapped by :class:`~skdiffusion.diffusers.DiTAdapter`,
dropping classes in the stages of Li et al.'s ImageNet schedule. See :ref:`zero_shot`
for what it costs per image.

This script needs a GPU, ``pip install "skdiffusion[diffusers]"`` and the weights of
``facebook/DiT-XL-2-256``, which diffusers downloads from the Hugging Face Hub on first
use; the documentation shows it without running it. Run it as::

    python zero_shot_dit.py /data/imagenet/val --limit 100

The folder holds one subfolder of images per class: named by the ImageNet class index
(``0`` to ``999``, DiT's label ids), or the 1000 synset folders of the standard layout
(``n01440764``, ...), whose sorted order is the class index.
"""

import argparse
import os
import time

import numpy as np
from PIL import Image
from sklearn.pipeline import make_pipeline

from skdiffusion import DiffusionClassifier
from skdiffusion.diffusers import DiTAdapter, VAEEncoder, scheduler_alphas_cumprod

# Li et al.'s (2023) ImageNet schedule: keep 500, 50, 10 classes after 50, 100, 500
# trials, and the best one after all 1000 (500 timesteps of the 1000, an antithetic pair
# of noises at each: skdiffusion's draws, where Li et al. take 1000 timesteps).
N_TRIALS = 1000
PRUNING = ((50, 500), (100, 50), (500, 10))
# Rows per DiT call: every stage's number of trials is a multiple, so no call is padded.
EVAL_BATCH_SIZE = 50
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")


def center_crop(image, size):
    """Return ``image`` resized so that its shorter side is ``size``, cropped to its central square.

    The preprocessing of DiT's training images (ADM's ``center_crop_arr``, Dhariwal &
    Nichol, 2021): halve with a box filter while the image is twice the size or more,
    then resize with a bicubic one.
    """
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(side // 2 for side in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(side * scale) for side in image.size), resample=Image.BICUBIC)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


def list_images(folder, *, n_classes=1000):
    """Return the paths of the images in ``folder``'s class subfolders, and their labels."""
    names = sorted(name for name in os.listdir(folder) if os.path.isdir(os.path.join(folder, name)))
    if names and all(name.isdigit() for name in names):
        label_of = {name: int(name) for name in names}
    elif len(names) == n_classes:
        label_of = {name: label for label, name in enumerate(names)}
    else:
        raise SystemExit(
            f"{folder} has {len(names)} class folders: name them by class index (0 to {n_classes - 1}), "
            f"or give all {n_classes} synset folders."
        )
    images = [
        (os.path.join(folder, name, file), label_of[name])
        for name in names
        for file in sorted(os.listdir(os.path.join(folder, name)))
        if file.lower().endswith(IMAGE_EXTENSIONS)
    ]
    return [path for path, _ in images], np.array([label for _, label in images], dtype=np.int64)


def read_images(paths, size):
    """Return the images at ``paths``, center-cropped, as rows in [-1, 1] of shape (n, 3 * size * size)."""
    X = np.empty((len(paths), 3 * size * size), dtype=np.float32)
    for row, path in enumerate(paths):
        with Image.open(path) as image:
            pixels = np.asarray(center_crop(image.convert("RGB"), size), dtype=np.float32)
        X[row] = (pixels / 127.5 - 1.0).transpose(2, 0, 1).ravel()  # (3, H, W), as the VAE reads it
    return X


def load_models(repo="facebook/DiT-XL-2-256", vae_repo=None):
    """Return the DiT, the VAE and the ``alphas_cumprod`` of the pipeline ``repo``, on the CPU."""
    from diffusers import AutoencoderKL, DDPMScheduler, DiTTransformer2DModel

    dit = DiTTransformer2DModel.from_pretrained(repo, subfolder="transformer")
    # Li et al. encode with stabilityai/sd-vae-ft-ema; --vae chooses it.
    vae = AutoencoderKL.from_pretrained(vae_repo) if vae_repo else AutoencoderKL.from_pretrained(repo, subfolder="vae")
    # Any scheduler of the pipeline computes the same training schedule from this config.
    scheduler = DDPMScheduler.from_pretrained(repo, subfolder="scheduler")
    return dit, vae, scheduler_alphas_cumprod(scheduler)


def image_size(dit, vae):
    """Return the side of the images whose latents DiT takes: its latent side times the VAE's downsampling."""
    return dit.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1)


def build_classifier(dit, vae, alphas_cumprod, *, n_trials=N_TRIALS, pruning=PRUNING, device="cuda", batch_size=16):
    """Return a pipeline ``VAEEncoder -> DiffusionClassifier`` that classifies over all of DiT's labels.

    ``dit`` stays where it is (best, the CPU): ``fit`` copies it to ``device``. The
    classifier is fitted on one placeholder row per class, which only declares the
    classes (uniform priors): with ``max_iter=0``, ``standardize=False`` and
    ``validation_fraction=None`` nothing else is learned from ``X``.
    """
    n_classes = dit.config.num_embeds_ada_norm  # its label ids are 0..n_classes-1
    latent_shape = (dit.config.in_channels, dit.config.sample_size, dit.config.sample_size)
    clf = DiffusionClassifier(
        DiTAdapter(dit, eval_batch_size=EVAL_BATCH_SIZE),
        image_shape=latent_shape,
        n_trials=n_trials,
        pruning=pruning,
        timestep_range=(0.0, 1.0),  # as Li et al.: evenly spaced over all timesteps
        max_iter=0,
        noise_schedule=alphas_cumprod,
        n_diffusion_steps=len(alphas_cumprod),
        standardize=False,
        validation_fraction=None,
        device=device,
        random_state=0,
    )
    clf.fit(np.zeros((n_classes, int(np.prod(latent_shape))), dtype=np.float32), np.arange(n_classes))
    vae.to(device)
    # VAEEncoder learns nothing, and the classifier is fitted: the pipeline needs no fit.
    size = image_size(dit, vae)
    return make_pipeline(VAEEncoder(vae, image_shape=(3, size, size), batch_size=batch_size), clf)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("folder", help="one subfolder of images per ImageNet class")
    parser.add_argument("--limit", type=int, default=None, help="classify only the first LIMIT images")
    parser.add_argument("--repo", default="facebook/DiT-XL-2-256", help="a DiT pipeline on the Hugging Face Hub")
    parser.add_argument("--vae", default=None, help="another VAE, e.g. stabilityai/sd-vae-ft-ema (Li et al.)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=16, help="images read and classified at a time")
    parser.add_argument(
        "--exhaustive",
        action="store_true",
        help="Li et al.'s DiT evaluation: 250 trials for every class, no pruning (2.5x the cost)",
    )
    args = parser.parse_args(argv)
    dit, vae, alphas_cumprod = load_models(args.repo, args.vae)
    schedule = {"n_trials": 250, "pruning": None} if args.exhaustive else {}
    pipeline = build_classifier(dit, vae, alphas_cumprod, device=args.device, batch_size=args.batch_size, **schedule)
    size = image_size(dit, vae)  # 256 for DiT-XL/2-256
    paths, y = list_images(args.folder, n_classes=dit.config.num_embeds_ada_norm)
    paths, y = paths[: args.limit], y[: args.limit]
    y_pred = np.empty_like(y)
    start = time.perf_counter()
    for first in range(0, len(paths), args.batch_size):
        last = min(first + args.batch_size, len(paths))
        y_pred[first:last] = pipeline.predict(read_images(paths[first:last], size))
        accuracy, seconds = np.mean(y_pred[:last] == y[:last]), (time.perf_counter() - start) / last
        print(f"{last}/{len(paths)} images: top-1 accuracy {accuracy:.4f}, {seconds:.1f} s per image")


if __name__ == "__main__":
    main()
