"""Catalogues: mapping files, readers, ingestion (with embedding) and content queries."""

from redrec.catalog.catalog import Catalog
from redrec.catalog.ingest import IngestReport, ingest
from redrec.catalog.mapping import Mapping

__all__ = ["Catalog", "IngestReport", "Mapping", "ingest"]
