"""The batched (device) augmentations draw what the albumentations pipelines draw, and the loader is exact."""
import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from utils.data import ImageData
from utils.gpu_data import (DeviceLoader, _cutout_, affine_flip_cutout, affine_matrices, crop_flip_cutout,
                            make_device_loaders, normalize, warp)
from utils.augment import AUGMENTATIONS as AUGMENTATIONS_
from utils.transforms import MEAN_PIXEL, denormalize, eval_transform

N = 4050  # 50 draws per crop offset


def coded_images(n: int) -> torch.Tensor:
    """Pixel (r, c) of image i is (r, c, i % 256): every output pixel names its source. Row values
    (0-31) never equal the hole colour 125, so a hole is exactly where channel 0 reads 125."""
    rows, cols = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    ids = torch.arange(n)[:, None, None].expand(n, 32, 32) % 256
    return torch.stack([rows.expand(n, 32, 32), cols.expand(n, 32, 32), ids], -1).to(torch.uint8)


def chi_square(counts: torch.Tensor) -> float:
    expected = counts.sum() / counts.numel()
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.fixture(scope="module")
def s10_draws():
    images = coded_images(N)
    return images, crop_flip_cutout(images, torch.Generator().manual_seed(0)).long()


def recover(out: torch.Tensor):
    """(dy, dx, flipped) per image from the unreflected centre, where the hole can only be a minority."""
    centre = out[:, 4:28, 4:28]
    idx = torch.arange(4, 28)
    dy = (centre[..., 0] - idx[:, None]).flatten(1).median(1).values + 4
    flipped = (centre[:, :, 1:, 1] - centre[:, :, :-1, 1]).flatten(1).median(1).values < 0
    # output column j reads padded column j + dx, or (31 - j) + dx when flipped
    dx = torch.where(flipped[:, None, None], centre[..., 1] + idx - 27, centre[..., 1] - idx + 4)
    return dy, dx.flatten(1).median(1).values, flipped


def test_crop_offsets_uniform_over_9x9_and_flip_half(s10_draws):
    _, out = s10_draws
    dy, dx, flipped = recover(out)
    counts = torch.bincount(dy * 9 + dx, minlength=81).float()
    assert counts.numel() == 81 and counts.min() > 0
    assert chi_square(counts) < 140  # 80 degrees of freedom: mean 80, sd 12.6
    assert abs(flipped.float().mean() - 0.5) < 0.04  # 5 sd of a binomial over 4050 draws


def test_pixels_match_reflect_pad_crop_flip_off_the_hole(s10_draws):
    images, out = s10_draws
    dy, dx, flipped = recover(out)
    padded = np.pad(images[:200].numpy(), ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")  # = BORDER_REFLECT_101
    for i in range(200):
        ref = padded[i, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
        ref = ref[:, ::-1] if flipped[i] else ref
        off_hole = out[i, :, :, 0] != 125
        assert (out[i][off_hole].numpy() == ref[off_hole.numpy()]).all()


def test_exactly_one_8x8_mean_hole_inside_each_image(s10_draws):
    _, out = s10_draws
    hole = out[..., 0] == 125
    assert (hole.sum((1, 2)) == 64).all()
    assert (out[hole] == torch.tensor(MEAN_PIXEL)).all()
    rows, cols = hole.any(2), hole.any(1)  # N x 32: which rows / columns the hole touches
    assert (rows.sum(1) == 8).all() and (cols.sum(1) == 8).all()  # 64 pixels in 8 rows x 8 cols: one square
    top, left = rows.float().argmax(1), cols.float().argmax(1)
    for start in (top, left):  # uniform over the 25 positions fully inside
        counts = torch.bincount(start, minlength=25).float()
        assert counts.numel() == 25 and chi_square(counts) < 60  # 24 dof: mean 24, sd 6.9


def test_normalize_matches_albumentations_and_inverts():
    images = coded_images(4) * 7
    x = normalize(images)
    ref = torch.stack([eval_transform()(image=img)["image"] for img in images.numpy()])
    assert torch.allclose(x, ref, atol=1e-5)
    assert (np.rint(denormalize(x) * 255) == images.numpy()).all()


@pytest.mark.parametrize("params", [(10, 1, 1, 0, 0), (0, 1.1, 0.9, 0, 0), (0, 1, 1, 1, -1), (-13, 0.95, 1.05, -1, 1)])
def test_affine_matches_albumentations(params):
    angle, sx, sy, tx, ty = params
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    aug = A.Affine(translate_px={"x": (tx, tx), "y": (ty, ty)}, scale={"x": (sx, sx), "y": (sy, sy)},
                   rotate=(angle, angle), border_mode=cv2.BORDER_CONSTANT, fill=MEAN_PIXEL, p=1)
    ref = np.stack([aug(image=img)["image"] for img in images.numpy()]).astype(int)
    ours = warp(images, affine_matrices(*(torch.full((4,), float(v)) for v in params))).numpy().astype(int)
    assert np.abs(ours - ref).max() <= 1 and np.abs(ours - ref).mean() < 0.01  # cv2 rounds in fixed point


def test_s9_leaves_a_quarter_untouched_up_to_the_flip():
    images = coded_images(2000)
    out = affine_flip_cutout(images, torch.Generator().manual_seed(0))
    same = (out == images).flatten(1).all(1)
    flipped = (out == images.flip(2)).flatten(1).all(1)
    # neither warped (p 0.5) nor cut out (p 0.5); the flip is exact
    assert abs(same.float().mean() - 0.125) < 0.035 and abs(flipped.float().mean() - 0.125) < 0.035


def test_cutout_only_where_applied():
    images = torch.zeros(6, 32, 32, 3, dtype=torch.uint8)
    apply = torch.tensor([True, False, True, False, True, False])
    out = _cutout_(images, 16, MEAN_PIXEL, torch.Generator().manual_seed(0), apply)
    assert out.any(-1).sum((1, 2)).tolist() == [256, 0, 256, 0, 256, 0]


# ------------------------------------------------------------------------------------------ loaders
def labelled(n: int) -> ImageData:
    """Images whose label is their own index, so batches show which images they hold."""
    images = coded_images(n).numpy()
    return ImageData(images, np.arange(n), tuple(str(i) for i in range(10)))


def test_every_image_once_per_epoch_and_epochs_differ():
    loader = DeviceLoader(labelled(1000), 64, seed=0)
    epochs = [torch.cat([y for _, y in loader]) for _ in range(2)]
    assert len(loader) == 16 and all(sorted(e.tolist()) == list(range(1000)) for e in epochs)
    assert not torch.equal(epochs[0], epochs[1])
    dropped = DeviceLoader(labelled(1000), 64, seed=0, drop_last=True)
    labels = torch.cat([y for _, y in dropped])
    assert len(dropped) == 15 and len(labels) == 960 and len(set(labels.tolist())) == 960


def test_batches_carry_their_own_images():
    for x, y in DeviceLoader(labelled(300), 50, seed=0):
        pixels = np.rint(denormalize(x) * 255)
        off_hole = pixels[..., 0] != 125
        assert (pixels[..., 2] == (y % 256)[:, None, None].numpy())[off_hole].all()


def test_same_seed_same_batches_and_generator_state_resumes():
    a, b, c = (DeviceLoader(labelled(200), 32, seed=s) for s in (0, 0, 1))
    for (xa, ya), (xb, yb), (xc, _) in zip(a, b, c):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, xc)
    state = a.state_dict()
    first = [x for x, _ in a]
    a.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(first, (x for x, _ in a)))


def test_test_loader_fixed_order_normalise_only(synthetic):
    _, test_loader = make_device_loaders(synthetic, 64, "cpu", channels_last=False)
    x, y = next(iter(test_loader))
    ref = torch.stack([eval_transform()(image=img)["image"] for img in synthetic.test.images[:len(y)]])
    assert torch.allclose(x, ref, atol=1e-5) and torch.equal(y, torch.from_numpy(synthetic.test.labels[:len(y)]))


@pytest.mark.parametrize("dtype, channels_last", [(None, True), (torch.bfloat16, False), (torch.float16, True)])
def test_dtype_shape_and_memory_format(synthetic, dtype, channels_last):
    train_loader, _ = make_device_loaders(synthetic, 32, "cpu", augment="s9", dtype=dtype, channels_last=channels_last)
    x, y = next(iter(train_loader))
    assert x.shape == (32, 3, 32, 32) and x.dtype == (dtype or torch.float32) and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    assert train_loader.batch_size == 32


def test_loader_stores_uint8_without_a_copy(synthetic):
    loader = DeviceLoader(synthetic.train, 64, device="cpu")
    assert loader.images.dtype == torch.uint8 and loader.images.shape == (len(synthetic.train), 32, 32, 3)
    assert loader.images.data_ptr() == synthetic.train.images.ctypes.data  # shares the NumPy array
    assert not any(t.is_floating_point() for t in vars(loader).values() if isinstance(t, torch.Tensor))


def test_unknown_augmentation_is_a_clear_error(synthetic):
    with pytest.raises(ValueError, match="unknown augmentation"):
        DeviceLoader(synthetic.train, 64, augment="s11")


def test_fit_resumes_a_device_loader_exactly(synthetic, tmp_path):
    """utils.train checkpoints the loader's generator, so 1 epoch + resume == 2 epochs straight."""
    from utils.train import fit, seed_everything

    def run(epochs, resume=False):
        seed_everything(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
        train_loader, test_loader = make_device_loaders(synthetic, 100, "cpu", seed=0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return fit(model, train_loader, test_loader, optimizer, epochs, progress=False, log=None,
                   checkpoint_path=tmp_path / f"{epochs}.pt" if not resume else tmp_path / "1.pt", resume=resume)

    straight = run(2)
    run(1)
    resumed = run(2, resume=True)
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert resumed[-1][key] == pytest.approx(straight[-1][key], rel=1e-6)


def edge_crops(image: np.ndarray, shift: int = 3) -> dict:
    """Every shift (dy, dx) and flip of ``image`` with its edge pixels repeated: what shift_flip may return."""
    padded = np.pad(image, ((shift, shift), (shift, shift), (0, 0)), mode="edge")
    size = image.shape[0]
    crops = {}
    for dy in range(2 * shift + 1):
        for dx in range(2 * shift + 1):
            crop = padded[dy:dy + size, dx:dx + size]
            crops[(dy - shift, dx - shift, False)] = crop
            crops[(dy - shift, dx - shift, True)] = crop[:, ::-1]
    return crops


def test_shift_flip_is_the_albumentations_pipelines_shift_and_flip_on_both_routes():
    from utils.gpu_data import augment
    from utils.transforms import shift_flip_transform

    images = coded_images(400)
    pipeline = shift_flip_transform(seed=0)
    batched = augment(images, "shift_flip", torch.Generator().manual_seed(0))
    seen = {"albumentations": set(), "batched": set()}
    for i in range(len(images)):
        crops = edge_crops(images[i].numpy())
        expected = denormalize(pipeline(image=images[i].numpy())["image"]) * 255
        for route, out in (("albumentations", expected.round()), ("batched", batched[i].numpy())):
            match = [key for key, crop in crops.items() if np.array_equal(crop, out)]
            assert match, f"{route} output {i} is not a shift of at most 3 pixels, with edges repeated, and a flip"
            seen[route].add(match[0])
    for route, keys in seen.items():
        assert {dy for dy, _, _ in keys} == set(range(-3, 4)) == {dx for _, dx, _ in keys}, route
        assert {flip for *_, flip in keys} == {False, True}, route


def test_both_routes_build_from_one_description_so_a_change_reaches_both():
    from utils.augment import Augmentation
    from utils.gpu_data import augment
    from utils.transforms import train_transform

    spec = Augmentation(pad=2, cutout=4)  # not a session's: both routes must follow whatever the description says
    pipeline = train_transform(spec, seed=0)
    pad, crop, flip, hole = pipeline.transforms[:4]
    assert (pad.min_height, pad.min_width, pad.border_mode, crop.height, flip.p) == (36, 36, cv2.BORDER_REFLECT_101, 32, 0.5)
    assert hole.hole_height_range == hole.hole_width_range == (4, 4) and hole.p == 1.0
    out = augment(coded_images(2000), spec, torch.Generator().manual_seed(0)).long()
    assert ((out[..., 0] == 125).sum((1, 2)) == 16).all()  # one 4x4 hole in every image
    top_left = out[:, 10, 10, 0] - 10  # the source row of an output pixel away from the border: offset - pad
    assert set(top_left[out[:, 10, 10, 0] != 125].tolist()) == {-2, -1, 0, 1, 2}
    with pytest.raises(ValueError, match="crop and an affine"):
        Augmentation(pad=4, affine=AUGMENTATIONS_["s9"].affine)
