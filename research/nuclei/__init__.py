"""Nuclei localisation and classification in H&E patches (EXPERIMENTS.md section 6; Bidart et al., SPIE 2018):
a synthetic H&E-like patch generator, the real-data folder format, tile extraction, a small fully
convolutional tile classifier run densely over patches, disc NMS, detection matching and the paper's
per-class metrics, and a Ray Tune trainable reporting each as a metric.

A lab's own project: it imports torch, numpy, Pillow, matplotlib, pydantic and Ray, and nothing from orch."""
