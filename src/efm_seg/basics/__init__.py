"""The library's basics: stage names, mapping helpers, devices, atomic writes, lineage
fingerprints, run provenance, durations as text and the sliding window's rule. No Kedro;
nothing else of efm_seg."""
