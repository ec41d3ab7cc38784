"""Procedural driving scenes of the synthetic city, and the test anomalies placed in them.

A scene is built in metric 3-D (X right, Y up, Z forward; camera at X=0, Y=cam_h, Z=0 with a small yaw) and
projected with a pinhole camera, so road, sidewalks, facades, cars and people keep a consistent perspective.
Shapes are drawn back to front into a segment canvas (:class:`synthetic.render.Canvas`), rendered with
textures and the scene light, and then passed through the style's camera (fog, colour response, blur, noise,
JPEG). Test anomalies are drawn into the same canvas *before* the camera, so they carry the city's look.

This module lays out the street and renders a frame; the scene model is :mod:`synthetic.scene`, what stands in
the street :mod:`synthetic.street`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import ImageFilter

from synthetic import render as wr
from synthetic.scene import (
    _CARS,
    _FACADES,
    ANOMALY_GROUP,
    ANOMALY_SHAPES,
    L,
    _jitter,
    _quad_x,
    _quad_y,
    _quad_z,
    _Scene,
    sample_style,
)
from synthetic.street import _anomaly, _bicycle, _bin, _person, _pole, _tree, _vehicle

# --------------------------------------------------------------------------------------------- layout
def _draw_layout(sc: _Scene) -> dict:
    """One function on purpose: the order of its random draws defines the output bytes (same seed, same
    files), and reading the draws top to bottom keeps that order visible; splitting it would hide it."""
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

    One function on purpose: the order of its random draws defines the output bytes (same seed, same
    files), and reading the draws top to bottom keeps that order visible; splitting it would hide it.
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
