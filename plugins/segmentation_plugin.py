"""The Segmentation pages in Airflow's UI: registers the app from ``segmentation.ui`` and a navigation entry."""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from segmentation.ui.app import create_app


class SegmentationPlugin(AirflowPlugin):
    """Mounts the Segmentation app at /segmentation and adds "Segmentation" to Airflow's navigation."""

    name = "segmentation"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": create_app(), "url_prefix": "/segmentation", "name": "Segmentation"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Segmentation",
            "href": "/segmentation/",
            "destination": "nav",
            "url_route": "segmentation",
            "nav_top_level": True,
        }
    ]
