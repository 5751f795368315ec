"""The Segmentation pages and JSON API served inside Airflow's UI (mounted by ``plugins/segmentation_plugin.py``).

Modules: ``app`` (the FastAPI app), ``security`` (Airflow's auth manager, permissions, CSRF), ``queries`` (all
SQL, bound parameters only), ``charts`` (chart data for the pages), ``champion`` (the cached champion model
for the what-if form), ``insights`` and ``insight_queries`` (segment transitions and realised quality).
"""
