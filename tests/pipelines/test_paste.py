from __future__ import annotations

import numpy as np
import pytest

from pipelines.paste import (
    DROP_INVISIBLE,
    DROP_MISSING_OBJECT,
    DROP_NO_PLACEMENT,
    VOID_LABEL_IDS,
    Anchor,
    Candidate,
    FramePlan,
    PasteConfig,
    Slot,
    compose_frame,
    forbidden_mask,
    object_size,
    paste,
    place_candidates,
    plan_frame,
    resize_object,
    slot_outcomes,
    tighten,
)
from schemas.labels import EGO_VEHICLE_ID, IGNORE, OOD, label_ids_to_train_ids

H, W = 64, 128


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """labelIds: sky on top, building, road below, sidewalk strip, ego vehicle at the bottom."""
    lid = np.full((H, W), 23, np.uint8)  # sky
    lid[16:32] = 11  # building
    lid[32:56] = 7  # road
    lid[32:56, :12] = 8  # sidewalk
    lid[56:] = EGO_VEHICLE_ID
    lid[40:44, 60:64] = 4  # a "static" void blob on the road
    return label_ids_to_train_ids(lid), lid


def _bank(n: int = 20) -> np.ndarray:
    return np.arange(1000, 1000 + 7 * n, 7, dtype=np.int64)


def _crop(oid: int, h: int = 20, w: int = 10, color=(200, 30, 30)):
    rgb = np.zeros((h + 4, w + 6, 3), np.uint8)
    rgb[...] = (10, 200, 10)
    mask = np.zeros((h + 4, w + 6), np.uint8)
    mask[2:2 + h, 3:3 + w] = 1
    rgb[mask.astype(bool)] = color
    return tighten(oid, rgb, mask, category_id=oid % 3, category_name=f"c{oid % 3}", source_file=f"img{oid}.jpg")


def test_forbidden_mask_covers_void_and_ego():
    tid, lid = _scene()
    f = forbidden_mask(tid, lid)
    assert f[60, 5] and f[41, 61]
    assert not f[40, 30] and not f[5, 5]
    assert EGO_VEHICLE_ID in VOID_LABEL_IDS and 7 not in VOID_LABEL_IDS
    assert np.array_equal(forbidden_mask(tid, None), tid == IGNORE)
    with pytest.raises(ValueError, match="shape"):
        forbidden_mask(tid, lid[:10])


def test_plan_is_deterministic_and_keyed_by_frame():
    tid, lid = _scene()
    cfg = PasteConfig(paste_prob=1.0)
    a = plan_frame("aachen_000000_000019", tid, lid, _bank(), cfg, 3)
    b = plan_frame("aachen_000000_000019", tid.copy(), lid.copy(), _bank(), cfg, 3)
    c = plan_frame("aachen_000001_000019", tid, lid, _bank(), cfg, 3)
    d = plan_frame("aachen_000000_000019", tid, lid, _bank(), cfg, 4)
    assert a == b
    assert a != c and a != d
    assert 1 <= len(a.slots) <= 3
    assert all(len(s.candidates) == cfg.candidates_per_slot for s in a.slots)
    assert set(a.object_ids()) <= set(_bank().tolist())


def test_plan_paste_probability_and_counts():
    tid, lid = _scene()
    assert not plan_frame("f", tid, lid, _bank(), PasteConfig(paste_prob=0.0), 0).pastes
    assert not plan_frame("f", tid, lid, np.zeros(0, np.int64), PasteConfig(paste_prob=1.0), 0).pastes
    cfg = PasteConfig(paste_prob=0.5, objects_min=2, objects_max=2)
    plans = [plan_frame(f"city_{i:06d}_000019", tid, lid, _bank(), cfg, 0) for i in range(200)]
    share = np.mean([p.pastes for p in plans])
    assert 0.38 < share < 0.62
    assert all(len(p.slots) == 2 for p in plans if p.pastes)


def test_anchors_lie_on_allowed_surfaces_and_scales_are_log_uniform():
    tid, lid = _scene()
    cfg = PasteConfig(paste_prob=1.0, scale_min=0.02, scale_max=0.5)
    forb = forbidden_mask(tid, lid)
    scales, on_road = [], []
    for i in range(150):
        plan = plan_frame(f"c_{i:06d}_000001", tid, lid, _bank(), cfg, 1)
        for s in plan.slots:
            for c in s.candidates:
                assert len(c.anchors) == cfg.anchors_per_candidate
                assert len({a.scale for a in c.anchors}) == 1
                scales.append(c.anchors[0].scale)
                for a in c.anchors:
                    assert not forb[a.y, a.x]
                    assert tid[a.y, a.x] in (0, 1)  # road or sidewalk (no terrain in this scene)
                    on_road.append(tid[a.y, a.x] == 0)
    scales = np.array(scales)
    assert scales.min() >= 0.02 and scales.max() <= 0.5
    # log-uniform: the median is near the geometric mean and small objects dominate
    assert abs(np.log(np.median(scales)) - 0.5 * np.log(0.02 * 0.5)) < 0.3
    assert np.mean(scales < (0.02 + 0.5) / 2) > 0.7
    # road weight 0.8 vs sidewalk 0.1 (renormalised: 0.89 / 0.11)
    assert 0.8 < np.mean(on_road) < 0.96


def test_plan_perspective_ties_scale_to_row():
    tid, lid = _scene()
    cfg = PasteConfig(paste_prob=1.0, perspective=True)
    ys, ss = [], []
    for i in range(60):
        for s in plan_frame(f"p_{i:06d}_000001", tid, lid, _bank(), cfg, 0).slots:
            for c in s.candidates:
                ys += [a.y for a in c.anchors]
                ss += [a.scale for a in c.anchors]
    assert np.corrcoef(ys, np.log(ss))[0, 1] > 0.6
    assert min(ss) >= cfg.scale_min and max(ss) <= cfg.scale_max


def test_plan_class_balanced():
    tid, lid = _scene()
    bank = np.arange(100, dtype=np.int64)
    cats = np.where(bank < 95, 1, 2)  # 95 objects of category 1, 5 of category 2
    cfg = PasteConfig(paste_prob=1.0, class_balanced=True)
    picks = []
    for i in range(100):
        picks += plan_frame(f"b_{i:06d}_000001", tid, lid, bank, cfg, 0, cats).object_ids()
    rare = np.mean(np.asarray(picks) >= 95)
    assert 0.3 < rare < 0.7
    with pytest.raises(ValueError, match="category"):
        plan_frame("x", tid, lid, bank, cfg, 0)


def test_plan_rejects_bad_inputs():
    tid, lid = _scene()
    with pytest.raises(ValueError, match="sorted"):
        plan_frame("x", tid, lid, np.array([3, 1, 2]), PasteConfig(), 0)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        plan_frame("x", tid[None], lid, _bank(), PasteConfig(), 0)
    with pytest.raises(ValueError, match="scale range"):
        PasteConfig(scale_min=0.5, scale_max=0.1)
    with pytest.raises(ValueError, match="objects per frame"):
        PasteConfig(objects_min=3, objects_max=1)


def test_object_size_and_resize():
    assert object_size((20, 10), 0.25, 64) == (16, 8)
    assert object_size((10, 40), 0.5, 64) == (8, 32)
    assert object_size((10, 10), 0.001, 64, min_px=4) == (4, 4)
    crop = _crop(1, 20, 10)
    assert crop.mask.all() and crop.rgb.shape == (20, 10, 3)
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :3] = 255
    mask = np.zeros((4, 6), bool)
    mask[:, :2] = True
    out, m = resize_object(rgb, mask, (8, 12), flip=True)
    assert out.shape == (8, 12, 3) and m.shape == (8, 12)
    assert m[:, -3:].all() and not m[:, :6].any()  # flipped to the right side
    assert out[0, -1, 0] == 255 and out[0, 0, 0] == 0
    with pytest.raises(ValueError, match="empty"):
        tighten(5, rgb, np.zeros((4, 6)))


def _plan_with(anchors_by_slot, scale=0.25, ids=None) -> FramePlan:
    slots = []
    for s, anchor_lists in enumerate(anchors_by_slot):
        cands = []
        for c, anchors in enumerate(anchor_lists):
            oid = ids[s][c] if ids else 10 * s + c
            cands.append(Candidate(oid, False, tuple(Anchor(x, y, scale) for x, y in anchors)))
        slots.append(Slot(s, tuple(cands)))
    return FramePlan("f", 0, H, W, tuple(slots))


def test_place_candidates_avoids_forbidden_and_earlier_slots():
    tid, lid = _scene()
    forb = forbidden_mask(tid, lid)
    crops = {oid: _crop(oid) for oid in (0, 1, 10, 11)}
    # slot 0 cand 0: first anchor would reach into the ego vehicle (y=60), second is fine.
    # slot 1 cand 0: same spot as slot 0's placement -> must move to its second anchor.
    plan = _plan_with([[[(30, 60), (30, 50)], [(90, 50)]],
                       [[(30, 50), (50, 50)], [(200, 50), (0, 50)]]])
    places, drops = place_candidates(plan, crops, forb)
    by_key = {p.key: p for p in places}
    assert by_key[(0, 0)].anchor == 1 and by_key[(0, 0)].box == (26, 35, 30 + 4, 51)
    assert by_key[(0, 1)].anchor == 0
    assert by_key[(1, 0)].anchor == 1
    assert [(d.slot, d.candidate, d.reason) for d in drops] == [(1, 1, DROP_NO_PLACEMENT)]
    canvas = np.zeros((H, W), int)
    for p in places:
        x0, y0, x1, y1 = p.box
        assert not (forb[y0:y1, x0:x1] & p.mask).any()
        canvas[y0:y1, x0:x1] += p.mask
    assert canvas.max() == 1  # no two placed candidates overlap
    places2, drops2 = place_candidates(plan, {0: crops[0]}, forb)
    assert {d.reason for d in drops2} == {DROP_MISSING_OBJECT}
    assert [p.key for p in places2] == [(0, 0)]


def test_paste_labels_exactly_the_resized_mask():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    label = np.zeros((H, W), np.uint8)
    obj = np.full((10, 20, 3), 250, np.uint8)
    mask = np.zeros((10, 20), bool)
    mask[2:8, 4:16] = True
    box = (40, 10, 60, 30)  # 2x upscale in y, 1x in x
    for mode in ("none", "feather", "laplacian"):
        rgb, lab, n = paste(frame, label, obj, mask, box, mode)
        _, m = resize_object(obj, mask, (20, 20))
        expected = np.zeros((H, W), bool)
        expected[10:30, 40:60] = m
        assert np.array_equal(lab == OOD, expected)
        assert n == expected.sum() > 0
        # pixels outside the object keep the frame exactly; the object's interior shows the object
        assert np.array_equal(rgb[~expected], frame[~expected])
        # (laplacian blending moves the low frequencies of a small object towards the background)
        assert (rgb[18:22, 48:52] >= (240 if mode != "laplacian" else 180)).all()
    assert not (label == OOD).any()  # inputs untouched
    rgb, lab, _ = paste(frame, label, obj, mask, box, "none", flip=True)
    _, m = resize_object(obj, mask, (20, 20), flip=True)
    assert np.array_equal(lab[10:30, 40:60] == OOD, m)
    with pytest.raises(ValueError, match="inside"):
        paste(frame, label, obj, mask, (120, 10, 140, 30))
    with pytest.raises(ValueError, match="blend"):
        paste(frame, label, obj, mask, box, "poisson")


def test_compose_redraws_invisible_and_counts_drops():
    tid, lid = _scene()
    frame = np.zeros((H, W, 3), np.uint8)
    frame[...] = (128, 64, 128)
    grey = _crop(0, color=(128, 64, 128))  # same colour as the road: invisible
    red = _crop(1, color=(230, 20, 20))
    crops = {0: grey, 1: red, 10: grey, 11: grey}
    plan = _plan_with([[[(30, 50)], [(70, 50)]], [[(100, 50)], [(110, 50)]]])
    places, drops = place_candidates(plan, crops, forbidden_mask(tid, lid))
    assert not drops
    res = compose_frame(frame, tid, places, {}, crops, blend="feather", min_contrast=0.5)
    assert [(o.slot, o.candidate, o.object_id) for o in res.objects] == [(0, 1, 1)]
    assert res.objects[0].contrast >= 0.5 and res.objects[0].category_name == "c1"
    assert [(d.slot, d.candidate, d.reason) for d in res.drops] == [
        (0, 0, DROP_INVISIBLE), (1, 0, DROP_INVISIBLE), (1, 1, DROP_INVISIBLE)]
    assert slot_outcomes(plan, drops, res) == {0: "pasted", 1: DROP_INVISIBLE}
    assert res.ood_pixels == res.objects[0].ood_pixels == (res.label == OOD).sum() > 0
    x0, y0, x1, y1 = res.objects[0].box
    assert (res.label[:, :x0] != OOD).all()  # slot 0 candidate 0 (grey, left) was not pasted
    # without a threshold every slot keeps its first candidate
    res0 = compose_frame(frame, tid, places, {}, crops, blend="none", min_contrast=0.0)
    assert [(o.slot, o.candidate) for o in res0.objects] == [(0, 0), (1, 0)] and not res0.drops
    # an aligned replacement is used instead of the placement's pixels
    aligned = {p.key: np.full_like(p.rgb, 7) for p in places}
    res2 = compose_frame(frame, tid, places, aligned, crops, blend="none")
    assert (res2.rgb[res2.label == OOD] == 7).all()


def test_slot_outcomes_reasons():
    tid, lid = _scene()
    forb = np.ones((H, W), bool)  # nowhere to go
    plan = _plan_with([[[(30, 50)], [(70, 50)]], [[(100, 50)]]], ids=[[0, 99], [98]])
    places, drops = place_candidates(plan, {0: _crop(0)}, forb)
    assert not places
    assert slot_outcomes(plan, drops, None) == {0: DROP_NO_PLACEMENT, 1: DROP_MISSING_OBJECT}


def test_max_upscale_limits_the_pasted_size():
    tid, lid = _scene()
    crop = _crop(0, 10, 5)  # longer side 10 px
    plan = _plan_with([[[(60, 54)]]], scale=0.6, ids=[[0]])  # asks for 38 px
    forb = np.zeros((H, W), bool)
    (p,), _ = place_candidates(plan, {0: crop}, forb, max_upscale=2.0)
    assert p.mask.shape == (20, 10) and p.scale == pytest.approx(20 / H)
    (q,), _ = place_candidates(plan, {0: crop}, forb, max_upscale=0.0)
    assert q.mask.shape == (38, 19) and q.scale == pytest.approx(38 / H)
    with pytest.raises(ValueError, match="max_upscale"):
        PasteConfig(max_upscale=0.5)
