"""Rendering core of the synthetic city: segment canvases, textures, lighting and the two camera pipelines.

Everything here is a pure function of its arguments (numpy arrays and :class:`numpy.random.Generator`), so a
frame's bytes depend only on the run seed and the frame's key. Drawing uses PIL polygons into an integer
*segment* map; every segment carries its label, instance, material, colour, depth and shading in lookup tables,
and the image is then rendered for all pixels at once with numpy (no per-pixel Python loops).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

# ----------------------------------------------------------------------------------------------- materials
SKY, ASPHALT, PAVING, FACADE, GLASS, FOLIAGE, GRASS, PAINT, RUBBER, CONCRETE, CLOTH, MARKING, SIGN, LAMP, \
    EGO, SLATS, SKIN, WOOD, ROCK, MOTTLE, PLASTIC, FUR, SOIL = range(23)
N_MATERIALS = 23

# Multiplicative texture amplitudes per material: (fine grain, medium blotches, low-frequency variation).
_TEX_AMP = np.zeros((N_MATERIALS, 3), dtype=np.float32)
_TEX_AMP[SKY] = (0.004, 0.0, 0.0)
_TEX_AMP[ASPHALT] = (0.09, 0.06, 0.07)
_TEX_AMP[PAVING] = (0.06, 0.05, 0.06)
_TEX_AMP[FACADE] = (0.03, 0.05, 0.09)
_TEX_AMP[GLASS] = (0.02, 0.08, 0.12)
_TEX_AMP[FOLIAGE] = (0.22, 0.30, 0.12)
_TEX_AMP[GRASS] = (0.18, 0.16, 0.12)
_TEX_AMP[PAINT] = (0.015, 0.02, 0.04)
_TEX_AMP[RUBBER] = (0.08, 0.05, 0.02)
_TEX_AMP[CONCRETE] = (0.05, 0.06, 0.07)
_TEX_AMP[CLOTH] = (0.05, 0.08, 0.05)
_TEX_AMP[MARKING] = (0.06, 0.20, 0.10)
_TEX_AMP[SIGN] = (0.02, 0.02, 0.02)
_TEX_AMP[LAMP] = (0.01, 0.0, 0.0)
_TEX_AMP[EGO] = (0.01, 0.02, 0.05)
_TEX_AMP[SLATS] = (0.05, 0.05, 0.05)
_TEX_AMP[SKIN] = (0.02, 0.03, 0.02)
_TEX_AMP[WOOD] = (0.08, 0.12, 0.05)
_TEX_AMP[ROCK] = (0.25, 0.22, 0.08)
_TEX_AMP[MOTTLE] = (0.10, 0.35, 0.10)
_TEX_AMP[PLASTIC] = (0.02, 0.03, 0.03)
_TEX_AMP[FUR] = (0.14, 0.10, 0.05)
_TEX_AMP[SOIL] = (0.12, 0.12, 0.10)

GROUND_MATERIALS = (ASPHALT, PAVING, GRASS, MARKING, SOIL)

# Pattern kinds applied per segment (second colour ``color2``).
PAT_NONE, PAT_STRIPES, PAT_CHECKER, PAT_SPOTS, PAT_RINGS = range(5)


@dataclass
class Canvas:
    """An integer segment map being drawn, with one row of attributes per segment.

    Attributes:
        height: Image height H.
        width: Image width W.
        image: PIL ``I`` image (H, W) that receives segment ids.
        shadow: PIL ``L`` image (H, W): 255 where a cast shadow falls.
    """

    height: int
    width: int
    image: Image.Image = field(init=False)
    draw: ImageDraw.ImageDraw = field(init=False)
    shadow: Image.Image = field(init=False)
    shadow_draw: ImageDraw.ImageDraw = field(init=False)
    rows: list[tuple] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.image = Image.new("I", (self.width, self.height), 0)
        self.draw = ImageDraw.Draw(self.image)
        self.shadow = Image.new("L", (self.width, self.height), 0)
        self.shadow_draw = ImageDraw.Draw(self.shadow)

    def new(self, label: int, material: int, color: tuple[float, float, float], *, inst: int = 0,
            depth: float = 1e4, shade: float = 1.0, pattern: int = PAT_NONE,
            color2: tuple[float, float, float] = (0.0, 0.0, 0.0), period: float = 0.0, angle: float = 0.0,
            sphere: tuple[float, float, float] = (0.0, 0.0, 0.0), plane_x: float = 0.0,
            group: int = 0) -> int:
        """Register a segment and return its id (the value to draw with)."""
        self.rows.append((label, material, color, inst, depth, shade, pattern, color2, period, angle, sphere,
                          plane_x, group))
        return len(self.rows) - 1

    def polygon(self, seg: int, pts) -> None:
        """Fill a polygon (sequence of (x, y)) with segment ``seg``."""
        if len(pts) >= 3:
            self.draw.polygon([(float(x), float(y)) for x, y in pts], fill=seg)

    def ellipse(self, seg: int, cx: float, cy: float, rx: float, ry: float) -> None:
        """Fill an axis-aligned ellipse with segment ``seg``."""
        if rx > 0.25 and ry > 0.25:
            self.draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=seg)

    def line(self, seg: int, pts, width: float) -> None:
        """Draw a thick polyline with segment ``seg``."""
        self.draw.line([(float(x), float(y)) for x, y in pts], fill=seg, width=max(1, int(round(width))))

    def shadow_polygon(self, pts) -> None:
        """Mark a cast-shadow polygon."""
        if len(pts) >= 3:
            self.shadow_draw.polygon([(float(x), float(y)) for x, y in pts], fill=255)

    def tables(self) -> dict[str, np.ndarray]:
        """Segment attributes as arrays indexed by segment id."""
        r = self.rows
        return {
            "label": np.array([x[0] for x in r], dtype=np.int32),
            "material": np.array([x[1] for x in r], dtype=np.int32),
            "color": np.array([x[2] for x in r], dtype=np.float32).reshape(-1, 3),
            "inst": np.array([x[3] for x in r], dtype=np.int32),
            "depth": np.array([x[4] for x in r], dtype=np.float32),
            "shade": np.array([x[5] for x in r], dtype=np.float32),
            "pattern": np.array([x[6] for x in r], dtype=np.int32),
            "color2": np.array([x[7] for x in r], dtype=np.float32).reshape(-1, 3),
            "period": np.array([x[8] for x in r], dtype=np.float32),
            "angle": np.array([x[9] for x in r], dtype=np.float32),
            "sphere": np.array([x[10] for x in r], dtype=np.float32).reshape(-1, 3),
            "plane_x": np.array([x[11] for x in r], dtype=np.float32),
            "group": np.array([x[12] for x in r], dtype=np.int32),
        }

    def segments(self) -> np.ndarray:
        """The segment map, int32 (H, W)."""
        return np.asarray(self.image, dtype=np.int32)


# ------------------------------------------------------------------------------------------------- noise
def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-variance value noise with feature size ``cell`` pixels.

    Args:
        rng: Generator.
        h: Height.
        w: Width.
        cell: Feature size in pixels (>= 1).

    Returns:
        float32 array (H, W).
    """
    gh, gw = max(2, int(math.ceil(h / cell)) + 1), max(2, int(math.ceil(w / cell)) + 1)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((w, h), Image.BICUBIC)
    out = np.asarray(img, dtype=np.float32)
    std = float(out.std())
    return (out - float(out.mean())) / (std if std > 1e-6 else 1.0)


def rgb_to_ycc(rgb: np.ndarray) -> np.ndarray:
    """BT.601 full-range RGB -> YCbCr on floats in 0..1 (Cb, Cr centred on 0)."""
    m = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
                 dtype=np.float32)
    return rgb @ m.T


def ycc_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycc`."""
    m = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]], dtype=np.float32)
    return ycc @ m.T


def jpeg_roundtrip(rgb8: np.ndarray, quality: int, subsampling: int = 2) -> np.ndarray:
    """Compress and decompress with baseline JPEG (fixed settings, so deterministic).

    Args:
        rgb8: uint8 (H, W, 3).
        quality: JPEG quality 1..100.
        subsampling: PIL subsampling code (0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0).

    Returns:
        uint8 (H, W, 3).
    """
    return np.asarray(Image.open(io.BytesIO(encode_jpeg(rgb8, quality, subsampling))).convert("RGB"))


def encode_jpeg(rgb8: np.ndarray, quality: int, subsampling: int = 2) -> bytes:
    """Encode RGB as baseline JPEG with fixed settings (no optimisation tables, no progressive)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb8), mode="RGB").save(
        buf, format="JPEG", quality=int(quality), subsampling=int(subsampling), optimize=False)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class Light:
    """Scene lighting.

    Attributes:
        sun: Unit vector towards the sun in world coordinates (X right, Y up, Z forward).
        sun_strength: Direct light weight.
        ambient: Ambient light weight.
        tint: RGB tint of the direct light.
        sky_tint: RGB tint of the ambient light.
        shadow_strength: Fraction of light removed in cast shadows.
    """

    sun: tuple[float, float, float]
    sun_strength: float
    ambient: float
    tint: tuple[float, float, float]
    sky_tint: tuple[float, float, float]
    shadow_strength: float


def _apply_light(rgb: np.ndarray, seg: np.ndarray, mat: np.ndarray, tab: dict[str, np.ndarray], xx: np.ndarray,
                 yy: np.ndarray, light: Light, shadow: np.ndarray | None) -> np.ndarray:
    """Light the radiance of :func:`render_segments` (sky and lamps are emissive and stay as they are)."""
    # Lighting: flat faces get the segment shade, spheres get per-pixel Lambert shading.
    shade = tab["shade"][seg]
    sph = tab["sphere"][seg]
    is_sphere = (sph[..., 2] > 0) & (tab["pattern"][seg] != PAT_RINGS)
    if np.any(is_sphere):
        r = np.maximum(sph[..., 2], 1e-3)
        nx = np.clip((xx - sph[..., 0]) / r, -1, 1)
        ny = np.clip(-(yy - sph[..., 1]) / r, -1, 1)
        nz = -np.sqrt(np.clip(1 - nx ** 2 - ny ** 2, 0.05, 1))
        sx, sy, sz = light.sun
        lam = np.clip(nx * sx + ny * sy + nz * sz, 0, 1)
        sphere_shade = light.ambient + light.sun_strength * lam
        shade = np.where(is_sphere, sphere_shade, shade)
    emissive = (mat == SKY) | (mat == LAMP)
    direct = np.clip((shade - light.ambient) / max(light.sun_strength, 1e-3), 0, 1)
    if shadow is not None:
        ground = np.isin(mat, GROUND_MATERIALS)
        direct = np.where(ground, direct * (1 - light.shadow_strength * shadow), direct)
    amb = np.asarray(light.sky_tint, np.float32) * light.ambient
    sun = np.asarray(light.tint, np.float32) * light.sun_strength
    illum = amb[None, None, :] + direct[..., None] * sun[None, None, :]
    rgb = np.where(emissive[..., None], rgb, rgb * illum)
    return rgb


def render_segments(seg: np.ndarray, tab: dict[str, np.ndarray], rng: np.random.Generator, light: Light,
                    ground_xz: tuple[np.ndarray, np.ndarray] | None, shadow: np.ndarray | None,
                    focal: float, cx: float, horizon: float, cam_h: float,
                    sky: tuple[np.ndarray, np.ndarray] | None = None, cloudiness: float = 0.0) -> np.ndarray:
    """Turn a segment map into linear scene radiance with textures, patterns and lighting.

    Args:
        seg: int32 (H, W) segment ids.
        tab: Segment attribute tables from :meth:`Canvas.tables`.
        rng: Generator for the texture noise.
        light: Lighting.
        ground_xz: Lateral X and depth Z (metres) of the ground plane per pixel, each (H, W), or None.
        shadow: float32 (H, W) in 0..1, cast shadow coverage, or None.
        focal: Focal length in pixels (for facade coordinates).
        cx: Principal point column.
        horizon: Horizon row.
        cam_h: Camera height in metres.
        sky: (top colour, horizon colour) of the sky gradient, RGB floats, or None.
        cloudiness: 0..1 amount of clouds in the sky.

    Returns:
        float32 (H, W, 3) linear radiance, roughly 0..1.
    """
    h, w = seg.shape
    mat = tab["material"][seg]
    base = tab["color"][seg]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    # Textures: per-material amplitudes of three noise octaves.
    fine = rng.standard_normal((h, w)).astype(np.float32)
    mid = smooth_noise(rng, h, w, max(2.0, w / 96))
    low = smooth_noise(rng, h, w, max(4.0, w / 14))
    amp = _TEX_AMP[mat]
    tex = 1.0 + amp[..., 0] * fine + amp[..., 1] * mid + amp[..., 2] * low
    # Foliage and rock get clumps: dark gaps where the medium noise is low.
    clumpy = (mat == FOLIAGE) | (mat == ROCK)
    tex = np.where(clumpy, tex * np.clip(0.75 + 0.35 * mid, 0.35, 1.3), tex)

    # Patterns with a second colour.
    pattern = tab["pattern"][seg]
    col = base.copy()
    if np.any(pattern != PAT_NONE):
        period = np.maximum(tab["period"][seg], 1e-3)
        ang = tab["angle"][seg]
        u = (xx * np.cos(ang) + yy * np.sin(ang)) / period
        v = (-xx * np.sin(ang) + yy * np.cos(ang)) / period
        sph = tab["sphere"][seg]
        rr = np.hypot(xx - sph[..., 0], yy - sph[..., 1]) / period
        sel = np.zeros((h, w), dtype=bool)
        sel |= (pattern == PAT_STRIPES) & ((u % 1.0) < 0.5)
        sel |= (pattern == PAT_CHECKER) & (((np.floor(u) + np.floor(v)) % 2) == 0)
        sel |= (pattern == PAT_SPOTS) & (smooth_noise(rng, h, w, max(2.0, w / 60)) > 0.55)
        sel |= (pattern == PAT_RINGS) & ((rr % 1.0) < 0.35)
        col = np.where(sel[..., None], tab["color2"][seg], col)

    # Ground patterns in world coordinates (paving joints, tyre tracks).
    if ground_xz is not None:
        gx, gz = ground_xz
        footprint = gz / focal  # metres per pixel
        fade = np.clip(1.0 - footprint / 0.12, 0.0, 1.0)
        joints = (((gx / 0.6) % 1.0) < 0.07) | (((gz / 0.6) % 1.0) < 0.07)
        tex = np.where((mat == PAVING) & joints, tex * (1.0 - 0.28 * fade), tex)
        period = tab["period"][seg]
        tracks = np.exp(-((np.abs(((gx - period) % 3.5) - 1.75) - 0.8) ** 2) / 0.08)
        tex = np.where(mat == ASPHALT, tex * (1.0 - 0.10 * tracks), tex)
    # Facade floors and pilasters in facade-plane coordinates.
    plane_x = tab["plane_x"][seg]
    fac = (mat == FACADE) & (plane_x != 0)
    if np.any(fac):
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(fac, focal * plane_x / np.where(np.abs(xx - cx) < 1e-3, 1e-3, xx - cx), 0.0)
            y_world = cam_h - (yy - horizon) * z / focal
        ledge = (np.abs(z) > 0) & (((y_world / 3.2) % 1.0) < 0.06) & (np.abs(z) / focal < 0.1)
        tex = np.where(fac & ledge, tex * 0.82, tex)
    if np.any(mat == SLATS):
        slats = (((xx + 0.5 * yy) / max(1.5, w / 300)) % 1.0) < 0.45
        tex = np.where((mat == SLATS) & slats, tex * 0.7, tex)
    if np.any(mat == WOOD):
        grain = np.sin(yy * 0.9 + 2.5 * mid) * 0.5 + 0.5
        tex = np.where(mat == WOOD, tex * (0.85 + 0.25 * grain), tex)

    rgb = col * tex[..., None]

    # Sky gradient and clouds (emissive, not lit).
    if sky is not None:
        t = np.clip(yy / max(horizon, 1.0), 0.0, 1.0)[..., None]
        grad = sky[0][None, None, :] * (1 - t) + sky[1][None, None, :] * t
        clouds = np.clip((smooth_noise(rng, h, w, w / 5) + 0.6 * low - (1.2 - 2.0 * cloudiness)) * 0.8, 0, 1)
        cloud_col = np.array([0.92, 0.92, 0.94], dtype=np.float32) * (0.8 + 0.2 * light.ambient)
        sky_rgb = grad * (1 - clouds[..., None]) + cloud_col * clouds[..., None]
        rgb = np.where((mat == SKY)[..., None], sky_rgb, rgb)

    rgb = _apply_light(rgb, seg, mat, tab, xx, yy, light, shadow)
    return rgb.astype(np.float32)


@dataclass(frozen=True)
class CityCamera:
    """The city camera: colour response, optics and compression of one scene style.

    Attributes:
        exposure: Linear gain.
        white_balance: Per-channel gains.
        color_matrix: 3x3 matrix applied to linear RGB (cross-talk of the sensor).
        gamma: Display gamma.
        contrast: Contrast around mid-grey after gamma.
        saturation: Saturation factor after gamma.
        vignette: Corner darkening 0..1.
        blur: Gaussian blur sigma in pixels at 512 px width (scaled with the width).
        noise: Luminance noise sigma (0..1 scale).
        chroma_noise: Chroma noise sigma (0..1 scale).
        jpeg_quality: JPEG quality of the in-camera compression.
        fog_distance: Distance in metres at which fog transmits 1/e of the light (0 = no fog).
        fog_color: RGB of the fog.
    """

    exposure: float
    white_balance: tuple[float, float, float]
    color_matrix: tuple[tuple[float, float, float], ...]
    gamma: float
    contrast: float
    saturation: float
    vignette: float
    blur: float
    noise: float
    chroma_noise: float
    jpeg_quality: int
    fog_distance: float
    fog_color: tuple[float, float, float]


def city_camera(radiance: np.ndarray, depth: np.ndarray, cam: CityCamera, rng: np.random.Generator) -> np.ndarray:
    """Apply fog, colour response, vignetting, lens blur, sensor noise and JPEG compression.

    Args:
        radiance: float32 (H, W, 3) linear scene radiance.
        depth: float32 (H, W) distance in metres (large for sky).
        cam: Camera settings.
        rng: Generator for the sensor noise.

    Returns:
        uint8 (H, W, 3) image.
    """
    h, w, _ = radiance.shape
    x = radiance
    if cam.fog_distance > 0:
        trans = np.exp(-depth / cam.fog_distance)[..., None]
        x = x * trans + np.asarray(cam.fog_color, np.float32) * (1 - trans)
    x = x * cam.exposure * np.asarray(cam.white_balance, np.float32)
    x = x @ np.asarray(cam.color_matrix, np.float32).T
    x = np.clip(x, 0, None)
    x = x / (1.0 + 0.35 * x)  # soft shoulder
    x = x ** (1.0 / cam.gamma)
    mean = x.mean(axis=2, keepdims=True)
    x = mean + cam.saturation * (x - mean)
    x = 0.5 + cam.contrast * (x - 0.5)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (w / 2)) ** 2
    x = x * (1.0 - cam.vignette * r2)[..., None]
    sigma = cam.blur * w / 512
    if sigma > 0.05:
        x = ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="nearest")
    lum = rng.standard_normal((h, w)).astype(np.float32) * cam.noise * np.sqrt(np.clip(mean[..., 0], 0.05, 1))
    chroma = rng.standard_normal((h, w, 3)).astype(np.float32) * cam.chroma_noise
    x = x + lum[..., None] + chroma
    out = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
    return jpeg_roundtrip(out, cam.jpeg_quality, subsampling=2)


@dataclass(frozen=True)
class PhotoCamera:
    """The consumer camera of the COCO-like photographs.

    Attributes:
        saturation: Strong saturation boost.
        contrast: Contrast around mid-grey.
        gamma: Display gamma.
        sharpen: Unsharp-mask percent (hard edges, halos).
        noise: Luminance noise sigma.
        chroma_noise: Blotchy chroma noise sigma.
        jpeg_quality: JPEG quality of the written file.
        warmth: Colour cast (>1 warm, <1 cool).
    """

    saturation: float
    contrast: float
    gamma: float
    sharpen: int
    noise: float
    chroma_noise: float
    jpeg_quality: int
    warmth: float


def photo_camera(radiance: np.ndarray, cam: PhotoCamera, rng: np.random.Generator) -> bytes:
    """Develop a COCO-like photograph: saturated colours, sharpening, blotchy chroma noise, JPEG file.

    Args:
        radiance: float32 (H, W, 3) linear radiance.
        cam: Camera settings.
        rng: Generator for the noise.

    Returns:
        JPEG bytes.
    """
    h, w, _ = radiance.shape
    x = np.clip(radiance, 0, None) * np.asarray([cam.warmth, 1.0, 2.0 - cam.warmth], np.float32)
    x = x / (1.0 + 0.15 * x)
    x = x ** (1.0 / cam.gamma)
    mean = x.mean(axis=2, keepdims=True)
    x = mean + cam.saturation * (x - mean)
    x = 0.5 + cam.contrast * (x - 0.5)
    img8 = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    img = Image.fromarray(img8, mode="RGB").filter(ImageFilter.UnsharpMask(radius=2, percent=cam.sharpen,
                                                                             threshold=1))
    x = np.asarray(img, dtype=np.float32) / 255.0
    ycc = rgb_to_ycc(x)
    ch = rng.standard_normal((h // 3 + 1, w // 3 + 1, 2)).astype(np.float32) * cam.chroma_noise
    ch = np.repeat(np.repeat(ch, 3, axis=0), 3, axis=1)[:h, :w]
    ycc[..., 0] += rng.standard_normal((h, w)).astype(np.float32) * cam.noise
    ycc[..., 1:] += ch
    out = np.clip(np.round(ycc_to_rgb(ycc) * 255), 0, 255).astype(np.uint8)
    return encode_jpeg(out, cam.jpeg_quality, subsampling=2)


# -------------------------------------------------------------------------------------------- geometry
def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull of 2-D points (monotone chain), counter-clockwise.

    Args:
        points: float array (N, 2).

    Returns:
        float array (M, 2).
    """
    pts = sorted(set(map(tuple, np.round(np.asarray(points, dtype=np.float64), 6))))
    if len(pts) <= 2:
        return np.asarray(pts, dtype=np.float64)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.asarray(lower[:-1] + upper[:-1], dtype=np.float64)


def blob_polygon(rng: np.random.Generator, n: int = 24, roughness: float = 0.3, harmonics: int = 4) -> np.ndarray:
    """An irregular closed outline in the unit disc (random radial harmonics).

    Args:
        rng: Generator.
        n: Number of vertices.
        roughness: Amplitude of the radius modulation.
        harmonics: Number of harmonics.

    Returns:
        float array (n, 2), coordinates in about -1..1.
    """
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(1, harmonics + 1):
        r += roughness / k * rng.uniform(-1, 1) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.35, None)
    r = r / r.max()
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def vivid(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> tuple[float, float, float]:
    """A random saturated colour: hue uniform, saturation and value uniform in ``sat`` and ``val``; RGB in [0, 1]."""
    h, s, v = rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]))
