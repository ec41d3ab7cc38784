"""The face of stylepaste: the ``stylepaste`` command (:mod:`stylepaste.cli`), the demo and the study.

It composes the stages' own typed settings and calls their ``run(cfg)``; it sits above every other package
(``schemas``, ``style_transfer``, ``pipelines``, ``synthetic``, ``evaluation``, ``trainer``) and nothing imports it.
"""
