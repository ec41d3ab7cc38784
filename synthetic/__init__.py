"""The embedded synthetic city, written in the real dataset layouts (Cityscapes, COCO, Fishyscapes L&F).

No Beam and no model code: it depends on :mod:`schemas` only. :mod:`synthetic.world` writes a world
(``stylepaste world``); :mod:`synthetic.city` and :mod:`synthetic.coco` render its frames and photographs with the
drawing primitives of :mod:`synthetic.render`.
"""
