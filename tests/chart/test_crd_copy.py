"""The chart carries the CRD as a copy of the single source, the top-level crds/mtlsidentity.yaml."""

from __future__ import annotations

from tests.chart.conftest import CHART, ROOT

SOURCE = ROOT / "crds" / "mtlsidentity.yaml"
CHART_COPY = CHART / "files" / "crds" / "mtlsidentity.yaml"


def test_chart_copy_is_identical() -> None:
    assert CHART_COPY.read_bytes() == SOURCE.read_bytes(), "the chart's CRD is stale: run `make crds`"


def test_chart_has_no_special_crds_directory() -> None:
    """Helm would install a chart's crds/ directory on its own, unconditionally, and never upgrade it;
    templates/crds.yaml renders the copy instead (crds.enabled, crds.keep)."""
    assert not (CHART / "crds").exists()
