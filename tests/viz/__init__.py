"""The static kedro-viz site, rendered in a headless browser."""
