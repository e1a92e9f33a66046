"""One Airflow DAG per ingestion source in dags/ingestion/ (ingest_<id>; the ingestion DAG
factory entry point).

Everything happens in campaign_orchestrator.ingestion.dag_factory; this file only says where
the sources are (dags/ingestion/, or $CAMPAIGNS_INGESTION_DIR). Parsing reads YAML and builds
DAG objects: no database or network access.
"""


from campaign_orchestrator.ingestion.dag_factory import build_ingestion_dags

build_ingestion_dags(globals())
