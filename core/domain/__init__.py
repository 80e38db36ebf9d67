"""Business rules with their own result types: catalog and orders (risk, suppliers, ledger and
vouchers come here). No *_pb2 and no LMDB: writes are plans run by the engine's commit path,
reads go through the engine's API, and everything is tested without a server."""
