"""The store: DuckDB schema and transactions, the FAISS file and the ANN choice, on-disk lists,
the writer lock, the user's decisions, and the quarantine with its safe moves. It knows nothing
of the model or of images."""
