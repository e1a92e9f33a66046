"""Loading customer data into the campaign store: sources as config (``dags/ingestion/*.yaml``),
files or queries streamed into a staging table by COPY, one set-based merge per load, rejects,
schema drift, freshness and the Assets that start ``on_data`` campaigns."""
