"""API keys: roles, bindings, hashed storage, and which role may call what.

A key looks like `kc_<key id>_<secret>`. Only SHA-256 of the secret is stored (in the data
dir's `api_keys` sub-database, next to the inventory), so a copy of the data file holds no
usable key. A pos key is bound to its terminal, a storefront key to its channel, a supplier key
to its supplier id: what a request says about its own identity never overrides its key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
from pathlib import Path

from . import limits
from .domain.order_requests import ORDER_ID_SEPARATOR
from .engine import Engine, InvalidArgument
from .engine.validate import text
from .keyring import constant_time_equal

ROLES = ("admin", "storefront", "partner", "pos", "supplier")
KEY_PREFIX = "kc_"
key_id_bytes = 8
secret_bytes = 32
ADMIN_KEY_FILE_NAME = "admin.key"
TABLE = "api_keys"

# Which roles each RPC admits (full method name -> roles). Anything not listed is refused. Each
# RPC's proto comment names the same roles (`// Roles: ...`; tests/test_authorization.py holds
# the two equal); what each role then sees of a reply is kamicore.grpc.views'.
_READ_CATALOG = ("admin", "storefront", "partner")
_BUY = ("storefront", "partner")
METHOD_ROLES = {
    "/kamicore.v1.Catalog/CreateSku": ("admin",),
    "/kamicore.v1.Catalog/UpdateSku": ("admin",),
    "/kamicore.v1.Catalog/GetSku": _READ_CATALOG,
    "/kamicore.v1.Catalog/ListSkus": _READ_CATALOG,
    "/kamicore.v1.Inventory/ImportCodes": ("admin", "supplier"),
    "/kamicore.v1.Inventory/GetStock": ("admin", "storefront", "partner", "supplier"),
    "/kamicore.v1.Inventory/FreezeCodes": ("admin",),
    "/kamicore.v1.Inventory/UnfreezeCodes": ("admin",),
    "/kamicore.v1.Inventory/VoidCodes": ("admin",),
    "/kamicore.v1.Inventory/RotateKeys": ("admin",),
    "/kamicore.v1.Orders/CreateOrder": _BUY,
    "/kamicore.v1.Orders/ConfirmPayment": _BUY,
    "/kamicore.v1.Orders/CancelOrder": _BUY,
    "/kamicore.v1.Orders/GetOrder": ("admin", "storefront", "partner"),
    "/kamicore.v1.Orders/GetDelivery": _BUY,
    "/kamicore.v1.Orders/ReportInvalidCode": _BUY,
    "/kamicore.v1.Redemption/Redeem": ("pos",),
    "/kamicore.v1.Redemption/RedeemBatch": ("pos",),
    "/kamicore.v1.Redemption/RedeemStream": ("pos",),
    "/kamicore.v1.Redemption/VerifyCode": ("admin", "pos"),
    "/kamicore.v1.Redemption/UnlockTerminal": ("admin",),
    "/kamicore.v1.Risk/GetRiskRules": ("admin",),
    "/kamicore.v1.Risk/SetRiskRules": ("admin",),
    "/kamicore.v1.Risk/ListReviews": ("admin",),
    "/kamicore.v1.Risk/DecideReview": ("admin",),
    "/kamicore.v1.Suppliers/RegisterSupplier": ("admin",),
    "/kamicore.v1.Suppliers/UpdateSupplier": ("admin",),
    "/kamicore.v1.Suppliers/ListSuppliers": ("admin",),
    "/kamicore.v1.Suppliers/GetSupplierStats": ("admin",),
    "/kamicore.v1.Suppliers/SupplierCallback": ("supplier",),
    "/kamicore.v1.Events/WatchEvents": ROLES,  # each sees only its own (events.visible)
    "/kamicore.v1.Webhooks/RegisterWebhook": ("admin",),
    "/kamicore.v1.Webhooks/UpdateWebhook": ("admin",),
    "/kamicore.v1.Webhooks/ListWebhooks": ("admin",),
    "/kamicore.v1.Webhooks/DeleteWebhook": ("admin",),
    **{f"/kamicore.v1.Reports/{method}": ("admin",) for method in (
        "SalesReport", "SupplierStatement", "StockValuation", "StockExpiring",
        "RedemptionsByTerminal", "RiskDecisions", "ReconcileSettlement", "ListReconciliations",
        "GetReconciliation")},
}
# Served without a key: health checks and reflection.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling, as their key says."""

    key_id: str
    role: str
    binding: str  # channel (storefront), terminal (pos), supplier id (supplier), else ""
    name: str

    @property
    def owner(self) -> str:
        """The namespace of the orders this caller creates and may see."""
        if self.role == "storefront":
            return f"storefront:{self.binding}"
        return f"{self.role}:{self.key_id}"

    @property
    def channel(self) -> str:
        """The sales channel whose prices apply."""
        return self.binding if self.role == "storefront" else self.role


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    key_id: str
    role: str
    binding: str
    name: str
    created_ms: int
    revoked_ms: int


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class StorageFull(Exception):
    """The data file is full: the key was not created or revoked."""


def _storage_full():
    raise StorageFull("the data file is full; nothing changed")


def _store(transaction, key_id: bytes, record: dict) -> None:
    transaction.put(TABLE, key_id, json.dumps(record, sort_keys=True).encode())


def _create(transaction, key_id: bytes, record: dict) -> None:
    record["created_ms"] = transaction.now_ms
    _store(transaction, key_id, record)


def _revoke(transaction, key_id: bytes) -> bool:
    value = transaction.get(TABLE, key_id)
    if value is None:
        return False
    record = json.loads(value)
    if not record.get("revoked_ms"):
        record["revoked_ms"] = transaction.now_ms
        _store(transaction, key_id, record)
    return True


def create_key(engine: Engine, role: str, *, binding: str = "", name: str = "") -> tuple[str,
                                                                                          KeyInfo]:
    """A new key; its plaintext is returned once and never stored."""
    if role not in ROLES:
        raise InvalidArgument("role", f"must be one of {', '.join(ROLES)}")
    needs_binding = {"storefront": "channel", "pos": "terminal", "supplier": "supplier"}
    if role in needs_binding:
        text(binding, needs_binding[role], limits.binding_bytes_max)
        if ORDER_ID_SEPARATOR in binding:
            # an owner namespace must not contain the separator, or "web" could name
            # "web/eu"'s orders (see kamicore.domain.order_requests.order_id_for)
            raise InvalidArgument(needs_binding[role], f"must not contain {ORDER_ID_SEPARATOR!r}")
    elif binding:
        raise InvalidArgument("binding", f"a {role} key is not bound to anything")
    text(name, "name", limits.binding_bytes_max, required=False)
    key_id = secrets.token_hex(key_id_bytes)
    secret = secrets.token_urlsafe(secret_bytes)
    record = {"role": role, "binding": binding, "name": name, "revoked_ms": 0,
              "secret_sha256": _secret_hash(secret)}
    engine.run(engine.plan(_create, (key_id.encode(), record), "keys:create",
                           full=_storage_full))
    info = next(info for info in list_keys(engine) if info.key_id == key_id)
    return f"{KEY_PREFIX}{key_id}_{secret}", info


def revoke_key(engine: Engine, key_id: str) -> bool:
    """Revoke a key by id (the part after kc_); False when there is no such key."""
    text(key_id, "key_id", 2 * key_id_bytes)
    return engine.run(engine.plan(_revoke, (key_id.encode(),), "keys:revoke",
                                  full=_storage_full))


def key_role(view, key_id: str) -> str | None:
    """The role of the key `key_id` (revoked or not) as `view` (an Engine or a plan's
    Transaction) sees it; None when there is no such key."""
    value = view.get(TABLE, key_id.encode())
    return json.loads(value)["role"] if value is not None else None


def list_keys(engine: Engine) -> list[KeyInfo]:
    return [KeyInfo(key.decode(), record["role"], record["binding"], record["name"],
                    record["created_ms"], record["revoked_ms"])
            for key, record in ((key, json.loads(value)) for key, value in engine.scan(TABLE))]


class Authenticator:
    """Checks presented keys against the stored records on every call (a revocation counts at
    once, also one made by another process), remembering only which presented key matched
    which exact stored record, so the hash and parse are done once per key and record."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._verified: dict[str, tuple[bytes, Principal]] = {}

    def __call__(self, presented: str) -> Principal | None:
        if not presented.startswith(KEY_PREFIX):
            return None
        key_id, _, secret = presented[len(KEY_PREFIX):].partition("_")
        if len(key_id) != 2 * key_id_bytes or not secret:
            return None
        value = self.engine.get(TABLE, key_id.encode())
        if value is None:
            return None
        known = self._verified.get(presented)
        if known is not None and known[0] == value:
            return known[1]
        principal = _verify(key_id, secret, value)
        if principal is not None:
            if len(self._verified) >= limits.verified_keys_cached_max:
                self._verified.clear()
            self._verified[presented] = (value, principal)
        return principal


def _verify(key_id: str, secret: str, value: bytes) -> Principal | None:
    record = json.loads(value)
    if not constant_time_equal(_secret_hash(secret).encode(), record["secret_sha256"].encode()):
        return None
    if record["revoked_ms"]:
        return None
    return Principal(key_id, record["role"], record["binding"], record["name"])



def ensure_admin_key(engine: Engine, data_dir: Path) -> Path | None:
    """On first start: create an admin key and write it to <data dir>/admin.key (0600)."""
    if any(info.role == "admin" and not info.revoked_ms for info in list_keys(engine)):
        return None
    key, _ = create_key(engine, "admin", name="first admin")
    path = Path(data_dir) / ADMIN_KEY_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (key + "\n").encode())
    finally:
        os.close(fd)
    return path


