"""What stands in a synthetic street: trees, buildings' parts, vehicles, people, bicycles, poles, bins, and the test
anomalies (drawn before the camera, so they carry the city's look)."""

from __future__ import annotations

import math

import numpy as np

from synthetic import render as wr
from synthetic.scene import (
    _CARS,
    _CLOTHES,
    _SKIN,
    ANOMALY_GROUP,
    _jitter,
    _quad_x,
    _quad_y,
    _quad_z,
    _Scene,
    _vivid,
)

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
