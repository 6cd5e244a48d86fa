"""The webhook configurations the chart installs are the ones the tests, the demo and the bench use.

``mtls_operator.rules.admission.webhook_configurations`` renders them for the emulator; the chart renders
them for a cluster. If the two drift, the integration tests would prove a configuration nobody
installs.
"""

from __future__ import annotations

from typing import Any

from mtls_operator.rules.admission import webhook_configurations

from .conftest import NAMESPACE, Rendered


def _without_chart_labels(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "metadata": {"name": obj["metadata"]["name"]}}


def test_the_chart_renders_the_configurations_the_tests_register(rendered: dict[str, Rendered]) -> None:
    chart = rendered["defaults"]
    mutating = chart.one("MutatingWebhookConfiguration")
    validating = chart.one("ValidatingWebhookConfiguration")
    service = next(obj for obj in chart.all("Service") if obj["metadata"]["name"].endswith("-webhook"))
    expected = webhook_configurations(configuration=mutating["metadata"]["name"],
                                      service=service["metadata"]["name"], namespace=NAMESPACE)
    assert (_without_chart_labels(mutating), _without_chart_labels(validating)) == expected
