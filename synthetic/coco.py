"""COCO-like photographs of the synthetic world: objects on their own backgrounds, shot by another camera.

Each category has a recognisable shape family (bottle = tall rounded body with a neck, ball = patterned disc,
chair = seat + back + legs, ...), none of which is used by the test anomalies. The photographs are lit from the
front-left, have saturated colours, hard sharpened edges, blotchy chroma noise and stronger JPEG compression,
so a pasted object carries camera cues that differ from the city's. Annotations are polygons traced from the
visible mask of each object (several polygons when an object is split by occlusion), plus crowd regions in
uncompressed RLE, as in the real ``instances_*.json``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import contourpy
import numpy as np
from PIL import Image, ImageFilter

from synthetic import render as wr

# Real COCO 2017 category ids, names and supercategories.
COCO_CATEGORIES: tuple[tuple[int, str, str], ...] = (
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"), (4, "motorcycle", "vehicle"),
    (5, "airplane", "vehicle"), (6, "bus", "vehicle"), (7, "train", "vehicle"), (8, "truck", "vehicle"),
    (9, "boat", "vehicle"), (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"),
    (13, "stop sign", "outdoor"), (14, "parking meter", "outdoor"), (15, "bench", "outdoor"),
    (16, "bird", "animal"), (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"),
    (20, "sheep", "animal"), (21, "cow", "animal"), (22, "elephant", "animal"), (23, "bear", "animal"),
    (24, "zebra", "animal"), (25, "giraffe", "animal"), (27, "backpack", "accessory"),
    (28, "umbrella", "accessory"), (31, "handbag", "accessory"), (32, "tie", "accessory"),
    (33, "suitcase", "accessory"), (34, "frisbee", "sports"), (35, "skis", "sports"),
    (36, "snowboard", "sports"), (37, "sports ball", "sports"), (38, "kite", "sports"),
    (39, "baseball bat", "sports"), (40, "baseball glove", "sports"), (41, "skateboard", "sports"),
    (42, "surfboard", "sports"), (43, "tennis racket", "sports"), (44, "bottle", "kitchen"),
    (46, "wine glass", "kitchen"), (47, "cup", "kitchen"), (48, "fork", "kitchen"), (49, "knife", "kitchen"),
    (50, "spoon", "kitchen"), (51, "bowl", "kitchen"), (52, "banana", "food"), (53, "apple", "food"),
    (54, "sandwich", "food"), (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"),
    (58, "hot dog", "food"), (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"),
    (62, "chair", "furniture"), (63, "couch", "furniture"), (64, "potted plant", "furniture"),
    (65, "bed", "furniture"), (67, "dining table", "furniture"), (70, "toilet", "furniture"),
    (72, "tv", "electronic"), (73, "laptop", "electronic"), (74, "mouse", "electronic"),
    (75, "remote", "electronic"), (76, "keyboard", "electronic"), (77, "cell phone", "electronic"),
    (78, "microwave", "appliance"), (79, "oven", "appliance"), (80, "toaster", "appliance"),
    (81, "sink", "appliance"), (82, "refrigerator", "appliance"), (84, "book", "indoor"),
    (85, "clock", "indoor"), (86, "vase", "indoor"), (87, "scissors", "indoor"), (88, "teddy bear", "indoor"),
    (89, "hair drier", "indoor"), (90, "toothbrush", "indoor"),
)
CAT_ID: dict[str, int] = {name: cid for cid, name, _ in COCO_CATEGORIES}

DRAWN_OOD: tuple[str, ...] = ("bottle", "chair", "dog", "umbrella", "suitcase", "teddy bear", "potted plant",
                              "sports ball", "cow", "bench", "fire hydrant", "vase", "kite")
"""Categories drawn in the photographs that do not overlap Cityscapes classes."""
DRAWN_EXCLUDED: tuple[str, ...] = ("person", "car", "bicycle", "truck", "train", "traffic light", "stop sign")
"""Categories drawn in the photographs that overlap Cityscapes and must be excluded by the bank."""
CROWD_CATEGORIES: tuple[str, ...] = ("person", "bottle", "sports ball", "kite", "umbrella")

COCO_LIGHT = wr.Light(sun=(-0.5, 0.62, -0.6), sun_strength=0.85, ambient=0.35, tint=(1.0, 0.98, 0.94),
                      sky_tint=(1.0, 1.0, 1.0), shadow_strength=0.0)
"""Studio-like light from the front-left and above (the city's sun comes from the side or behind)."""


def _vivid(rng: np.random.Generator, sat=(0.65, 1.0), val=(0.55, 1.0)) -> tuple[float, float, float]:
    return wr.vivid(rng, sat, val)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


class _Obj:
    """Draws one object's parts in object coordinates (u, v in about -0.5..0.5, scaled by ``s`` px)."""

    def __init__(self, cv: wr.Canvas, cat: str, group: int, ox: float, oy: float, s: float, flip: bool) -> None:
        self.cv, self.cat, self.group, self.ox, self.oy, self.s, self.flip = cv, cat, group, ox, oy, s, flip
        self.label = CAT_ID[cat]
        self.flat_shade = COCO_LIGHT.ambient + COCO_LIGHT.sun_strength * max(0.0, -COCO_LIGHT.sun[2])

    def p(self, u: float, v: float) -> tuple[float, float]:
        return (self.ox + (-u if self.flip else u) * self.s, self.oy + v * self.s)

    def seg(self, material: int, color, *, sphere: tuple[float, float, float] | None = None, **kw) -> int:
        sph = (0.0, 0.0, 0.0)
        if sphere is not None:
            cx, cy = self.p(sphere[0], sphere[1])
            sph = (cx, cy, sphere[2] * self.s)
        return self.cv.new(self.label, material, color, shade=self.flat_shade, sphere=sph, group=self.group, **kw)

    def poly(self, seg: int, pts) -> None:
        self.cv.polygon(seg, [self.p(u, v) for u, v in pts])

    def rect(self, seg: int, u0: float, v0: float, u1: float, v1: float) -> None:
        self.poly(seg, [(u0, v0), (u1, v0), (u1, v1), (u0, v1)])

    def rrect(self, seg: int, u0: float, v0: float, u1: float, v1: float, r: float) -> None:
        t = np.linspace(0, math.pi / 2, 6)
        pts = []
        for cu, cv_, a0 in ((u1 - r, v1 - r, 0.0), (u0 + r, v1 - r, math.pi / 2), (u0 + r, v0 + r, math.pi),
                            (u1 - r, v0 + r, 1.5 * math.pi)):
            pts += [(cu + r * math.cos(a0 + a), cv_ + r * math.sin(a0 + a)) for a in t]
        self.poly(seg, pts)

    def ellipse(self, seg: int, u: float, v: float, ru: float, rv: float, rot: float = 0.0, n: int = 28) -> None:
        t = np.linspace(0, 2 * math.pi, n, endpoint=False)
        c, s = math.cos(rot), math.sin(rot)
        self.poly(seg, [(u + ru * math.cos(a) * c - rv * math.sin(a) * s, v + ru * math.cos(a) * s
                         + rv * math.sin(a) * c) for a in t])

    def line(self, seg: int, pts, width: float) -> None:
        self.cv.line(seg, [self.p(u, v) for u, v in pts], width * self.s)


def _draw_bottle(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one bottle object."""
    glass = _pick(rng, [(0.1, 0.55, 0.2), (0.5, 0.25, 0.05), (0.2, 0.45, 0.85), (0.85, 0.9, 0.9)])
    body = o.seg(wr.PLASTIC, glass)
    o.rrect(body, -0.15, -0.2, 0.15, 0.48, 0.06)
    o.poly(body, [(-0.15, -0.19), (0.15, -0.19), (0.06, -0.32), (-0.06, -0.32)])
    o.rect(body, -0.055, -0.45, 0.055, -0.3)
    o.rect(o.seg(wr.PLASTIC, _vivid(rng)), -0.065, -0.5, 0.065, -0.44)
    o.rect(o.seg(wr.PLASTIC, _vivid(rng, (0.0, 1.0))), -0.15, 0.0, 0.15, 0.24)
    o.rect(o.seg(wr.PLASTIC, tuple(min(1.0, c + 0.5) for c in glass)), -0.1, -0.15, -0.07, 0.42)


def _draw_sports_ball(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one sports ball object."""
    kind = int(rng.integers(3))
    if kind == 0:
        seg = o.seg(wr.PLASTIC, (0.95, 0.95, 0.95), sphere=(0, 0, 0.45), pattern=wr.PAT_CHECKER,
                    color2=(0.08, 0.08, 0.08), period=0.16 * o.s, angle=float(rng.uniform(0, 1.5)))
        o.ellipse(seg, 0, 0, 0.45, 0.45, n=40)
    elif kind == 1:
        seg = o.seg(wr.PLASTIC, (0.95, 0.45, 0.08), sphere=(0, 0, 0.45))
        o.ellipse(seg, 0, 0, 0.45, 0.45, n=40)
        ln = o.seg(wr.PAINT, (0.1, 0.05, 0.02))
        o.line(ln, [(-0.45, 0), (0.45, 0)], 0.025)
        o.line(ln, [(0, -0.45), (0, 0.45)], 0.025)
    else:
        seg = o.seg(wr.FUR, (0.8, 0.95, 0.2), sphere=(0, 0, 0.45))
        o.ellipse(seg, 0, 0, 0.45, 0.45, n=40)


def _draw_chair(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one chair object."""
    col = _pick(rng, [(0.55, 0.32, 0.15), _vivid(rng), (0.15, 0.15, 0.15)])
    mat = wr.WOOD if col[0] > 0.5 and col[2] < 0.2 else wr.PLASTIC
    seg = o.seg(mat, col)
    o.poly(seg, [(-0.32, 0.02), (0.28, 0.02), (0.34, 0.12), (-0.26, 0.12)])
    o.rect(seg, 0.2, -0.5, 0.3, 0.06)
    o.rect(seg, -0.3, -0.5, 0.3, -0.4) if rng.random() < 0.3 else None
    for u in (-0.3, -0.2, 0.24, 0.3):
        o.rect(seg, u - 0.022, 0.1, u + 0.022, 0.5)


def _draw_quadruped(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one dog / cow object."""
    cat = o.cat
    big = cat == "cow"
    col = _pick(rng, [(0.55, 0.35, 0.15), (0.9, 0.75, 0.45), (0.1, 0.08, 0.07), (0.95, 0.93, 0.9)])
    spots = rng.random() < (0.8 if big else 0.25)
    kw = dict(pattern=wr.PAT_SPOTS, color2=(0.08, 0.07, 0.06) if col[0] > 0.5 else (0.95, 0.95, 0.95)) \
        if spots else {}
    seg = o.seg(wr.FUR, col, **kw)
    if big:
        o.rrect(seg, -0.42, -0.18, 0.28, 0.14, 0.08)
        o.poly(seg, [(0.25, -0.16), (0.42, -0.22), (0.5, -0.05), (0.44, 0.02), (0.3, -0.02)])
        for u in (-0.36, -0.26, 0.14, 0.22):
            o.rect(seg, u - 0.035, 0.1, u + 0.035, 0.45)
        o.line(seg, [(-0.42, -0.12), (-0.47, 0.15)], 0.02)
        horn = o.seg(wr.PAINT, (0.9, 0.88, 0.8))
        o.poly(horn, [(0.36, -0.21), (0.4, -0.21), (0.37, -0.3)])
    else:
        o.ellipse(seg, -0.02, 0.0, 0.3, 0.14)
        o.ellipse(seg, 0.3, -0.17, 0.12, 0.11)
        o.ellipse(seg, 0.41, -0.13, 0.08, 0.05)
        o.poly(seg, [(0.22, -0.22), (0.28, -0.3), (0.3, -0.12)])
        for u in (-0.24, -0.14, 0.12, 0.22):
            o.rect(seg, u - 0.03, 0.05, u + 0.03, 0.36)
        o.line(seg, [(-0.3, -0.03), (-0.42, -0.2)], 0.035)
        o.ellipse(o.seg(wr.PAINT, (0.02, 0.02, 0.02)), 0.48, -0.14, 0.025, 0.02)


def _draw_umbrella(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one umbrella object."""
    n = int(rng.integers(6, 10))
    c1, c2 = _vivid(rng), _vivid(rng)
    s1, s2 = o.seg(wr.CLOTH, c1), o.seg(wr.CLOTH, c2)
    apex = (0.0, -0.38)
    angles = np.linspace(math.pi, 2 * math.pi, n + 1)
    edge = [(0.47 * math.cos(a), -0.02 + 0.3 * math.sin(a) + 0.3) for a in angles]
    for k in range(n):
        mid = ((edge[k][0] + edge[k + 1][0]) / 2, (edge[k][1] + edge[k + 1][1]) / 2 - 0.04)
        o.poly(s1 if k % 2 == 0 else s2, [apex, edge[k], mid, edge[k + 1]])
    shaft = o.seg(wr.PAINT, (0.15, 0.12, 0.1))
    o.line(shaft, [(0.0, -0.4), (0.0, 0.4), (0.03, 0.46), (0.08, 0.45), (0.09, 0.4)], 0.025)


def _draw_suitcase(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one suitcase object."""
    col = _vivid(rng, (0.4, 1.0), (0.3, 0.9))
    seg = o.seg(wr.PLASTIC, col)
    o.rrect(seg, -0.28, -0.3, 0.28, 0.4, 0.05)
    dark = o.seg(wr.PLASTIC, tuple(c * 0.3 for c in col))
    o.rect(dark, -0.1, -0.42, 0.1, -0.3)
    o.rect(dark, -0.28, 0.03, 0.28, 0.05)
    wheel = o.seg(wr.RUBBER, (0.05, 0.05, 0.05))
    o.ellipse(wheel, -0.2, 0.43, 0.04, 0.04)
    o.ellipse(wheel, 0.2, 0.43, 0.04, 0.04)


def _draw_teddy_bear(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one teddy bear object."""
    col = _pick(rng, [(0.6, 0.4, 0.2), (0.85, 0.7, 0.5), (0.95, 0.7, 0.8), (0.9, 0.9, 0.88)])
    body = o.seg(wr.FUR, col, sphere=(0, 0.15, 0.3))
    head = o.seg(wr.FUR, col, sphere=(0, -0.22, 0.19))
    o.ellipse(body, 0, 0.15, 0.25, 0.28)
    for u in (-0.25, 0.25):
        o.ellipse(body, u, 0.05, 0.08, 0.14)
    for u in (-0.15, 0.15):
        o.ellipse(body, u, 0.4, 0.1, 0.07)
    for u in (-0.14, 0.14):
        o.ellipse(head, u, -0.36, 0.07, 0.07)
    o.ellipse(head, 0, -0.22, 0.18, 0.17)
    o.ellipse(o.seg(wr.FUR, tuple(min(1, c + 0.25) for c in col)), 0, -0.16, 0.08, 0.06)
    eye = o.seg(wr.PAINT, (0.02, 0.02, 0.02))
    o.ellipse(eye, -0.06, -0.26, 0.02, 0.02)
    o.ellipse(eye, 0.06, -0.26, 0.02, 0.02)


def _draw_potted_plant(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one potted plant object."""
    pot = o.seg(wr.PAINT, _pick(rng, [(0.75, 0.35, 0.2), (0.9, 0.9, 0.88), (0.2, 0.3, 0.6)]))
    o.poly(pot, [(-0.2, 0.12), (0.2, 0.12), (0.15, 0.5), (-0.15, 0.5)])
    o.rect(pot, -0.22, 0.1, 0.22, 0.17)
    leaf = o.seg(wr.FOLIAGE, _pick(rng, [(0.15, 0.6, 0.15), (0.3, 0.7, 0.1), (0.1, 0.45, 0.25)]))
    for k in range(int(rng.integers(6, 11))):
        a = -math.pi / 2 + float(rng.uniform(-1.2, 1.2))
        ln = float(rng.uniform(0.2, 0.38))
        o.ellipse(leaf, 0.5 * ln * math.cos(a), 0.12 + 0.5 * ln * math.sin(a), ln * 0.55, 0.06, rot=a, n=16)


def _draw_bench(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one bench object."""
    wood = o.seg(wr.WOOD, _pick(rng, [(0.6, 0.38, 0.18), (0.35, 0.5, 0.25), (0.7, 0.2, 0.15)]))
    o.rect(wood, -0.48, -0.36, 0.48, -0.16)
    o.rect(wood, -0.5, -0.06, 0.5, 0.08)
    metal = o.seg(wr.PAINT, (0.12, 0.12, 0.13))
    o.rect(metal, -0.43, 0.06, -0.38, 0.4)
    o.rect(metal, 0.38, 0.06, 0.43, 0.4)


def _draw_fire_hydrant(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one fire hydrant object."""
    col = _pick(rng, [(0.85, 0.1, 0.08), (0.95, 0.8, 0.1), (0.15, 0.55, 0.25)])
    seg = o.seg(wr.PAINT, col)
    o.rect(seg, -0.15, -0.2, 0.15, 0.36)
    o.ellipse(seg, 0, -0.2, 0.15, 0.1)
    o.rect(seg, -0.04, -0.36, 0.04, -0.27)
    o.rect(seg, -0.26, -0.05, -0.14, 0.06)
    o.rect(seg, 0.14, -0.05, 0.26, 0.06)
    o.rect(o.seg(wr.PAINT, tuple(c * 0.6 for c in col)), -0.21, 0.34, 0.21, 0.42)


def _draw_vase(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one vase object."""
    col = _vivid(rng, (0.3, 1.0), (0.4, 1.0))
    seg = o.seg(wr.PAINT, col)
    vs = np.linspace(-0.45, 0.45, 24)
    rs = 0.07 + 0.2 * np.sin(np.pi * (vs + 0.45) / 0.9 * 0.85 + 0.2) ** 1.5 + 0.05 * (vs < -0.38)
    o.poly(seg, [(-r, v) for r, v in zip(rs, vs)] + [(r, v) for r, v in zip(rs[::-1], vs[::-1])])


def _draw_kite(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one kite object."""
    c1, c2 = _vivid(rng), _vivid(rng)
    s1, s2 = o.seg(wr.CLOTH, c1), o.seg(wr.CLOTH, c2)
    top, right, bottom, left, mid = (0, -0.45), (0.3, -0.12), (0, 0.3), (-0.3, -0.12), (0, -0.12)
    o.poly(s1, [top, right, mid])
    o.poly(s2, [right, bottom, mid])
    o.poly(s1, [bottom, left, mid])
    o.poly(s2, [left, top, mid])
    tail = o.seg(wr.CLOTH, c2)
    o.line(tail, [(0, 0.3), (0.06, 0.38), (-0.02, 0.45), (0.05, 0.5)], 0.02)


def _draw_person(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one person object."""
    skin = _pick(rng, [(0.9, 0.7, 0.55), (0.6, 0.42, 0.3), (0.4, 0.27, 0.18)])
    top, legs = _vivid(rng, (0.3, 1.0)), _pick(rng, [(0.15, 0.2, 0.45), (0.1, 0.1, 0.1), (0.7, 0.6, 0.45)])
    o.ellipse(o.seg(wr.SKIN, skin, sphere=(0, -0.42, 0.07)), 0, -0.42, 0.065, 0.075)
    t = o.seg(wr.CLOTH, top)
    o.rrect(t, -0.1, -0.34, 0.1, 0.05, 0.03)
    o.rect(t, -0.15, -0.32, -0.1, -0.02)
    o.rect(t, 0.1, -0.32, 0.15, -0.02)
    lg = o.seg(wr.CLOTH, legs)
    o.rect(lg, -0.09, 0.04, -0.01, 0.48)
    o.rect(lg, 0.01, 0.04, 0.09, 0.48)


def _draw_vehicle(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one car / truck / train object."""
    cat = o.cat
    col = _vivid(rng, (0.5, 1.0), (0.4, 0.95))
    body = o.seg(wr.PAINT, col)
    glass = o.seg(wr.GLASS, (0.25, 0.35, 0.45))
    if cat == "car":
        o.poly(body, [(-0.5, 0.1), (0.5, 0.1), (0.5, -0.04), (0.32, -0.08), (0.16, -0.22), (-0.2, -0.22),
                      (-0.36, -0.08), (-0.5, -0.05)])
        o.poly(glass, [(-0.17, -0.19), (0.13, -0.19), (0.26, -0.08), (-0.31, -0.08)])
        wheels = (-0.3, 0.3)
    elif cat == "truck":
        o.rect(body, -0.5, -0.3, 0.15, 0.1)
        o.poly(body, [(0.17, 0.1), (0.5, 0.1), (0.5, -0.08), (0.4, -0.2), (0.17, -0.2)])
        o.poly(glass, [(0.3, -0.17), (0.4, -0.17), (0.47, -0.08), (0.3, -0.08)])
        wheels = (-0.35, -0.2, 0.35)
    else:
        o.poly(body, [(-0.5, -0.15), (0.38, -0.15), (0.5, -0.05), (0.5, 0.1), (-0.5, 0.1)])
        for k in range(6):
            o.rect(glass, -0.46 + k * 0.14, -0.1, -0.38 + k * 0.14, -0.02)
        wheels = (-0.4, -0.3, 0.3, 0.4)
    tyre = o.seg(wr.RUBBER, (0.05, 0.05, 0.05))
    hub = o.seg(wr.PAINT, (0.7, 0.7, 0.72))
    r = 0.09 if cat != "train" else 0.05
    for u in wheels:
        o.ellipse(tyre, u, 0.1, r, r)
        o.ellipse(hub, u, 0.1, r * 0.45, r * 0.45)


def _draw_bicycle(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one bicycle object."""
    tyre = o.seg(wr.RUBBER, (0.05, 0.05, 0.05))
    inner = o.seg(wr.PAINT, (0.55, 0.55, 0.58))
    for u in (-0.28, 0.28):
        o.ellipse(tyre, u, 0.2, 0.2, 0.2, n=36)
        o.ellipse(inner, u, 0.2, 0.16, 0.16, n=36)
    frame = o.seg(wr.PAINT, _vivid(rng))
    o.line(frame, [(-0.28, 0.2), (-0.05, -0.12), (0.22, -0.12), (0.28, 0.2), (0.0, 0.2), (-0.05, -0.12)], 0.03)
    o.line(frame, [(0.22, -0.12), (0.2, -0.24), (0.28, -0.25)], 0.03)
    o.rect(o.seg(wr.PAINT, (0.05, 0.05, 0.05)), -0.12, -0.18, 0.0, -0.14)


def _draw_traffic_light(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one traffic light object."""
    box = o.seg(wr.PAINT, (0.12, 0.12, 0.1) if rng.random() < 0.6 else (0.85, 0.7, 0.1))
    o.rrect(box, -0.13, -0.45, 0.13, 0.28, 0.04)
    o.rect(box, -0.03, 0.28, 0.03, 0.5)
    for k, c in enumerate([(1.0, 0.1, 0.05), (1.0, 0.75, 0.1), (0.1, 1.0, 0.35)]):
        o.ellipse(o.seg(wr.LAMP, c), 0, -0.33 + 0.24 * k, 0.08, 0.08)


def _draw_stop_sign(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one stop sign object."""
    t = np.linspace(0, 2 * math.pi, 8, endpoint=False) + math.pi / 8
    red = o.seg(wr.PAINT, (0.85, 0.08, 0.08))
    white = o.seg(wr.PAINT, (0.97, 0.97, 0.97))
    post = o.seg(wr.PAINT, (0.5, 0.5, 0.52))
    o.rect(post, -0.025, 0.2, 0.025, 0.5)
    o.poly(red, [(0.3 * math.cos(a), -0.12 + 0.3 * math.sin(a)) for a in t])
    o.poly(white, [(0.27 * math.cos(a), -0.12 + 0.27 * math.sin(a)) for a in t])
    o.poly(red, [(0.245 * math.cos(a), -0.12 + 0.245 * math.sin(a)) for a in t])
    o.rect(white, -0.16, -0.15, 0.16, -0.09)


_SHAPE_FAMILIES: dict[str, Callable[[_Obj, np.random.Generator], None]] = {
    "bottle": _draw_bottle,
    "sports ball": _draw_sports_ball,
    "chair": _draw_chair,
    "dog": _draw_quadruped,
    "cow": _draw_quadruped,
    "umbrella": _draw_umbrella,
    "suitcase": _draw_suitcase,
    "teddy bear": _draw_teddy_bear,
    "potted plant": _draw_potted_plant,
    "bench": _draw_bench,
    "fire hydrant": _draw_fire_hydrant,
    "vase": _draw_vase,
    "kite": _draw_kite,
    "person": _draw_person,
    "car": _draw_vehicle,
    "truck": _draw_vehicle,
    "train": _draw_vehicle,
    "bicycle": _draw_bicycle,
    "traffic light": _draw_traffic_light,
    "stop sign": _draw_stop_sign,
}
"""COCO category -> the function that draws one object of it."""


def _draw_object(o: _Obj, rng: np.random.Generator) -> None:
    """Draw one object of ``o.cat`` (its shape family from :data:`_SHAPE_FAMILIES`)."""
    draw = _SHAPE_FAMILIES.get(o.cat)
    if draw is None:
        raise ValueError(f"no shape family for category {o.cat!r}")
    draw(o, rng)


# ------------------------------------------------------------------------------------------- background
def _background(cv: wr.Canvas, rng: np.random.Generator, h: int, w: int) -> float:
    """Fill the photograph's background; returns the row of the floor line."""
    kind = int(rng.integers(5))
    floor_y = float(rng.uniform(0.35, 0.65)) * h
    wall = cv.new(0, wr.PAINT, _vivid(rng, (0.2, 0.7), (0.5, 0.95)), shade=0.9)
    cv.polygon(wall, [(0, 0), (w, 0), (w, h), (0, h)])
    if kind == 0:
        floor = cv.new(0, wr.WOOD, _pick(rng, [(0.6, 0.38, 0.2), (0.75, 0.55, 0.35), (0.4, 0.25, 0.15)]), shade=1.0)
    elif kind == 1:
        floor = cv.new(0, wr.GRASS, (0.25, 0.6, 0.12), shade=1.0)
        floor_y = float(rng.uniform(0.15, 0.4)) * h
    elif kind == 2:
        floor = cv.new(0, wr.FUR, _vivid(rng, (0.4, 0.9), (0.4, 0.9)), shade=1.0)
    elif kind == 3:
        floor = cv.new(0, wr.PAINT, _vivid(rng, (0.3, 0.8)), pattern=wr.PAT_CHECKER, color2=_vivid(rng),
                       period=float(rng.uniform(18, 40)), angle=float(rng.uniform(0, 0.7)), shade=1.0)
    else:
        floor = cv.new(0, wr.SOIL, (0.85, 0.75, 0.55), shade=1.0)
    cv.polygon(floor, [(0, floor_y), (w, floor_y), (w, h), (0, h)])
    return floor_y


# -------------------------------------------------------------------------------------------- polygons
def _rdp(pts: np.ndarray, eps: float) -> np.ndarray:
    """Ramer-Douglas-Peucker simplification of an open polyline (N, 2)."""
    keep = np.zeros(len(pts), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(pts) - 1)]
    while stack:
        a, b = stack.pop()
        if b <= a + 1:
            continue
        seg = pts[b] - pts[a]
        norm = float(np.hypot(*seg))
        rel = pts[a + 1:b] - pts[a]
        if norm < 1e-9:
            d = np.hypot(rel[:, 0], rel[:, 1])
        else:
            d = np.abs(rel[:, 0] * seg[1] - rel[:, 1] * seg[0]) / norm
        i = int(np.argmax(d))
        if d[i] > eps:
            keep[a + 1 + i] = True
            stack += [(a, a + 1 + i), (a + 1 + i, b)]
    return pts[keep]


def mask_to_polygons(mask: np.ndarray, eps: float = 0.5, min_area: float = 4.0) -> list[list[float]]:
    """Trace the outer outlines of a binary mask as COCO polygons.

    Holes are dropped (COCO polygons cannot express them). Coordinates follow COCO: pixel (r, c) covers
    [c, c+1) x [r, r+1).

    Args:
        mask: bool (H, W).
        eps: Simplification tolerance in pixels.
        min_area: Outlines enclosing less area are dropped.

    Returns:
        List of flat ``[x0, y0, x1, y1, ...]`` polygons with at least 3 vertices, largest first.
    """
    padded = np.pad(mask.astype(np.float64), 1)
    gen = contourpy.contour_generator(z=padded, line_type=contourpy.LineType.Separate)
    out = []
    for line in gen.lines(0.5):
        x, y = line[:, 0], line[:, 1]
        area = 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))
        if area < min_area:  # holes have negative area
            continue
        pts = _rdp(np.asarray(line, dtype=np.float64), eps)[:-1]
        if len(pts) < 3:
            continue
        pts = pts - 1.0 + 0.5  # undo padding; pixel centres sit at +0.5 in COCO coordinates
        out.append((area, [round(float(v), 2) for v in pts.reshape(-1)]))
    out.sort(key=lambda t: -t[0])
    return [p for _, p in out]


def mask_to_uncompressed_rle(mask: np.ndarray) -> dict:
    """Encode a binary mask as COCO uncompressed RLE (column-major runs, starting with zeros).

    Args:
        mask: bool (H, W).

    Returns:
        ``{"counts": [...], "size": [H, W]}``.
    """
    flat = np.asarray(mask, dtype=np.uint8).reshape(-1, order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"counts": [int(c) for c in counts], "size": [int(mask.shape[0]), int(mask.shape[1])]}


# ----------------------------------------------------------------------------------------- photograph
@dataclass(frozen=True)
class CocoObject:
    """One annotated object of a photograph.

    Attributes:
        category: COCO category name.
        iscrowd: Whether this is a crowd region.
        mask: bool (H, W) visible pixels.
        segmentation: Polygons (list of flat lists) or uncompressed RLE dict for crowds.
    """

    category: str
    iscrowd: bool
    mask: np.ndarray
    segmentation: list | dict


@dataclass(frozen=True)
class CocoPhoto:
    """One photograph and its objects.

    Attributes:
        jpeg: JPEG bytes of the photograph.
        height: H.
        width: W.
        objects: Annotated objects.
    """

    jpeg: bytes
    height: int
    width: int
    objects: tuple[CocoObject, ...]


def render_coco_photo(rng: np.random.Generator, index: int, min_side: int = 320,
                      max_side: int = 480) -> CocoPhoto:
    """Render one COCO-like photograph with 1-4 objects (and sometimes a crowd).

    Args:
        rng: The image's generator (``rng_for(seed, ("coco", index))``).
        index: Image index; makes the first object cycle through all drawn categories.
        min_side: Smallest image side.
        max_side: Largest image side.

    Returns:
        The photograph and its annotated objects.

    One function on purpose: the order of its random draws defines the output bytes (same seed, same
    files), and reading the draws top to bottom keeps that order visible; splitting it would hide it.
    """
    h, w = int(rng.integers(min_side, max_side + 1)), int(rng.integers(min_side, max_side + 1))
    cv = wr.Canvas(h, w)
    floor_y = _background(cv, rng, h, w)
    all_cats = DRAWN_OOD + DRAWN_EXCLUDED
    n = int(rng.integers(1, 5))
    cats = [all_cats[index % len(all_cats)]]
    for _ in range(n - 1):
        cats.append(DRAWN_OOD[int(rng.integers(len(DRAWN_OOD)))] if rng.random() < 0.7
                    else DRAWN_EXCLUDED[int(rng.integers(len(DRAWN_EXCLUDED)))])
    base = min(h, w)
    groups: list[tuple[str, bool]] = []
    placements = []
    for k, cat in enumerate(cats):
        s = base * float(rng.uniform(0.3, 0.7))
        ox = float(rng.uniform(0.2, 0.8)) * w
        oy = float(np.clip(floor_y + float(rng.uniform(-0.1, 0.3)) * h, s * 0.4, h - s * 0.3))
        placements.append((oy, cat, s, ox))
    crowd = index % 5 == 4
    if crowd:
        ccat = CROWD_CATEGORIES[(index // 5) % len(CROWD_CATEGORIES)]
        cx0, cy0 = float(rng.uniform(0.25, 0.75)) * w, float(rng.uniform(0.3, 0.6)) * h
        for _ in range(int(rng.integers(6, 12))):
            s = base * float(rng.uniform(0.07, 0.14))
            placements.append((-1.0, "crowd:" + ccat, s, cx0 + float(rng.normal(0, 0.08)) * w,
                               cy0 + float(rng.normal(0, 0.05)) * h))
    # Crowds first (in the back), then objects from top to bottom of the frame (lower = nearer).
    placements.sort(key=lambda t: t[0])
    crowd_group = 0
    for pl in placements:
        if pl[1].startswith("crowd:"):
            cat = pl[1][6:]
            if crowd_group == 0:
                groups.append((cat, True))
                crowd_group = len(groups)
            _draw_object(_Obj(cv, cat, crowd_group, pl[3], pl[4], pl[2], bool(rng.random() < 0.5)), rng)
        else:
            oy, cat, s, ox = pl
            groups.append((cat, False))
            _draw_object(_Obj(cv, cat, len(groups), ox, oy, s, bool(rng.random() < 0.5)), rng)

    seg = cv.segments()
    tab = cv.tables()
    radiance = wr.render_segments(seg, tab, rng, COCO_LIGHT, None, None, focal=float(w), cx=w / 2,
                                  horizon=floor_y, cam_h=1.0)
    group = tab["group"][seg]
    # Directional gradient over each object (light from the upper left) and a drop shadow behind it.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    obj = group > 0
    grad = 1.0 + 0.25 * ((w / 2 - xx) / w + (h / 2 - yy) / h)
    radiance = np.where(obj[..., None], radiance * grad[..., None], radiance)
    off = int(round(base * 0.04))
    shadow = np.zeros((h, w), dtype=np.float32)
    shadow[off:, off:] = obj[: h - off, : w - off]
    shadow = np.asarray(Image.fromarray((shadow * 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(base / 80)), dtype=np.float32) / 255.0
    radiance = np.where(obj[..., None], radiance, radiance * (1 - 0.45 * shadow)[..., None])
    cam = wr.PhotoCamera(saturation=float(rng.uniform(1.35, 1.7)), contrast=float(rng.uniform(1.1, 1.25)),
                         gamma=2.0, sharpen=int(rng.integers(120, 220)), noise=0.012,
                         chroma_noise=float(rng.uniform(0.03, 0.05)), jpeg_quality=int(rng.integers(62, 77)),
                         warmth=float(rng.uniform(0.85, 1.15)))
    jpeg = wr.photo_camera(radiance, cam, rng)

    objects = []
    for g, (cat, iscrowd) in enumerate(groups, start=1):
        mask = group == g
        if mask.sum() < 16:
            continue
        if iscrowd:
            objects.append(CocoObject(cat, True, mask, mask_to_uncompressed_rle(mask)))
        else:
            polys = mask_to_polygons(mask)
            if polys:
                objects.append(CocoObject(cat, False, mask, polys))
    return CocoPhoto(jpeg=jpeg, height=h, width=w, objects=tuple(objects))
