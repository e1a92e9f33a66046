# Image for every Airflow service in docker-compose.yml: the official Airflow image plus the
# project's pinned dependencies and the campaign_orchestrator package (with its `campaigns` CLI).
ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_BASE_IMAGE}

# The official image installs Python packages as the `airflow` user (never as root).
USER airflow

# Dependencies first, so editing project code does not invalidate this (slow) layer.
# Naming apache-airflow==${AIRFLOW_VERSION} (set by the base image) next to the lock file makes
# the build fail, instead of silently replacing Airflow, if requirements.txt ever pins a
# different Airflow than the base image ships.
COPY --chown=airflow:0 requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/requirements.txt

# Editable install rooted at /opt/airflow: the package resolves to /opt/airflow/plugins, which
# docker-compose bind-mounts from ./plugins, so code edits on the host are live in every
# container while the `campaigns` console script still exists in the image.
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
RUN pip install --no-cache-dir --no-deps -e /opt/airflow

# Baked in as well so the image also runs without the development bind mounts.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 include/ /opt/airflow/include/

# ProjectPaths would find /opt/airflow from the package location anyway; being explicit keeps
# the CLI and the DAGs agreeing on where dags/ and include/ are.
ENV CAMPAIGNS_HOME=/opt/airflow
