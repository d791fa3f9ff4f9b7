"""Apache Beam wiring only: PTransforms around `corpus/` functions, counters, and entry points."""
