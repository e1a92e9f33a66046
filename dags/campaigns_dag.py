"""One Airflow DAG per campaign file in dags/campaigns/ (the airflow DAG factory entry point).

Everything happens in campaign_orchestrator.dag_factory; this file only says where the
configs are (dags/campaigns/, or $CAMPAIGNS_CONFIG_DIR). Parsing reads YAML and builds DAG objects: no database or network access.
"""


from campaign_orchestrator.dag_factory import build_dags

build_dags(globals())
