"""The Grafana dashboard: opt-in, in a ConfigMap the sidecar finds, and every query valid PromQL (promtool
parses it) over metrics the operator exports (metrics.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtls_operator.observability.metrics import Metrics
from tests.chart.conftest import CHART, MATRIX, NAMESPACE, RELEASE, Rendered, run, tool

DASHBOARD_FILE = CHART / "files" / "grafana" / "mtls-operator.json"
DASHBOARD = json.loads(DASHBOARD_FILE.read_text())
# Grafana's variables, as Grafana substitutes them before Prometheus sees a query.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*", "$identity": ".*"}
METRIC = re.compile(r"\b(mtls_[a-z_]+)\b")


def _dashboards(rendered: Rendered) -> list[dict[str, Any]]:
    return [cm for cm in rendered.all("ConfigMap") if cm["metadata"]["name"].endswith("-dashboard")]


def _queries() -> list[str]:
    found = [target["expr"] for panel in DASHBOARD["panels"] for target in panel.get("targets", [])]
    found += [var["query"]["query"] for var in DASHBOARD["templating"]["list"] if var["type"] == "query"]
    return found


@pytest.mark.parametrize("name", [n for n in MATRIX if not n.startswith("dashboard")])
def test_opt_in(rendered: dict[str, Rendered], name: str) -> None:
    assert _dashboards(rendered[name]) == []


def test_configmap_for_the_sidecar(rendered: dict[str, Rendered]) -> None:
    (config_map,) = _dashboards(rendered["dashboard"])
    meta = config_map["metadata"]
    assert (meta["name"], meta["namespace"]) == (f"{RELEASE}-dashboard", NAMESPACE)
    assert meta["labels"]["grafana_dashboard"] == "1"
    assert meta["annotations"] == {"grafana_folder": "mTLS"}
    # The file, byte for byte (less the final newline): templating must not touch Grafana's own {{...}}.
    assert config_map["data"] == {"mtls-operator.json": DASHBOARD_FILE.read_text().rstrip("\n")}

    (elsewhere,) = _dashboards(rendered["dashboard-elsewhere"])
    assert elsewhere["metadata"]["namespace"] == "monitoring"
    assert elsewhere["metadata"]["labels"]["grafana-dashboard"] == "mtls"
    assert "grafana_dashboard" not in elsewhere["metadata"]["labels"]  # dropped with null, as Helm merges maps


def test_dashboard_shape() -> None:
    assert DASHBOARD["uid"] == "mtls-operator"
    panels = DASHBOARD["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    titles = {panel["title"] for panel in panels}
    for wanted in ("Earliest certificate expires in", "Certificates issued per second, by reason",
                   "Issuance errors per second, by reason", "CA rotation phase", "Leader"):
        assert wanted in titles
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["description"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    variables = {var["name"] for var in DASHBOARD["templating"]["list"]}
    assert variables == {"datasource", "namespace", "identity"}


def test_every_query_uses_exported_metrics_and_every_metric_is_shown() -> None:
    exported = {sample.name for family in Metrics().registry.collect() for sample in family.samples}
    exported |= {family.name for family in Metrics().registry.collect()}
    # A counter with no label values yet has no sample; its series are named <family>_total.
    exported |= {f"{family.name}_total" for family in Metrics().registry.collect() if family.type == "counter"}
    used = {name for query in _queries() for name in METRIC.findall(query)}
    assert used <= exported, used - exported
    families = {family.name.removesuffix("_total") for family in Metrics().registry.collect()}
    shown = {name.removesuffix("_bucket").removesuffix("_total") for name in used}
    assert families <= shown, families - shown


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule's expression (it has no query-only check offline)."""
    rules = []
    for number, query in enumerate(_queries()):
        expr = query
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unsubstituted variable in {query}"
        if expr.startswith("label_values("):
            metric = expr.removeprefix("label_values(").rsplit(",", 1)[0]
            expr = f"count by ({query.rsplit(',', 1)[1].strip(' )')}) ({metric})"
        rules.append({"record": f"dashboard:query{number}", "expr": expr})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = run(tool("promtool"), "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout
