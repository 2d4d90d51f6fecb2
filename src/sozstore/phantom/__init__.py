"""Synthetic multi-site SEEG cohorts written in each site's real layout."""
