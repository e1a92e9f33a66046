"""Surface invalid campaign configs and ingestion sources as an Airflow DAG import error.

The campaigns and sources themselves are built by campaigns_dag.py and ingestion_dag.py,
which never raise: an invalid config there becomes a failing placeholder DAG so the others
keep running. This file raises instead, so the Airflow UI's import-errors banner names each
broken file, field and fix. It defines no DAG (and needs the words airflow and dag to be
parsed at all).
"""


from campaign_orchestrator.dag_factory import config_error_summary
from campaign_orchestrator.ingestion.dag_factory import source_error_summary

_summary = "\n\n".join(filter(None, [config_error_summary(), source_error_summary()]))
if _summary:
    raise ValueError(_summary)
