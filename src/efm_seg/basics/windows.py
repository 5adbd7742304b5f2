"""The sliding window's rule: checked by the ``predict`` parameters when a session starts, and by
the sliding-window inference for any caller."""


def check_window(window: int, overlap: int) -> None:
    if window < 1:
        raise ValueError(f"window must be at least 1 pixel, got {window}")
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, window={window}), got {overlap}")
    if overlap > window // 2:
        raise ValueError(
            f"overlap {overlap} is more than half the window {window}: every pixel would be "
            "predicted more than four times"
        )
