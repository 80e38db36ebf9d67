"""The supplier protocol (proto/kamicore/supplier/v1): generated code in kamicore.supplier.v1."""
