"""Data access: raw datasets, label encoding, samples and synthetic demo data."""
