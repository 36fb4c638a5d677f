"""Dagster metadata built from the Pandera models: column schemas, row counts, previews."""

from __future__ import annotations

import dagster as dg
import polars as pl

from pipelines.core.schemas import column_descriptions, table_description
from pipelines.core.warehouse import TableDoc


def table_doc(model) -> TableDoc:
    """The same text for DuckDB COMMENT ON as for the Dagster UI."""
    return TableDoc(table_description(model), column_descriptions(model))


def column_schema(model) -> dg.TableSchema:
    """Column names, types and descriptions, straight from the Pandera model."""
    columns = model.to_schema().columns
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, str(columns[name].dtype), description=text)
            for name, text in column_descriptions(model).items()
        ]
    )


def definition_metadata(model) -> dict[str, object]:
    """Metadata shown on an asset before it is ever materialized."""
    return {"dagster/column_schema": column_schema(model)}


def frame_metadata(model, frame: pl.DataFrame) -> dict[str, object]:
    return {
        "dagster/row_count": frame.height,
        "dagster/column_schema": column_schema(model),
    }


def preview(frame: pl.DataFrame, rows: int = 10) -> dg.MarkdownMetadataValue:
    head = frame.head(rows)
    lines = [
        "| " + " | ".join(head.columns) + " |",
        "|" + "---|" * len(head.columns),
        *(
            "| " + " | ".join("" if v is None else str(v) for v in row) + " |"
            for row in head.iter_rows()
        ),
    ]
    return dg.MetadataValue.md("\n".join(lines))
