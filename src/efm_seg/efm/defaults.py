"""The method's default constants (the paper's values where it gives them), without torch:
the parameter schemas read them when the CLI starts."""

DEFAULT_ALPHA = 0.6
"""α of eq. 4, the paper's empirical value."""

DEFAULT_SIGMA = 2.0
"""Standard deviation, in pixels, of the Gaussian of eq. 5 (the paper leaves it open).

Two pixels removes isolated single-pixel speckle (the stated purpose of eq. 5) while keeping the
map local: the half-maximum width is 2.355·σ ≈ 5 px, i.e. the focus stays within a few pixels of
an error or an uncertain edge instead of washing over whole objects of a 512² aerial tile.
"""

DEFAULT_GAMMA = 1.2
"""γ of eq. 8, the paper's value."""

DEFAULT_KERNEL_SIZE = 3
"""Pooling window of eq. 8 (the paper leaves it open).

3×3 is the elementary morphological neighbourhood: it marks exactly the pixels that touch another
class (a band one pixel wide on each side of every edge). Wider bands can be asked for.
"""

DEFAULT_ALPHA_F = 2.0
"""α_f of eqs. 7/9, the paper's value ("α = 2.0" in section 3.3)."""

DEFAULT_BETA_F = 1.5
"""β_f of eqs. 7/9, the paper's value ("β = 1.5" in section 3.3)."""

DEFAULT_LAMBDA_CE = 1.0
"""λ1 of eqs. 6/10. The paper gives no value, only a "balanced" CE + Dice: equal weights."""

DEFAULT_LAMBDA_DICE = 1.0
"""λ2 of eqs. 6/10, equal to λ1 (see :data:`DEFAULT_LAMBDA_CE`)."""

DEFAULT_LABEL_SMOOTHING = 0.05
"""Label smoothing of the CE, the paper's value (section 3.3)."""

DEFAULT_TOPK_RATIO = 0.25
"""Fraction k of eq. 11 (the paper leaves it open).

The hardest quarter of each image's valid pixels, a moderate hard-pixel-mining ratio: 65 536
pixels of a 512² tile is still a large, stable sample, the CE term concentrates on the hardest
(edge / error / uncertain) pixels, and the Dice term keeps seeing every pixel. ``1.0`` turns
the selection off.
"""
