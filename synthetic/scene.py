"""The synthetic city's scene model: styles (light, colour response, camera), the pinhole camera, metric quads and
the segment canvas a frame is drawn into."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from synthetic import render as wr
from schemas.labels import LABEL_BY_NAME

L = {lab.name: lab.id for lab in LABEL_BY_NAME.values()}
ANOMALY_GROUP = 1
"""Segment group of test-anomaly pixels."""

STYLE_NAMES: tuple[str, ...] = ("day", "dusk", "overcast", "fog", "greencam")
"""Scene styles of the city: each has its own light, colour response, blur, noise and compression."""
_STYLE_WEIGHTS = np.array([0.3, 0.15, 0.2, 0.15, 0.2])

ANOMALY_SHAPES: tuple[str, ...] = ("blob", "crate", "tire", "rock", "cone")
"""Shape families of the test anomalies; none of them is used by the COCO-like photographs."""


def _unit(v) -> tuple[float, float, float]:
    a = np.asarray(v, dtype=np.float64)
    a = a / np.linalg.norm(a)
    return (float(a[0]), float(a[1]), float(a[2]))


@dataclass(frozen=True)
class Style:
    """One drawn scene style.

    Attributes:
        name: Style name (one of :data:`STYLE_NAMES`).
        light: Scene lighting.
        camera: Camera pipeline.
        sky_top: Sky colour at the top of the frame.
        sky_horizon: Sky colour at the horizon.
        cloudiness: 0..1.
    """

    name: str
    light: wr.Light
    camera: wr.CityCamera
    sky_top: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    cloudiness: float


def sample_style(rng: np.random.Generator, name: str | None = None) -> Style:
    """Draw a style (light direction, colours and camera) for one frame.

    Args:
        rng: Generator.
        name: Force a style; None draws one with the default weights.

    Returns:
        The style.
    """
    if name is None:
        name = STYLE_NAMES[int(rng.choice(len(STYLE_NAMES), p=_STYLE_WEIGHTS))]
    if name not in STYLE_NAMES:
        raise ValueError(f"unknown style {name!r}; allowed: {STYLE_NAMES}")
    side = float(rng.choice([-1.0, 1.0]))
    j = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
    mild = ((0.92, 0.06, 0.02), (0.04, 0.92, 0.04), (0.02, 0.08, 0.90))
    if name == "day":
        el, az = math.radians(j(30, 55)), math.radians(side * j(70, 150))
        sun = _unit((math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)))
        light = wr.Light(sun, 0.75, 0.42, (1.0, 0.96, 0.88), (0.82, 0.9, 1.08), 0.6)
        cam = wr.CityCamera(1.0 / (0.42 + 0.75 * sun[1]), (1.0, 1.0, 1.0), mild, 2.2, 1.1, 0.95, 0.12,
                            j(0.5, 0.7), 0.008, 0.002, int(rng.integers(88, 94)), 0.0, (0, 0, 0))
        return Style(name, light, cam, (0.22, 0.42, 0.85), (0.68, 0.79, 0.93), j(0.05, 0.5))
    if name == "dusk":
        el, az = math.radians(j(4, 12)), math.radians(side * j(40, 140))
        sun = _unit((math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)))
        light = wr.Light(sun, 0.7, 0.28, (1.0, 0.68, 0.42), (0.65, 0.68, 0.95), 0.65)
        cam = wr.CityCamera(0.85 / (0.28 + 0.7 * 0.35), (1.0, 0.97, 0.92), mild, 2.2, 1.05, 1.0, 0.2,
                            j(0.7, 0.9), 0.02, 0.006, int(rng.integers(82, 88)), 0.0, (0, 0, 0))
        return Style(name, light, cam, (0.2, 0.22, 0.45), (0.98, 0.62, 0.38), j(0.1, 0.5))
    if name in ("overcast", "fog"):
        sun = _unit((side * 0.3, 1.0, 0.2))
        light = wr.Light(sun, 0.12, 0.85, (1.0, 1.0, 1.0), (0.96, 0.98, 1.02), 0.15)
        fog = name == "fog"
        cam = wr.CityCamera(1.0 / 0.95, (1.0, 1.0, 1.02), mild, 2.2, 0.9 if fog else 0.95, 0.8, 0.1,
                            j(0.9, 1.2) if fog else j(0.6, 0.8), 0.012, 0.003, int(rng.integers(84, 90)),
                            j(35, 90) if fog else 0.0, (0.74, 0.76, 0.79))
        sky = ((0.76, 0.77, 0.8), (0.82, 0.83, 0.85)) if fog else ((0.62, 0.65, 0.7), (0.83, 0.84, 0.86))
        return Style(name, light, cam, sky[0], sky[1], 0.9)
    # greencam: daylight through a camera with a greenish, flat colour response (like many car rigs).
    el, az = math.radians(j(35, 60)), math.radians(side * j(60, 160))
    sun = _unit((math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)))
    light = wr.Light(sun, 0.65, 0.5, (1.0, 0.97, 0.9), (0.85, 0.92, 1.05), 0.5)
    green = ((0.80, 0.16, 0.04), (0.08, 0.86, 0.06), (0.04, 0.18, 0.78))
    cam = wr.CityCamera(0.95 / (0.5 + 0.65 * sun[1]), (0.9, 1.06, 0.92), green, 2.3, 0.85, 0.75, 0.25,
                        j(0.6, 0.8), 0.012, 0.003, int(rng.integers(90, 95)), 0.0, (0, 0, 0))
    return Style(name, light, cam, (0.35, 0.5, 0.75), (0.75, 0.8, 0.85), j(0.1, 0.6))


def _shade(light: wr.Light, normal) -> float:
    n = np.asarray(normal, dtype=np.float64)
    return float(light.ambient + light.sun_strength * max(0.0, float(np.dot(n, light.sun))))


@dataclass
class Cam:
    """Pinhole camera with a small yaw."""

    focal: float
    cx: float
    horizon: float
    height: float
    yaw: float

    def project(self, pts) -> np.ndarray:
        """Project world points (N, 3) to pixels (N, 2)."""
        p = np.asarray(pts, dtype=np.float64).reshape(-1, 3)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        xc = p[:, 0] * c - p[:, 2] * s
        zc = np.maximum(p[:, 0] * s + p[:, 2] * c, 0.05)
        return np.stack([self.cx + self.focal * xc / zc, self.horizon + self.focal * (self.height - p[:, 1]) / zc],
                        axis=1)

    def scale(self, z: float) -> float:
        """Pixels per metre at depth z."""
        return self.focal / max(z, 0.05)

    def ground_xz(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World X, Z and camera depth of the ground plane per pixel (huge above the horizon)."""
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        dy = yy + 0.5 - self.horizon
        below = dy > 0.5
        zc = np.where(below, self.focal * self.height / np.maximum(dy, 0.5), 1e4).astype(np.float32)
        xc = (xx + 0.5 - self.cx) / self.focal * zc
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return (xc * c + zc * s).astype(np.float32), (-xc * s + zc * c).astype(np.float32), zc


def _quad_x(x: float, y0: float, y1: float, z0: float, z1: float) -> list:
    """A vertical quad in the plane X = x (facade-like)."""
    return [(x, y0, z0), (x, y1, z0), (x, y1, z1), (x, y0, z1)]


def _quad_z(z: float, x0: float, x1: float, y0: float, y1: float) -> list:
    """A vertical quad in the plane Z = z (facing the camera)."""
    return [(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)]


def _quad_y(y: float, x0: float, x1: float, z0: float, z1: float) -> list:
    """A horizontal quad at height y."""
    return [(x0, y, z0), (x1, y, z0), (x1, y, z1), (x0, y, z1)]


def _vivid(rng: np.random.Generator, sat=(0.6, 1.0), val=(0.5, 0.95)) -> tuple[float, float, float]:
    return wr.vivid(rng, sat, val)


def _jitter(rng: np.random.Generator, c, a: float = 0.06) -> tuple[float, float, float]:
    return tuple(float(np.clip(x * (1 + rng.uniform(-a, a)), 0, 1)) for x in c)  # type: ignore[return-value]


_FACADES = ((0.62, 0.55, 0.45), (0.55, 0.55, 0.55), (0.55, 0.3, 0.22), (0.78, 0.76, 0.7), (0.8, 0.72, 0.5),
            (0.35, 0.35, 0.38), (0.6, 0.62, 0.58), (0.7, 0.6, 0.55))
_CARS = ((0.85, 0.85, 0.85), (0.08, 0.08, 0.09), (0.55, 0.56, 0.58), (0.3, 0.31, 0.33), (0.1, 0.15, 0.35),
         (0.55, 0.08, 0.07), (0.75, 0.75, 0.72), (0.2, 0.3, 0.22), (0.45, 0.4, 0.3))
_CLOTHES = ((0.1, 0.1, 0.12), (0.15, 0.2, 0.4), (0.5, 0.1, 0.1), (0.6, 0.55, 0.45), (0.3, 0.3, 0.3),
            (0.8, 0.8, 0.78), (0.2, 0.35, 0.25), (0.55, 0.35, 0.5))
_SKIN = ((0.85, 0.65, 0.52), (0.62, 0.44, 0.32), (0.38, 0.26, 0.18), (0.9, 0.75, 0.62))


class _Scene:
    """Mutable state while one frame is being drawn."""

    def __init__(self, rng: np.random.Generator, h: int, w: int, style: Style) -> None:
        self.rng, self.h, self.w, self.style = rng, h, w, style
        self.cam = Cam(focal=w * float(rng.uniform(1.0, 1.12)), cx=w * float(0.5 + rng.uniform(-0.02, 0.02)),
                       horizon=h * float(rng.uniform(0.40, 0.47)), height=float(rng.uniform(1.2, 1.4)),
                       yaw=math.radians(float(rng.uniform(-2.5, 2.5))))
        self.cv = wr.Canvas(h, w)
        self.inst_count: dict[int, int] = {}
        self.objects: list[tuple[float, callable]] = []  # (depth, draw function)
        self.light = style.light

    # -- helpers
    def poly3(self, seg: int, pts) -> None:
        self.cv.polygon(seg, [tuple(p) for p in self.cam.project(pts)])

    def shadow3(self, pts) -> None:
        self.cv.shadow_polygon([tuple(p) for p in self.cam.project(pts)])

    def new(self, label: str | int, material: int, color, *, normal=(0, 0, -1), depth: float = 50.0,
            inst: int = 0, **kw) -> int:
        lab = L[label] if isinstance(label, str) else int(label)
        return self.cv.new(lab, material, color, inst=inst, depth=depth, shade=_shade(self.light, normal), **kw)

    def instance(self, label: str) -> int:
        lab = L[label]
        k = self.inst_count.get(lab, 0)
        self.inst_count[lab] = k + 1
        return lab * 1000 + k

    def cast_shadow(self, footprint: np.ndarray, height: float) -> None:
        """Cast the shadow of a prism with ground footprint (N, 2) [X, Z] and the given height."""
        sx, sy, sz = self.light.sun
        if sy <= 0.02 or self.light.shadow_strength < 0.05:
            return
        horiz = math.hypot(sx, sz)
        length = min(height * horiz / sy, 60.0)
        d = np.array([-sx, -sz]) / max(horiz, 1e-6) * length
        hull = wr.convex_hull(np.concatenate([footprint, footprint + d], axis=0))
        self.shadow3([(x, 0.0, max(z, 0.5)) for x, z in hull])

    def sphere(self, x: float, y: float, z: float, r: float) -> tuple[float, float, float]:
        p = self.cam.project([(x, y, z)])[0]
        return (float(p[0]), float(p[1]), float(r * self.cam.scale(z)))
