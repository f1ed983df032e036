"""Glue for optional third-party libraries; each module imports its library lazily, with an install hint."""
