-- KPI definitions kept as documents, one per kind and identifier: initiatives and dashboards.
CREATE TABLE kpi_documents (
    kind       TEXT NOT NULL,
    identifier TEXT NOT NULL,
    document   TEXT NOT NULL,
    PRIMARY KEY (kind, identifier)
) STRICT;
