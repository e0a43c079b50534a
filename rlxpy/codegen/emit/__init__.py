"""Reusable emitters, registered nowhere: the function and kernel builders, vector helpers, the
register tile with its packers and stores, the upsampling sampler, and the epilogue (pointwise
steps applied to values in registers). Rules (in `rules`) are built from these."""
