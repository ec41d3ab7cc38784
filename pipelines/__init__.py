"""Apache Beam pipelines: the object bank from COCO (:mod:`pipelines.bank`) and the augmented corpus
(:mod:`pipelines.augment`), with their shared deterministic shard writer (:mod:`pipelines.beam_io`)."""
