"""Surface invalid campaign configs as an Airflow DAG import error.

The campaigns themselves are built by campaigns_dag.py, which never raises: an invalid
config there becomes a failing placeholder DAG so the others keep running. This file
raises instead, so the Airflow UI's import-errors banner names each broken file, field and
fix. It defines no DAG (and needs the words airflow and dag to be parsed at all).
"""


from campaign_orchestrator.dag_factory import config_error_summary

_summary = config_error_summary()
if _summary:
    raise ValueError(_summary)
