"""Per-site ETL: raw recordings (BIDS iEEG, EDF, BrainVision, FIF, manifests) into the store."""
