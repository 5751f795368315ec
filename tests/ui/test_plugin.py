"""The plugin file only registers the app and the navigation entry; every deployment loads the plugins folder."""

from __future__ import annotations

import runpy

import pytest
import yaml

from tests.ui.conftest import ROOT

pytestmark = pytest.mark.airflow


def test_the_plugin_registers_the_app_at_segmentation_and_a_nav_entry(airflow_env: str) -> None:
    from fastapi import FastAPI

    plugin = runpy.run_path(str(ROOT / "plugins" / "segmentation_plugin.py"))["SegmentationPlugin"]
    [app] = plugin.fastapi_apps
    assert app["url_prefix"] == "/segmentation" and isinstance(app["app"], FastAPI)
    [view] = plugin.external_views
    assert view["name"] == "Segmentation" and view["destination"] == "nav" and view["href"] == "/segmentation/"


def test_compose_and_the_celery_stack_load_the_plugins_folder() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    env = compose["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/segmentation/plugins"
    assert "plugins" not in (ROOT / ".dockerignore").read_text()  # the image holds the plugins folder
    assert '"AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins")' in (ROOT / "tests/distributed/stack.py").read_text()
