"""A brain-like head phantom with a glioma: tissue classes, four MR contrasts, tumour labels.

Geometry is set in "brain units": the brain is (close to) the unit ball, mapped onto the
volume by per-subject semi-axes given as fractions of the volume's half-extent, so the
phantom looks the same at any grid size. Tissues: white matter, cortical grey matter with
sulci, deep grey nuclei, lateral ventricles, sulcal CSF and the interhemispheric fissure;
with ``skull=True`` also bone and scalp (the LGG-1p19qDeletion images are not
skull-stripped; the other releases are). The tumour is a lumpy ellipsoid (a flat-topped
one along z for bulky presets) with three nested sub-regions: enhancing rim, necrotic
core and surrounding oedema.

Intensities are relative signal levels per tissue and sequence (T1: white > grey > CSF;
T2: CSF > grey > white; FLAIR: CSF suppressed, oedema bright; T1c: enhancing rim
bright), blurred for partial volume, multiplied by a smooth bias field, with noise,
stored as int16 at a per-sequence scanner scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

SEQUENCES = ("t1", "t1c", "t2", "flair")

# tumour sub-region codes inside this module; layouts map them to a release's labels
NECROSIS, OEDEMA, ENHANCING = 1, 2, 3

# relative signal of each tissue per sequence: t1, t1c, t2, flair
_SIGNAL = {
    "background": (0.0, 0.0, 0.0, 0.0),
    "csf": (0.22, 0.24, 1.00, 0.10),
    "grey": (0.55, 0.57, 0.64, 0.62),
    "white": (0.82, 0.83, 0.42, 0.48),
    "deep_grey": (0.64, 0.65, 0.55, 0.56),
    "oedema": (0.48, 0.50, 0.86, 0.95),
    "enhancing": (0.56, 1.00, 0.72, 0.82),
    "necrosis": (0.28, 0.30, 0.96, 0.50),
    "bone": (0.06, 0.06, 0.05, 0.05),
    "scalp": (0.92, 0.93, 0.58, 0.74),
}
TISSUES = tuple(_SIGNAL)
# scanner scale of the stored int16 values per sequence
_SCALE = {"t1": 900.0, "t1c": 1100.0, "t2": 1500.0, "flair": 700.0}

# brain semi-axes as fractions of the volume half-extent (x: left-right, y: back-front,
# z: foot-head); with a 240 x 240 x 155 mm field of view that is about 70 x 85 x 68 mm
BRAIN_AXES = (0.58, 0.71, 0.88)


@dataclass(frozen=True)
class Anatomy:
    """One subject's head: brain size, position and tilt, ventricle size, texture seed."""

    axes: tuple[float, float, float]
    centre: tuple[float, float, float]
    yaw: float  # rotation about z, radians
    ventricles: float  # ventricle size factor
    texture_seed: int


@dataclass(frozen=True)
class Tumour:
    """One glioma, in brain units (the brain is the unit ball).

    ``radius`` is the in-plane semi-axis, ``elongation`` the second in-plane semi-axis
    over the first, ``half_height`` the z semi-axis, ``z_power`` the exponent of the z
    term (2: ellipsoid; larger: flatter top and bottom, more slices at full size).
    """

    centre: tuple[float, float, float]
    radius: float
    elongation: float
    half_height: float
    z_power: float
    yaw: float
    lumpiness: float
    texture_seed: int


def random_anatomy(rng: np.random.Generator) -> Anatomy:
    """A plausible head: size within +-4 %, shifted by up to 2 % of the field, turned +-6 deg."""
    axes = tuple(float(a * rng.uniform(0.96, 1.04)) for a in BRAIN_AXES)
    centre = (
        float(rng.uniform(-0.02, 0.02)),
        float(rng.uniform(-0.02, 0.02)),
        float(rng.uniform(-0.02, 0.02)),
    )
    return Anatomy(
        axes=axes,  # type: ignore[arg-type]
        centre=centre,
        yaw=float(np.deg2rad(rng.uniform(-6.0, 6.0))),
        ventricles=float(rng.uniform(0.8, 1.25)),
        texture_seed=int(rng.integers(2**31)),
    )


@lru_cache(maxsize=2)
def _brain_coordinates(shape: tuple[int, int, int], anatomy: Anatomy) -> tuple[np.ndarray, ...]:
    """Voxel centres in brain units (x, y, z), float32, each of ``shape`` (cached for the
    few calls per exam; read-only)."""
    axes = [((np.arange(n, dtype=np.float32) + 0.5) / n) * 2.0 - 1.0 for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    x = x - anatomy.centre[0]
    y = y - anatomy.centre[1]
    z = z - anatomy.centre[2]
    c, s = np.float32(np.cos(anatomy.yaw)), np.float32(np.sin(anatomy.yaw))
    xr = (c * x + s * y) / anatomy.axes[0]
    yr = (-s * x + c * y) / anatomy.axes[1]
    zr = z / anatomy.axes[2]
    coordinates = tuple(np.broadcast_to(v, shape).astype(np.float32) for v in (xr, yr, zr))
    for array in coordinates:
        array.flags.writeable = False  # shared through the cache
    return coordinates


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation."""
    field = ndimage.gaussian_filter(
        rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap"
    )
    return field / max(float(field.std()), 1e-6)


def _ellipsoid(x, y, z, centre, semi) -> np.ndarray:
    return (
        ((x - centre[0]) / semi[0]) ** 2
        + ((y - centre[1]) / semi[1]) ** 2
        + ((z - centre[2]) / semi[2]) ** 2
    ) <= 1.0


def tissue_map(
    shape: tuple[int, int, int], anatomy: Anatomy, skull: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Tissue class per voxel (index into TISSUES) and the brain mask of the subject."""
    x, y, z = _brain_coordinates(shape, anatomy)
    rng = np.random.default_rng(anatomy.texture_seed)
    grid = min(shape)
    rho = np.sqrt(x * x + y * y + z * z)
    # folded surface: the radius wobbles a little, grey matter carries sulci
    rho_folded = rho - 0.035 * _smooth_noise(rng, shape, max(grid / 24.0, 1.0))
    sulci = _smooth_noise(rng, shape, max(grid / 48.0, 0.8)) > 1.1
    tissue = np.zeros(shape, dtype=np.uint8)
    index = {name: i for i, name in enumerate(TISSUES)}
    brain = rho_folded <= 1.0
    tissue[brain] = index["white"]
    cortex = brain & (rho_folded > 0.84)
    tissue[cortex] = index["grey"]
    tissue[cortex & sulci] = index["csf"]
    tissue[brain & (rho_folded > 0.965)] = index["csf"]
    fissure = brain & (np.abs(x) < 0.035) & (z > -0.35) & (rho > 0.3)
    tissue[fissure] = index["csf"]
    for side in (-1.0, 1.0):
        tissue[_ellipsoid(x, y, z, (side * 0.24, 0.02, -0.02), (0.12, 0.2, 0.15))] = index[
            "deep_grey"
        ]
    v = anatomy.ventricles
    for side in (-1.0, 1.0):
        tissue[_ellipsoid(x, y, z, (side * 0.09, 0.04, 0.16), (0.06 * v, 0.34, 0.15 * v))] = index[
            "csf"
        ]
    if skull:
        tissue[(rho > 1.0) & (rho <= 1.09)] = index["bone"]
        tissue[(rho > 1.09) & (rho <= 1.16)] = index["scalp"]
    return tissue, brain


def tumour_labels(
    shape: tuple[int, int, int], anatomy: Anatomy, tumour: Tumour, brain: np.ndarray
) -> np.ndarray:
    """Sub-region code per voxel (0, NECROSIS, OEDEMA, ENHANCING), inside the brain only."""
    x, y, z = _brain_coordinates(shape, anatomy)
    dx, dy, dz = x - tumour.centre[0], y - tumour.centre[1], z - tumour.centre[2]
    c, s = np.cos(tumour.yaw), np.sin(tumour.yaw)
    u = (c * dx + s * dy) / tumour.radius
    w = (-s * dx + c * dy) / (tumour.radius * tumour.elongation)
    h = np.abs(dz) / tumour.half_height
    level = u * u + w * w + h**tumour.z_power
    rng = np.random.default_rng(tumour.texture_seed)
    level = level * (
        1.0 + tumour.lumpiness * _smooth_noise(rng, shape, max(min(shape) / 20.0, 1.0))
    )
    labels = np.zeros(shape, dtype=np.uint8)
    labels[(level <= 1.0) & brain] = OEDEMA
    labels[(level <= 0.36) & brain] = ENHANCING
    labels[(level <= 0.12) & brain] = NECROSIS
    return labels


@dataclass
class Rendered:
    """One exam: four int16 sequences, tumour sub-region codes, and the brain mask."""

    images: dict[str, np.ndarray]
    labels: np.ndarray
    brain: np.ndarray


def render(
    shape: tuple[int, int, int],
    anatomy: Anatomy,
    tumour: Tumour,
    rng: np.random.Generator,
    *,
    skull: bool = False,
) -> Rendered:
    """The four sequences, the tumour sub-region codes and the brain mask of one exam."""
    tissue, brain = tissue_map(shape, anatomy, skull)
    labels = tumour_labels(shape, anatomy, tumour, brain)
    index = {name: i for i, name in enumerate(TISSUES)}
    tissue[labels == OEDEMA] = index["oedema"]
    tissue[labels == ENHANCING] = index["enhancing"]
    tissue[labels == NECROSIS] = index["necrosis"]
    head = tissue > 0
    x, y, z = _brain_coordinates(shape, anatomy)
    coefficients = rng.uniform(-0.08, 0.08, size=4).astype(np.float32)
    bias = (
        1.0
        + coefficients[0] * x
        + coefficients[1] * y
        + coefficients[2] * z
        + coefficients[3] * x * y
    )
    gain = float(rng.uniform(0.9, 1.1))
    table = np.array([_SIGNAL[name] for name in TISSUES], dtype=np.float32)
    images: dict[str, np.ndarray] = {}
    for k, sequence in enumerate(SEQUENCES):
        signal = ndimage.gaussian_filter(table[tissue, k], 0.6)
        signal = signal * bias + rng.normal(0.0, 0.015, size=shape).astype(np.float32)
        if skull:
            signal = np.abs(signal)  # magnitude images: Rician-like noise in the air too
        else:
            signal = np.where(head, np.maximum(signal, 0.0), 0.0)  # skull-stripped release
        images[sequence] = np.rint(signal * _SCALE[sequence] * gain).astype(np.int16)
    return Rendered(images, labels, brain)
