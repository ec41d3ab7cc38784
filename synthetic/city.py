"""Procedural driving scenes of the synthetic city, and the test anomalies placed in them.

A scene is built in metric 3-D (X right, Y up, Z forward; camera at X=0, Y=cam_h, Z=0 with a small yaw) and
projected with a pinhole camera, so road, sidewalks, facades, cars and people keep a consistent perspective.
Shapes are drawn back to front into a segment canvas (:class:`synthetic.render.Canvas`), rendered with
textures and the scene light, and then passed through the style's camera (fog, colour response, blur, noise,
JPEG). Test anomalies are drawn into the same canvas *before* the camera, so they carry the city's look.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import ImageFilter

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
    h, s, v = rng.uniform(0, 1), rng.uniform(*sat), rng.uniform(*val)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]))


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


# --------------------------------------------------------------------------------------------- layout
def _draw_layout(sc: _Scene) -> dict:
    rng, cam, cv = sc.rng, sc.cam, sc.cv
    st = sc.style
    z_near, z_end = 2.0, float(rng.uniform(90, 200))
    n_lanes = int(rng.choice([2, 2, 3, 4]))
    lane_w = float(rng.uniform(3.1, 3.6))
    ego_lane = int(rng.integers(0, n_lanes))
    drive_left, drive_right = -(ego_lane + 0.5) * lane_w, (n_lanes - ego_lane - 0.5) * lane_w
    # A parking strip outside the driving lanes on some sides keeps parked cars out of the traffic.
    parking = {-1: bool(rng.random() < 0.6), 1: bool(rng.random() < 0.6)}
    x_left = drive_left - (2.3 if parking[-1] else 0.0)
    x_right = drive_right + (2.3 if parking[1] else 0.0)
    up = (0, 1, 0)

    # Sky and far ground.
    sky = cv.new(L["sky"], wr.SKY, (0.5, 0.6, 0.8), depth=1e4)
    cv.polygon(sky, [(0, 0), (sc.w, 0), (sc.w, sc.h), (0, sc.h)])
    ground = sc.new("terrain", wr.GRASS, _jitter(rng, (0.32, 0.42, 0.16), 0.15), normal=up)
    sc.poly3(ground, _quad_y(0, -400, 400, z_near, z_end + 60))

    # Far backdrop: skyline or tree line across the end of the street.
    bx = -160.0
    while bx < 160:
        bw = float(rng.uniform(8, 30))
        if rng.random() < 0.55:
            seg = sc.new("building", wr.FACADE, _jitter(rng, _FACADES[int(rng.integers(len(_FACADES)))], 0.1),
                         depth=z_end)
            sc.poly3(seg, _quad_z(z_end, bx, bx + bw, 0, float(rng.uniform(8, 28))))
        else:
            seg = sc.new("vegetation", wr.FOLIAGE, _jitter(rng, (0.2, 0.3, 0.12), 0.2), depth=z_end)
            hgt = float(rng.uniform(6, 14))
            sc.poly3(seg, _quad_z(z_end, bx, bx + bw, 0, hgt * 0.7))
            for k in range(4):
                cx = bx + bw * (k + 0.5) / 4
                p = cam.project([(cx, hgt * 0.7, z_end)])[0]
                r = bw / 4 * cam.scale(z_end) * 0.9
                cv.ellipse(seg, p[0], p[1], r, r * float(rng.uniform(0.8, 1.3)))
        bx += bw

    # Road with markings and a tyre-track phase in `period`.
    road_col = _jitter(rng, (0.33, 0.33, 0.35) if rng.random() < 0.7 else (0.42, 0.41, 0.4), 0.12)
    road = sc.new("road", wr.ASPHALT, road_col, normal=up, period=float(-x_left % 3.5))
    sc.poly3(road, _quad_y(0, x_left, x_right, z_near, z_end))
    paint = sc.new("road", wr.MARKING, (0.85, 0.85, 0.82), normal=up)
    for edge, sgn in ((drive_left, 1), (drive_right, -1)):
        xe = edge + sgn * (0.3 if edge in (x_left, x_right) else -0.05)
        sc.poly3(paint, _quad_y(0.001, xe - 0.08, xe + 0.08, z_near, z_end))
    dash_len, gap = float(rng.uniform(2.5, 4)), float(rng.uniform(5, 9))
    off = float(rng.uniform(0, dash_len + gap))
    for k in range(1, n_lanes):
        xl = drive_left + k * lane_w
        z = z_near - off
        while z < z_end:
            sc.poly3(paint, _quad_y(0.001, xl - 0.07, xl + 0.07, max(z, z_near), min(z + dash_len, z_end)))
            z += dash_len + gap
    crosswalk = None
    if rng.random() < 0.35:
        zc = float(rng.uniform(12, 40))
        crosswalk = zc
        x = x_left + 0.5
        while x < x_right - 0.5:
            sc.poly3(paint, _quad_y(0.002, x, x + 0.5, zc, zc + 3.5))
            x += 1.0
    # Manholes and patches.
    for _ in range(int(rng.integers(0, 4))):
        zp = float(rng.uniform(6, 40))
        xp = float(rng.uniform(x_left + 1, x_right - 1))
        patch = sc.new("road", wr.ASPHALT, _jitter(rng, road_col, 0.15), normal=up)
        wdt, ln = float(rng.uniform(0.8, 3)), float(rng.uniform(0.8, 4))
        sc.poly3(patch, _quad_y(0.001, xp, xp + wdt, zp, zp + ln))

    sides = {}
    for s, edge in ((-1, x_left), (1, x_right)):
        kind = "park" if rng.random() < 0.22 else "street"
        verge = float(rng.uniform(0.8, 2.5)) if rng.random() < 0.3 else 0.0
        sw = float(rng.uniform(2.0, 5.0))
        x0 = edge
        if verge > 0:
            seg = sc.new("terrain", wr.GRASS, _jitter(rng, (0.3, 0.42, 0.15), 0.2), normal=up)
            sc.poly3(seg, _quad_y(0.05, min(x0, x0 + s * verge), max(x0, x0 + s * verge), z_near, z_end))
            x0 += s * verge
        side_col = _jitter(rng, (0.55, 0.53, 0.5) if rng.random() < 0.6 else (0.6, 0.5, 0.45), 0.1)
        sidewalk = sc.new("sidewalk", wr.PAVING, side_col, normal=up)
        curb = sc.new("sidewalk", wr.CONCRETE, _jitter(rng, (0.62, 0.62, 0.6), 0.05), normal=(-s, 0, 0))
        xs0, xs1 = min(x0, x0 + s * sw), max(x0, x0 + s * sw)
        sc.poly3(sidewalk, _quad_y(0.12, xs0, xs1, z_near, z_end))
        sc.poly3(curb, _quad_x(edge if verge == 0 else x0, 0, 0.12, z_near, z_end))
        outer = x0 + s * sw
        sides[s] = {"edge": edge, "curb": x0, "outer": outer, "kind": kind, "sw": sw, "parking": parking[s]}
        if kind == "park":
            grass = sc.new("terrain", wr.GRASS, _jitter(rng, (0.3, 0.45, 0.14), 0.2), normal=up)
            sc.poly3(grass, _quad_y(0.1, min(outer, outer + s * 40), max(outer, outer + s * 40), z_near, z_end))
            if rng.random() < 0.6:
                fence = sc.new("fence", wr.SLATS, _jitter(rng, (0.45, 0.42, 0.38), 0.2), normal=(-s, 0, 0),
                               depth=10)
                sc.poly3(fence, _quad_x(outer + s * 0.2, 0, float(rng.uniform(0.9, 1.6)), z_near, z_end * 0.8))
            for _ in range(int(rng.integers(3, 9))):
                zt = float(rng.uniform(6, z_end * 0.7))
                _tree(sc, outer + s * float(rng.uniform(2, 15)), zt, big=True)
        else:
            _buildings(sc, s, outer + s * float(rng.uniform(0.0, 1.0)), z_near, z_end)
    return {"x_left": x_left, "x_right": x_right, "drive_left": drive_left, "sides": sides, "z_end": z_end, "lane_w": lane_w,
            "n_lanes": n_lanes, "crosswalk": crosswalk}


def _buildings(sc: _Scene, s: int, xb: float, z_near: float, z_end: float) -> None:
    rng, cam = sc.rng, sc.cam
    blocks = []
    z = z_near - float(rng.uniform(0, 8))
    while z < z_end:
        ln = float(rng.uniform(8, 30))
        r = rng.random()
        kind = "building" if r < 0.72 else ("wall" if r < 0.84 else ("fence" if r < 0.92 else "gap"))
        blocks.append((z, z + ln, kind))
        z += ln
    # Far to near so nearer blocks cover the front faces of farther ones.
    for z0, z1, kind in reversed(blocks):
        z0c = max(z0, z_near)
        if kind == "building":
            hgt = float(rng.uniform(6, 24))
            col = _jitter(rng, _FACADES[int(rng.integers(len(_FACADES)))], 0.1)
            front = sc.new("building", wr.FACADE, col, normal=(0, 0, -1), depth=z0c)
            sc.poly3(front, _quad_z(z0c, xb, xb + s * 20, 0, hgt))
            fac = sc.new("building", wr.FACADE, col, normal=(-s, 0, 0), depth=(z0c + z1) / 2, plane_x=xb)
            sc.poly3(fac, _quad_x(xb, 0, hgt, z0c, z1))
            sc.cast_shadow(np.array([[xb, z0c], [xb, z1], [xb + s * 15, z1], [xb + s * 15, z0c]]), hgt)
            # Windows (only where they are at least ~1.5 px tall).
            glass_col = _jitter(rng, (0.2, 0.24, 0.3), 0.2)
            glass = sc.new("building", wr.GLASS, glass_col, normal=(-s, 0, 0), depth=(z0c + z1) / 2)
            ground_floor = sc.new("building", wr.GLASS, _jitter(rng, (0.15, 0.15, 0.17), 0.2),
                                  normal=(-s, 0, 0), depth=(z0c + z1) / 2)
            spacing = float(rng.uniform(2.4, 3.6))
            wwin = spacing * float(rng.uniform(0.35, 0.6))
            n_floors = int(hgt // 3.2)
            zz = z0c + float(rng.uniform(0.5, 1.5))
            while zz + wwin < z1 - 0.3:
                if cam.scale(zz) * 1.4 < 1.5:
                    break
                for fl in range(1, n_floors):
                    y0 = fl * 3.2 + 0.8
                    if y0 + 1.4 < hgt - 0.4:
                        sc.poly3(glass, _quad_x(xb - s * 0.01, y0, y0 + 1.4, zz, zz + wwin))
                if rng.random() < 0.5:
                    sc.poly3(ground_floor, _quad_x(xb - s * 0.01, 0.3, 2.6, zz, zz + wwin * 1.2))
                zz += spacing
        elif kind in ("wall", "fence"):
            hgt = float(rng.uniform(1.0, 2.4)) if kind == "wall" else float(rng.uniform(0.9, 1.8))
            mat = wr.CONCRETE if kind == "wall" else wr.SLATS
            col = _jitter(rng, (0.6, 0.58, 0.55) if kind == "wall" else (0.4, 0.38, 0.33), 0.15)
            seg = sc.new(kind, mat, col, normal=(-s, 0, 0), depth=(z0c + z1) / 2)
            front = sc.new(kind, mat, col, normal=(0, 0, -1), depth=z0c)
            sc.poly3(front, _quad_z(z0c, xb, xb + s * 0.3, 0, hgt))
            sc.poly3(seg, _quad_x(xb, 0, hgt, z0c, z1))
            if rng.random() < 0.6:
                _tree(sc, xb + s * float(rng.uniform(2, 6)), (z0c + z1) / 2, big=True, behind=True)
        else:
            for _ in range(int(rng.integers(1, 3))):
                _tree(sc, xb + s * float(rng.uniform(1, 8)), float(rng.uniform(z0c, z1)), big=True, behind=True)


# ---------------------------------------------------------------------------------------------- objects
def _tree(sc: _Scene, x: float, z: float, big: bool = False, behind: bool = False) -> None:
    rng = sc.rng
    trunk_h = float(rng.uniform(2.0, 3.5))
    crown_r = float(rng.uniform(1.5, 3.2 if big else 2.4))
    col = _jitter(rng, (0.2, 0.32, 0.1) if rng.random() < 0.7 else (0.28, 0.33, 0.12), 0.2)
    trunk_col = _jitter(rng, (0.3, 0.24, 0.18), 0.15)
    params = [(float(rng.uniform(-0.6, 0.6)) * crown_r, float(rng.uniform(-0.4, 0.5)) * crown_r,
               crown_r * float(rng.uniform(0.55, 0.85))) for _ in range(int(rng.integers(4, 8)))]

    def draw() -> None:
        trunk = sc.new("vegetation", wr.WOOD, trunk_col, depth=z)
        sc.poly3(trunk, _quad_z(z, x - 0.15, x + 0.15, 0, trunk_h + crown_r * 0.5))
        cy = trunk_h + crown_r
        crown = sc.new("vegetation", wr.FOLIAGE, col, depth=z, sphere=sc.sphere(x, cy, z, crown_r * 1.3))
        for dx, dy, r in params:
            p = sc.cam.project([(x + dx, cy + dy, z)])[0]
            rp = r * sc.cam.scale(z)
            sc.cv.ellipse(crown, p[0], p[1], rp, rp * 0.95)
        sc.cast_shadow(np.array([[x - crown_r * 0.8, z - crown_r * 0.8], [x + crown_r * 0.8, z - crown_r * 0.8],
                                 [x + crown_r * 0.8, z + crown_r * 0.8], [x - crown_r * 0.8, z + crown_r * 0.8]]),
                       trunk_h + crown_r)

    if behind:
        draw()
    else:
        sc.objects.append((z, draw))


def _box(sc: _Scene, seg_for_normal, x0: float, x1: float, y0: float, y1: float, z0: float, z1: float) -> None:
    """Draw the camera-facing faces of an axis-aligned box; ``seg_for_normal(normal)`` gives the segment."""
    cam_x = 0.0
    if x1 < cam_x:
        sc.poly3(seg_for_normal((1, 0, 0)), _quad_x(x1, y0, y1, z0, z1))
    elif x0 > cam_x:
        sc.poly3(seg_for_normal((-1, 0, 0)), _quad_x(x0, y0, y1, z0, z1))
    if y1 < sc.cam.height:
        sc.poly3(seg_for_normal((0, 1, 0)), _quad_y(y1, x0, x1, z0, z1))
    sc.poly3(seg_for_normal((0, 0, -1)), _quad_z(z0, x0, x1, y0, y1))


def _vehicle(sc: _Scene, x: float, z: float, kind: str = "car", oncoming: bool = False) -> None:
    rng = sc.rng
    if kind == "car":
        wdt, hgt, ln = float(rng.uniform(1.7, 1.9)), float(rng.uniform(1.4, 1.6)), float(rng.uniform(4.0, 4.8))
        col = _jitter(rng, _CARS[int(rng.integers(len(_CARS)))], 0.08)
    else:
        wdt, hgt, ln = 2.5, float(rng.uniform(3.0, 3.6)), float(rng.uniform(8, 12))
        col = _jitter(rng, _vivid(rng, (0.2, 0.7), (0.5, 0.9)) if kind == "bus" else (0.8, 0.8, 0.8), 0.1)
    inst_label = kind

    def draw() -> None:
        inst = sc.instance(inst_label)
        segs: dict = {}

        def body(normal):
            key = ("body", normal)
            if key not in segs:
                segs[key] = sc.new(inst_label, wr.PAINT, col, normal=normal, depth=z, inst=inst)
            return segs[key]

        def glass(normal):
            key = ("glass", normal)
            if key not in segs:
                segs[key] = sc.new(inst_label, wr.GLASS, (0.12, 0.14, 0.17), normal=normal, depth=z, inst=inst)
            return segs[key]

        x0, x1 = x - wdt / 2, x + wdt / 2
        sc.cast_shadow(np.array([[x0, z], [x1, z], [x1, z + ln], [x0, z + ln]]), hgt * 0.8)
        if kind == "car":
            _box(sc, body, x0, x1, 0.3, 0.95, z, z + ln)
            _box(sc, body, x0 + 0.12, x1 - 0.12, 0.95, hgt, z + 0.9, z + ln - 1.1)
            # windows: rear/front screen on the cabin's camera face and side windows
            sc.poly3(glass((0, 0, -1)), [(x0 + 0.2, 1.0, z + 0.9), (x1 - 0.2, 1.0, z + 0.9),
                                         (x1 - 0.3, hgt - 0.08, z + 1.2), (x0 + 0.3, hgt - 0.08, z + 1.2)])
            if x1 < 0:
                sc.poly3(glass((1, 0, 0)), _quad_x(x1 - 0.1, 1.0, hgt - 0.1, z + 1.2, z + ln - 1.3))
            elif x0 > 0:
                sc.poly3(glass((-1, 0, 0)), _quad_x(x0 + 0.1, 1.0, hgt - 0.1, z + 1.2, z + ln - 1.3))
            tyre = sc.new(inst_label, wr.RUBBER, (0.05, 0.05, 0.05), depth=z, inst=inst)
            sc.poly3(tyre, _quad_z(z + 0.01, x0 + 0.05, x0 + 0.35, 0, 0.35))
            sc.poly3(tyre, _quad_z(z + 0.01, x1 - 0.35, x1 - 0.05, 0, 0.35))
            xs = x1 if x1 < 0 else (x0 if x0 > 0 else None)
            if xs is not None:
                for zw in (z + 0.8, z + ln - 0.8):
                    p = sc.cam.project([(xs, 0.33, zw)])[0]
                    rp = 0.33 * sc.cam.scale(zw)
                    sc.cv.ellipse(tyre, p[0], p[1], rp * abs(xs) / max(zw, 1) + 0.5, rp)
            lamp_col = (1.0, 0.95, 0.85) if oncoming else (0.75, 0.05, 0.04)
            lamp = sc.new(inst_label, wr.LAMP if oncoming else wr.PAINT, lamp_col, depth=z, inst=inst)
            sc.poly3(lamp, _quad_z(z - 0.01, x0 + 0.08, x0 + 0.35, 0.72, 0.88))
            sc.poly3(lamp, _quad_z(z - 0.01, x1 - 0.35, x1 - 0.08, 0.72, 0.88))
            plate = sc.new(inst_label, wr.SIGN, (0.85, 0.85, 0.82), depth=z, inst=inst)
            sc.poly3(plate, _quad_z(z - 0.01, x - 0.26, x + 0.26, 0.42, 0.54))
        else:
            _box(sc, body, x0, x1, 0.4, hgt, z, z + ln)
            sc.poly3(glass((0, 0, -1)), _quad_z(z - 0.01, x0 + 0.2, x1 - 0.2, hgt * 0.55, hgt - 0.3))
            tyre = sc.new(inst_label, wr.RUBBER, (0.05, 0.05, 0.05), depth=z, inst=inst)
            sc.poly3(tyre, _quad_z(z + 0.01, x0 + 0.05, x0 + 0.45, 0, 0.45))
            sc.poly3(tyre, _quad_z(z + 0.01, x1 - 0.45, x1 - 0.05, 0, 0.45))

    sc.objects.append((z, draw))


def _person(sc: _Scene, x: float, z: float, label: str = "person", y0: float = 0.0) -> None:
    rng = sc.rng
    hp = float(rng.uniform(1.55, 1.9))
    top = _jitter(rng, _CLOTHES[int(rng.integers(len(_CLOTHES)))], 0.15)
    legs = _jitter(rng, _CLOTHES[int(rng.integers(len(_CLOTHES)))], 0.15)
    skin = _SKIN[int(rng.integers(len(_SKIN)))]
    stride = float(rng.uniform(0.0, 0.12))
    sideways = rng.random() < 0.4

    def draw() -> None:
        inst = sc.instance(label)
        c_legs = sc.new(label, wr.CLOTH, legs, depth=z, inst=inst)
        c_top = sc.new(label, wr.CLOTH, top, depth=z, inst=inst)
        c_skin = sc.new(label, wr.SKIN, skin, depth=z, inst=inst, sphere=sc.sphere(x, y0 + hp * 0.92, z, 0.12))
        c_hair = sc.new(label, wr.CLOTH, (0.12, 0.09, 0.07), depth=z, inst=inst)
        hw = 0.2 if not sideways else 0.14
        sc.poly3(c_legs, _quad_z(z, x - hw + 0.02 - stride, x - 0.01 - stride, y0, y0 + hp * 0.48))
        sc.poly3(c_legs, _quad_z(z, x + 0.01 + stride, x + hw - 0.02 + stride, y0, y0 + hp * 0.48))
        sc.poly3(c_top, [(x - hw, y0 + hp * 0.46, z), (x + hw, y0 + hp * 0.46, z), (x + hw + 0.03, y0 + hp * 0.8, z),
                         (x - hw - 0.03, y0 + hp * 0.8, z)])
        if not sideways:
            sc.poly3(c_top, _quad_z(z, x - hw - 0.1, x - hw + 0.0, y0 + hp * 0.45, y0 + hp * 0.79))
            sc.poly3(c_top, _quad_z(z, x + hw, x + hw + 0.1, y0 + hp * 0.45, y0 + hp * 0.79))
        sc.poly3(c_skin, _quad_z(z, x - 0.05, x + 0.05, y0 + hp * 0.79, y0 + hp * 0.86))
        p = sc.cam.project([(x, y0 + hp * 0.92, z)])[0]
        r = 0.11 * sc.cam.scale(z)
        sc.cv.ellipse(c_skin, p[0], p[1], r * 0.9, r * 1.1)
        sc.cv.ellipse(c_hair, p[0], p[1] - r * 0.5, r * 0.9, r * 0.6)
        sc.cast_shadow(np.array([[x - 0.25, z - 0.15], [x + 0.25, z - 0.15], [x + 0.25, z + 0.15],
                                 [x - 0.25, z + 0.15]]), hp)

    sc.objects.append((z, draw))


def _bicycle(sc: _Scene, x: float, z: float, rider: bool) -> None:
    rng = sc.rng
    frame_col = _vivid(rng, (0.3, 0.9), (0.2, 0.8))

    def draw() -> None:
        inst = sc.instance("bicycle")
        tyre = sc.new("bicycle", wr.RUBBER, (0.04, 0.04, 0.04), depth=z, inst=inst)
        frame = sc.new("bicycle", wr.PAINT, frame_col, depth=z, inst=inst)
        wheels = [(x - 0.55, 0.34, z), (x + 0.55, 0.34, z)]
        sc_ = sc.cam.scale(z)
        for wp in wheels:
            p = sc.cam.project([wp])[0]
            sc.cv.draw.ellipse([p[0] - 0.34 * sc_, p[1] - 0.34 * sc_, p[0] + 0.34 * sc_, p[1] + 0.34 * sc_],
                               outline=tyre, width=max(1, int(round(0.06 * sc_))))
        pts = sc.cam.project([(x - 0.55, 0.34, z), (x - 0.1, 0.85, z), (x + 0.45, 0.85, z), (x + 0.55, 0.34, z),
                              (x + 0.05, 0.34, z), (x - 0.1, 0.85, z)])
        sc.cv.line(frame, [tuple(p) for p in pts], width=0.05 * sc_)
        sc.cv.line(frame, [tuple(p) for p in sc.cam.project([(x + 0.45, 0.85, z), (x + 0.4, 1.05, z)])],
                   width=0.05 * sc_)

    sc.objects.append((z + 0.01, draw))
    if rider:
        _person(sc, x, z - 0.01, label="rider", y0=0.35)


def _pole(sc: _Scene, x: float, z: float, s: int, road_x: float) -> None:
    rng = sc.rng
    hgt = float(rng.uniform(3.5, 8.0))
    kind = rng.choice(["sign", "sign", "light", "lamp", "plain"])
    sign_shape = rng.choice(["circle", "triangle", "rect", "rect"])
    sign_cols = {"circle": ((0.8, 0.08, 0.08), (0.92, 0.92, 0.9)), "triangle": ((0.8, 0.08, 0.08), (0.95, 0.95, 0.92)),
                 "rect": ((0.1, 0.25, 0.65), (0.92, 0.92, 0.9)) if rng.random() < 0.6 else
                 ((0.95, 0.78, 0.1), (0.1, 0.1, 0.1))}[sign_shape]
    pole_col = _jitter(rng, (0.45, 0.46, 0.48), 0.2)
    arm = kind == "light" and rng.random() < 0.5
    lit = int(rng.integers(0, 3))
    sign_y = float(rng.uniform(2.0, 3.0))

    def draw() -> None:
        pole = sc.new("pole", wr.CONCRETE, pole_col, depth=z, normal=(-s, 0, 0))
        sc.poly3(pole, _quad_z(z, x - 0.07, x + 0.07, 0, hgt))
        sc.cast_shadow(np.array([[x - 0.07, z - 0.07], [x + 0.07, z - 0.07], [x + 0.07, z + 0.07],
                                 [x - 0.07, z + 0.07]]), hgt)
        if kind == "sign":
            outer = sc.new("traffic sign", wr.SIGN, sign_cols[0], depth=z)
            inner = sc.new("traffic sign", wr.SIGN, sign_cols[1], depth=z)
            c = sc.cam.project([(x, sign_y, z - 0.05)])[0]
            r = 0.33 * sc.cam.scale(z)
            if sign_shape == "circle":
                sc.cv.ellipse(outer, c[0], c[1], r, r)
                sc.cv.ellipse(inner, c[0], c[1], r * 0.72, r * 0.72)
            elif sign_shape == "triangle":
                tri = [(c[0] - r, c[1] - r * 0.6), (c[0] + r, c[1] - r * 0.6), (c[0], c[1] + r * 1.1)]
                sc.cv.polygon(outer, tri)
                sc.cv.polygon(inner, [(c[0] + (px - c[0]) * 0.6, c[1] + (py - c[1]) * 0.6) for px, py in tri])
            else:
                sc.cv.polygon(outer, [(c[0] - r * 1.2, c[1] - r), (c[0] + r * 1.2, c[1] - r),
                                      (c[0] + r * 1.2, c[1] + r), (c[0] - r * 1.2, c[1] + r)])
                sc.cv.polygon(inner, [(c[0] - r * 0.9, c[1] - r * 0.15), (c[0] + r * 0.9, c[1] - r * 0.15),
                                      (c[0] + r * 0.9, c[1] + r * 0.15), (c[0] - r * 0.9, c[1] + r * 0.15)])
        elif kind in ("light", "lamp"):
            hx = x
            if arm or kind == "lamp":
                hx = x - s * float(rng.uniform(1.5, 3.0)) if kind == "lamp" else road_x
                armseg = sc.new("pole", wr.CONCRETE, pole_col, depth=z)
                sc.poly3(armseg, [(x, hgt - 0.1, z), (hx, hgt - 0.1, z), (hx, hgt, z), (x, hgt, z)])
            if kind == "lamp":
                head = sc.new("pole", wr.CONCRETE, (0.3, 0.3, 0.3), depth=z)
                sc.poly3(head, _quad_z(z, hx - 0.3, hx + 0.3, hgt - 0.25, hgt))
                return
            box = sc.new("traffic light", wr.PAINT, (0.08, 0.08, 0.08), depth=z)
            ytop = hgt - 0.1 if arm else min(hgt, 3.6)
            sc.poly3(box, _quad_z(z - 0.05, hx - 0.17, hx + 0.17, ytop - 0.9, ytop))
            for k, lc in enumerate([(1.0, 0.1, 0.05), (1.0, 0.7, 0.1), (0.1, 1.0, 0.4)]):
                on = k == lit
                lamp = sc.new("traffic light", wr.LAMP if on else wr.PAINT, lc if on else tuple(v * 0.2 for v in lc),
                              depth=z)
                p = sc.cam.project([(hx, ytop - 0.15 - 0.3 * k, z - 0.06)])[0]
                r = 0.1 * sc.cam.scale(z)
                sc.cv.ellipse(lamp, p[0], p[1], r, r)

    sc.objects.append((z, draw))


def _bin(sc: _Scene, x: float, z: float) -> None:
    col = _jitter(sc.rng, (0.25, 0.3, 0.25), 0.3)

    def draw() -> None:
        _box(sc, lambda n: sc.new("static", wr.PLASTIC, col, normal=n, depth=z), x - 0.3, x + 0.3, 0.12, 1.1,
             z, z + 0.6)

    sc.objects.append((z, draw))


# -------------------------------------------------------------------------------------------- anomalies
def _anomaly_color(rng: np.random.Generator, road_col) -> tuple[float, float, float]:
    r = rng.random()
    if r < 0.25:
        return _jitter(rng, road_col, 0.25)  # close to road grey
    if r < 0.6:
        return _vivid(rng)
    if r < 0.75:
        return _jitter(rng, (0.08, 0.08, 0.08), 0.5)
    if r < 0.88:
        return _jitter(rng, (0.85, 0.84, 0.8), 0.1)
    return _jitter(rng, (0.45, 0.33, 0.2), 0.3)


def _anomaly(sc: _Scene, x: float, z: float, size: float, shape: str, road_col) -> None:
    rng = sc.rng
    col = _anomaly_color(rng, road_col)
    col2 = _anomaly_color(rng, road_col) if rng.random() < 0.5 else tuple(float(v * 0.3) for v in col)
    aspect = float(rng.uniform(0.5, 1.2))
    outline = wr.blob_polygon(rng, n=28, roughness=float(rng.uniform(0.2, 0.45)))
    rock_pts = rng.uniform(-1, 1, size=(int(rng.integers(7, 13)), 2))
    stripe_angle = float(rng.choice([0.0, math.pi / 4, math.pi / 2, -math.pi / 4]))
    flat_tire = rng.random() < 0.6
    stripes = rng.random() < 0.8

    def new(normal=(0, 0, -1), **kw):
        return sc.new(0, kw.pop("material", wr.MOTTLE), kw.pop("color", col), normal=normal, depth=z,
                      group=ANOMALY_GROUP, **kw)

    def draw() -> None:
        px = sc.cam.scale(z)
        if shape == "blob":
            hgt = size * aspect
            seg = new(material=wr.MOTTLE if rng.random() < 0.6 else wr.PLASTIC,
                      sphere=sc.sphere(x, hgt / 2, z, max(size, hgt) / 2))
            pts = [(x + u * size / 2, hgt / 2 - v * hgt / 2, z) for u, v in outline]
            sc.poly3(seg, pts)
            sc.cast_shadow(np.array([[x - size / 2, z - size / 3], [x + size / 2, z - size / 3],
                                     [x + size / 2, z + size / 3], [x - size / 2, z + size / 3]]), hgt)
        elif shape == "crate":
            hgt, dep = size * aspect, size * float(rng.uniform(0.6, 1.2))
            period = max(1.2, size * px / float(rng.uniform(3, 7)))
            mat = wr.WOOD if (not stripes and rng.random() < 0.5) else wr.PLASTIC
            sc.cast_shadow(np.array([[x - size / 2, z], [x + size / 2, z], [x + size / 2, z + dep],
                                     [x - size / 2, z + dep]]), hgt)
            _box(sc, lambda n: new(n, material=mat, pattern=wr.PAT_STRIPES if stripes else wr.PAT_NONE,
                                   color2=col2, period=period, angle=stripe_angle),
                 x - size / 2, x + size / 2, 0.0, hgt, z, z + dep)
        elif shape == "tire":
            rad = size / 2
            seg = new(material=wr.RUBBER, color=_jitter(rng, (0.07, 0.07, 0.07), 0.4), pattern=wr.PAT_RINGS,
                      color2=(0.03, 0.03, 0.03), period=max(1.0, rad * px / 4),
                      sphere=(*sc.cam.project([(x, 0.1 if flat_tire else rad, z)])[0], 0.0))
            c = sc.cam.project([(x, 0.1 if flat_tire else rad, z)])[0]
            rx = rad * px
            ry = rx * (min(1.0, sc.cam.height / z) if flat_tire else 1.0)
            sc.cv.draw.ellipse([c[0] - rx, c[1] - ry, c[0] + rx, c[1] + ry], outline=seg,
                               width=max(1, int(round(0.4 * min(rx, ry)))))
            sc.cast_shadow(np.array([[x - rad, z - rad / 2], [x + rad, z - rad / 2], [x + rad, z + rad / 2],
                                     [x - rad, z + rad / 2]]), 0.2 if flat_tire else size)
        elif shape == "rock":
            hull = wr.convex_hull(rock_pts)
            hgt = size * aspect * 0.7
            stone = _jitter(rng, (0.45, 0.43, 0.4) if rng.random() < 0.6 else (0.5, 0.4, 0.3), 0.25)
            seg = new(material=wr.ROCK, color=stone, sphere=sc.sphere(x, hgt / 2, z, size / 2))
            pts = [(x + u * size / 2, max(0.0, hgt / 2 - v * hgt / 2), z) for u, v in hull]
            sc.poly3(seg, pts)
            sc.cast_shadow(np.array([[x - size / 2, z - size / 4], [x + size / 2, z - size / 4],
                                     [x + size / 2, z + size / 4], [x - size / 2, z + size / 4]]), hgt)
        else:  # cone / post with bands
            hgt = size * float(rng.uniform(1.2, 2.0))
            bw = size * 0.5
            seg = new(material=wr.PLASTIC, color=_vivid(rng, (0.7, 1.0), (0.7, 1.0)), pattern=wr.PAT_STRIPES,
                      color2=(0.92, 0.92, 0.9), period=max(1.5, hgt * px / 4), angle=math.pi / 2)
            sc.poly3(seg, [(x - bw / 2, 0.0, z), (x + bw / 2, 0.0, z), (x + bw / 8, hgt, z), (x - bw / 8, hgt, z)])
            base = new(material=wr.RUBBER, color=(0.08, 0.08, 0.08))
            sc.poly3(base, _quad_z(z - 0.01, x - bw * 0.65, x + bw * 0.65, 0.0, hgt * 0.06))
            sc.cast_shadow(np.array([[x - bw / 2, z - bw / 2], [x + bw / 2, z - bw / 2], [x + bw / 2, z + bw / 2],
                                     [x - bw / 2, z + bw / 2]]), hgt)

    sc.objects.append((z - 0.02, draw))


# ----------------------------------------------------------------------------------------------- frame
@dataclass(frozen=True)
class CityFrame:
    """One rendered frame.

    Attributes:
        image: uint8 (H, W, 3) camera image.
        label_ids: uint8 (H, W) Cityscapes labelIds (anomaly pixels are 0 = unlabeled).
        instance_ids: uint16 (H, W) Cityscapes instanceIds.
        anomaly: bool (H, W), pixels of test anomalies.
        style: Style name.
    """

    image: np.ndarray
    label_ids: np.ndarray
    instance_ids: np.ndarray
    anomaly: np.ndarray
    style: str


def render_city_frame(rng: np.random.Generator, height: int, width: int, n_anomalies: int = 0,
                      style: str | None = None, anomaly_scale: float = 1.0) -> CityFrame:
    """Render one driving scene, optionally with test anomalies placed mostly on the road.

    Args:
        rng: The frame's generator (``rng_for(seed, frame_key)``).
        height: H.
        width: W.
        n_anomalies: Number of test anomalies (0 for Cityscapes-like frames).
        style: Force a style name; None draws one.
        anomaly_scale: Factor on the physical size of the test anomalies (their log-normal size distribution,
            median 0.35 m at 1, and its 0.1-1.4 m clip are multiplied by it).

    Returns:
        The frame.
    """
    st = sample_style(rng, style)
    sc = _Scene(rng, height, width, st)
    lay = _draw_layout(sc)
    x_left, x_right, lane_w = lay["x_left"], lay["x_right"], lay["lane_w"]
    sides = lay["sides"]
    z_end = lay["z_end"]

    cars: list[tuple[float, float]] = []
    # Parked cars along both curbs.
    for s in (-1, 1):
        if sides[s]["parking"]:
            z = float(rng.uniform(4, 12))
            while z < min(70.0, z_end - 10):
                if rng.random() < 0.65:
                    xc = sides[s]["edge"] - s * 1.1
                    _vehicle(sc, xc, z)
                    cars.append((xc, z))
                z += float(rng.uniform(5.0, 8.0))
    # Traffic in the lanes.
    n_lanes = lay["n_lanes"]
    for lane in range(n_lanes):
        xc = lay["drive_left"] + (lane + 0.5) * lane_w
        oncoming = xc < -lane_w / 2 and n_lanes > 2
        for _ in range(int(rng.integers(0, 3))):
            z = float(rng.uniform(14 if abs(xc) < lane_w / 2 else 7, 70))
            if n_anomalies and abs(xc) < lane_w / 2 and z < 50:
                continue
            r = rng.random()
            kind = "car" if r < 0.85 else ("truck" if r < 0.93 else "bus")
            _vehicle(sc, xc + float(rng.uniform(-0.3, 0.3)), z, kind, oncoming=oncoming)
            cars.append((xc, z))
    # Sidewalk furniture, people, trees.
    for s in (-1, 1):
        side = sides[s]
        curb, outer = side["curb"], side["outer"]
        z = float(rng.uniform(4, 15))
        while z < min(z_end - 5, 90):
            _pole(sc, curb + s * 0.4, z, s, road_x=x_left + lane_w * 0.5 if s < 0 else x_right - lane_w * 0.5)
            z += float(rng.uniform(10, 28))
        for _ in range(int(rng.integers(0, 5))):
            _person(sc, curb + s * float(rng.uniform(0.5, max(0.6, side["sw"] - 0.4))), float(rng.uniform(5, 45)))
        if side["kind"] == "street" and rng.random() < 0.6:
            z = float(rng.uniform(5, 12))
            while z < min(z_end - 5, 80):
                _tree(sc, curb + s * float(rng.uniform(0.6, 1.2)), z)
                z += float(rng.uniform(8, 16))
        if rng.random() < 0.4:
            _bin(sc, outer - s * 0.6, float(rng.uniform(5, 30)))
        if rng.random() < 0.25:
            _bicycle(sc, curb + s * 1.0, float(rng.uniform(6, 30)), rider=False)
    if rng.random() < 0.25:
        zb = float(rng.uniform(8, 30))
        _bicycle(sc, x_right - 1.0, zb, rider=True)
        cars.append((x_right - 1.0, zb))
    if rng.random() < 0.2:
        xp, zp = float(rng.uniform(x_left + 1, x_right - 1)), float(rng.uniform(10, 35))
        _person(sc, xp, zp)
        cars.append((xp, zp))

    # Test anomalies, mostly small and on the road.
    road_col = tuple(float(v) for v in sc.cv.rows[_first_road(sc)][2])
    for _ in range(n_anomalies):
        for _try in range(30):
            size = anomaly_scale * float(np.clip(rng.lognormal(math.log(0.35), 0.55), 0.1, 1.4))
            z = float(rng.uniform(9, 35)) if rng.random() < 0.8 else float(rng.uniform(35, 60))
            if rng.random() < 0.85:
                x = float(rng.uniform(x_left + 0.4 + size / 2, x_right - 0.4 - size / 2))
            else:
                s = int(rng.choice([-1, 1]))
                x = sides[s]["curb"] + s * float(rng.uniform(0.4, max(0.5, sides[s]["sw"] - 0.4)))
            blocked = any(zc < z + 1 and abs(xc - x) < 1.3 + size / 2 for xc, zc in cars)
            if not blocked and size * sc.cam.scale(z) >= min(4.0, 0.02 * width):
                break
        _anomaly(sc, x, z, size, str(rng.choice(ANOMALY_SHAPES)), road_col)

    for _, draw in sorted(sc.objects, key=lambda t: -t[0]):
        draw()
    _ego_vehicle(sc)

    seg = sc.cv.segments()
    tab = sc.cv.tables()
    gx, gz, gdepth = sc.cam.ground_xz(height, width)
    shadow_img = sc.cv.shadow.filter(ImageFilter.GaussianBlur(max(0.5, width / 700)))
    shadow = np.asarray(shadow_img, dtype=np.float32) / 255.0
    radiance = wr.render_segments(seg, tab, rng, st.light, (gx, gz), shadow, sc.cam.focal, sc.cam.cx,
                                  sc.cam.horizon, sc.cam.height,
                                  sky=(np.asarray(st.sky_top, np.float32), np.asarray(st.sky_horizon, np.float32)),
                                  cloudiness=st.cloudiness)
    mat = tab["material"][seg]
    depth = np.where(np.isin(mat, wr.GROUND_MATERIALS) | (tab["label"][seg] == L["sidewalk"]), gdepth,
                     tab["depth"][seg])
    image = wr.city_camera(radiance, depth.astype(np.float32), st.camera, rng)
    label_ids = tab["label"][seg].astype(np.uint8)
    inst = tab["inst"][seg]
    instance_ids = np.where(inst > 0, inst, label_ids).astype(np.uint16)
    anomaly = tab["group"][seg] == ANOMALY_GROUP
    return CityFrame(image=image, label_ids=label_ids, instance_ids=instance_ids, anomaly=anomaly, style=st.name)


def _first_road(sc: _Scene) -> int:
    for i, row in enumerate(sc.cv.rows):
        if row[0] == L["road"] and row[1] == wr.ASPHALT:
            return i
    return 0


def _ego_vehicle(sc: _Scene) -> None:
    rng, h, w = sc.rng, sc.h, sc.w
    e = h * float(rng.uniform(0.07, 0.12))
    col = _jitter(rng, _CARS[int(rng.integers(len(_CARS)))], 0.05)
    seg = sc.new("ego vehicle", wr.EGO, tuple(v * 0.6 for v in col), normal=(0, 1, 0), depth=2.0)
    xs = np.linspace(0, w, 33)
    t = (xs - w / 2) / (w / 2)
    ys = h - e * (1 - 0.55 * t ** 2)
    sc.cv.polygon(seg, [(0, h + 1)] + list(zip(xs.tolist(), ys.tolist())) + [(w, h + 1)])
