"""The study: a grid of training runs (architectures × seeds × EFM variants), its cells checked
to form one study, and its analysis.

- :mod:`efm_seg.study.grid`: the cells and the exact recipe of each;
- :mod:`efm_seg.study.cells`: the saved cells checked against the current configuration;
- :mod:`efm_seg.study.analysis`, :mod:`~efm_seg.study.summary`, :mod:`~efm_seg.study.plot`,
  :mod:`~efm_seg.study.markdown`: per-seed tables, paired differences and their write-up.
"""
