"""Data: BraTS discovery, NIfTI I/O, normalisation, phantom cohort, TFRecords and tf.data."""
