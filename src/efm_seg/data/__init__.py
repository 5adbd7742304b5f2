"""Data: raw folders and layouts, label schemes, imagery and bands, the sample store, tiling and
encoding, the split, scenes to predict, and the synthetic demo — no Kedro, no torch."""
