"""The raw data table on the page: sortable columns, the score as a bar, a CSV download."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from .rows import Row, table, to_csv


def show_table(data: Sequence[Row], key: str, file_name: str) -> None:
    cfg = st.column_config
    st.dataframe(
        table(data), hide_index=True, key=key, width="stretch",
        column_config={
            "ID": cfg.NumberColumn("ID", help="input order", width="small"),
            "Text": cfg.TextColumn("Text", width="medium"),
            "Raw Score": cfg.NumberColumn("Raw Score", format="%.4f", help="the reranker's logit"),
            "Normalized Score": cfg.ProgressColumn("Normalized Score", format="%.4f", min_value=0.0, max_value=1.0,
                                                   color="auto", help="sigmoid of the raw score; green above 0.5"),
            "Retrieval Score": cfg.NumberColumn("Retrieval Score", format="%.4f",
                                                help="fused (RRF), cosine or BM25 score from recall; "
                                                "1/position in the recall list for whoever may not read "
                                                "every document"),
            "Rank": cfg.NumberColumn("Rank", width="small"),
        })
    st.download_button("Download CSV", data=to_csv(data), file_name=file_name, mime="text/csv", key=f"{key}-csv",
                       on_click="ignore", icon=":material/download:")
