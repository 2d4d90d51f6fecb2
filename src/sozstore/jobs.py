"""Jobs that chain library steps, shared by the command line and the demo.

``sozstore etl`` and the demo both ingest a site and then compute its default feature sets;
the sequence, and the thread defaults it runs with, are written here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sozstore.store._docs import fill_doc
from sozstore.store.locks import LOCK_WAIT_S

if TYPE_CHECKING:
    from sozstore.etl.config import SiteConfig
    from sozstore.etl.features.engine import FeatureReport
    from sozstore.etl.pipeline import RunReport
    from sozstore.store import StoreLike


@dataclass
class SiteIngest:
    """What :func:`ingest_site` did: the ETL report and, when computed, the feature report."""

    etl: RunReport
    features: FeatureReport | None

    @property
    def exit_code(self) -> int:
        """0: success; 1: partial success; 2: nothing ingested (see ``RunReport.exit_code``)."""
        code = self.etl.exit_code
        if self.features is not None and self.features.failed:
            code = max(code, 1)
        return code


@fill_doc
def ingest_site(config: SiteConfig, store: StoreLike, *, workers: int = 1,
                progress: bool = True, features: bool = True,
                lock_wait_s: float = LOCK_WAIT_S, deep_check: bool = False) -> SiteIngest:
    """Ingest one site's recordings, then compute its default feature sets.

    Parameters
    ----------
    config : SiteConfig
        The validated site configuration.
    %(store)s
        Created if missing.
    workers : int
        Recordings processed in parallel, for the ETL and the features alike.
    %(progress)s
    features : bool
        Compute the default feature sets for this site after the ETL. Skipped when nothing
        was ingested.
    lock_wait_s : float
        Seconds to wait while another run writes the same site (docs/commit-protocol.md).
    deep_check : bool
        Re-read every stored byte of recordings and partitions that look up to date, so a
        flipped byte is found and re-created (default: metadata, footers and chunk files).

    Returns
    -------
    SiteIngest
        Both reports; ``exit_code`` combines them.
    """
    from sozstore.etl.features.engine import compute_features, default_threads
    from sozstore.etl.pipeline import run_site
    from sozstore.store import Store

    store = Store.open(store)
    report = run_site(config, store, workers=workers, progress=progress,
                      lock_wait_s=lock_wait_s, deep_check=deep_check)
    feats = None
    if features and report.exit_code < 2:
        feats = compute_features(store, site=config.name, workers=workers, progress=progress,
                                 threads=default_threads(), lock_wait_s=lock_wait_s,
                                 deep_check=deep_check)
    return SiteIngest(report, feats)
