"""``python -m efm_seg.data.synthetic OUT_DIR ...``: write the demo dataset."""

from efm_seg.data.synthetic.scenes import main

main()
