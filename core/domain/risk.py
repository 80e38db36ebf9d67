"""Risk: every CreateOrder is scored before anything is reserved (rules: kamicore.domain.
risk_rules).

Scoring runs inside the order's own plan, in the writer's transaction, and the counters it
reads are updated in that same commit when the order is created: the one writer of the data
file serialises every worker's orders, so velocity counts are exact across worker processes.
A dry run scores on a read snapshot and never waits for the writer.

Tables:
- `risk_rules`: b"version" -> the current version (ASCII digits); b"current" -> JSON of the
  version, its rule set, who set it and when. Each worker keeps the compiled rule set of the
  version it last read and reads the version key in every order's transaction, so a change
  applies to the next order in every worker.
- `risk_history`: version (8 bytes, big-endian) -> JSON of that version (the audit of changes).
- `risk_counters`: b"v" + subject + window + identifier hash -> (window number, orders);
  b"q" + account hash + sku -> (UTC day number, units); b"f" + account hash -> first seen ms.
Accounts, IPs and devices appear only as keyed hashes (HMAC-SHA256 under a key derived from
the data file's lookup key), never in the clear; accounts are hashed with their owner, so one
storefront's account "42" is not another's.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import json
import struct

from .. import keyring
from ..statuses import SetRiskRulesStatus
from . import risk_rules
from .risk_rules import DAY_MS, HASHED_PREFIX, SEVERITY, WINDOWS_MS

RULES_TABLE = "risk_rules"
HISTORY_TABLE = "risk_history"
COUNTERS_TABLE = "risk_counters"
VERSION_KEY = b"version"
CURRENT_KEY = b"current"
KEY_PURPOSE = b"kamicore risk identifiers v1"  # the risk key = HMAC(lookup key, this)
HASH_BYTES = 16
_COUNT = struct.Struct(">qq")
_SUBJECT_BYTE = {"account": b"a", "ip": b"i", "device": b"d"}
_WINDOW_BYTE = {"minute": b"m", "hour": b"h"}


@dataclasses.dataclass(frozen=True)
class Buyer:
    """What scoring knows of one order."""

    owner: str
    channel: str
    account: str
    ip: str
    device: str
    phone_bound: bool
    account_created_ms: int  # as the storefront knows it; 0: unknown
    verifications: frozenset  # verifications the storefront asserts the buyer passed


@dataclasses.dataclass
class Compiled:
    version: int
    rules: dict  # as validated
    blocked: dict  # block kind -> set of stored values (block_ip: list of networks)
    windows: set  # (subject, window) pairs some velocity rule reads


def _decode(value: bytes) -> tuple[int, int]:
    return _COUNT.unpack(value)


class Risk:
    """The rule cache and identifier hasher of one process."""

    def __init__(self, lookup_key: bytes):
        self._hash = keyring.LookupHasher(hmac.digest(lookup_key, KEY_PURPOSE, "sha256"))
        self._compiled = self._compile(0, risk_rules.validate(risk_rules.DEFAULT_RULES,
                                                               self.hash_identifier))

    def hash_identifier(self, subject: str, value: str) -> bytes:
        return self._hash(f"{subject}\0{value}".encode())[:HASH_BYTES]

    def _compile(self, version: int, rules: dict) -> Compiled:
        blocked, windows = {}, set()
        for rule in rules["rules"]:
            if rule["kind"] == "block_ip":
                blocked[rule["name"]] = [ipaddress.ip_network(value, strict=False)
                                         for value in rule["values"]]
            elif rule["kind"].startswith("block_"):
                blocked[rule["name"]] = set(rule["values"])
            elif rule["kind"] == "velocity":
                windows.add((rule["subject"], rule["window"]))
        return Compiled(version, rules, blocked, windows)

    def rules(self, transaction) -> Compiled:
        """The current rule set as `transaction` sees it (compiled once per version)."""
        raw = transaction.get(RULES_TABLE, VERSION_KEY)
        version = int(raw) if raw is not None else 0
        compiled = self._compiled
        if compiled.version != version:
            stored = json.loads(transaction.get(RULES_TABLE, CURRENT_KEY))
            compiled = self._compiled = self._compile(version, stored["rules"])
        return compiled

    # -- scoring -----------------------------------------------------------------------

    def assess(self, transaction, buyer: Buyer, lines: dict[str, int],
               total_micros: int) -> dict | None:
        """The order scored: {"decision", "score", "fired": [...], "verifications": [...],
        "version"}; None when risk is off on the buyer's channel. `lines`: sku -> units."""
        compiled = self.rules(transaction)
        rule_set = compiled.rules
        if buyer.channel in rule_set["off_channels"]:
            return None
        now = transaction.now_ms
        keys = self._keys(buyer)
        fired = []
        for rule in rule_set["rules"]:
            if self._fires(transaction, rule, compiled, buyer, keys, lines, total_micros, now):
                fired.append(rule)
        score = sum(rule["weight"] for rule in fired)
        decision = max((rule["decision"] for rule in fired), key=SEVERITY.__getitem__,
                       default="ALLOW")
        for threshold, reached in (("challenge_score", "CHALLENGE"),
                                   ("review_score", "REVIEW"), ("reject_score", "REJECT")):
            if rule_set.get(threshold) and score >= rule_set[threshold] \
                    and SEVERITY[reached] > SEVERITY[decision]:
                decision = reached
        needed = sorted({rule["verification"] for rule in fired if rule["verification"]})
        if decision == "CHALLENGE" and not needed:
            needed = [risk_rules.DEFAULT_VERIFICATION]  # the score alone asks for one
        return {"decision": decision, "score": score, "version": compiled.version,
                "fired": [{"name": rule["name"], "weight": rule["weight"],
                           "decision": rule["decision"]} for rule in fired],
                "verifications": needed if decision == "CHALLENGE" else [],
                "passed": decision == "ALLOW" or decision == "CHALLENGE"
                and set(needed) <= buyer.verifications}

    def _keys(self, buyer: Buyer) -> dict:
        keys = {"account": self.hash_identifier("account", f"{buyer.owner}\0{buyer.account}")}
        if buyer.ip:
            keys["ip"] = self.hash_identifier("ip", buyer.ip)
        if buyer.device:
            keys["device"] = self.hash_identifier("device", buyer.device)
        return keys

    def _fires(self, transaction, rule, compiled, buyer, keys, lines, total, now) -> bool:
        kind = rule["kind"]
        skus = rule.get("skus")
        if kind == "velocity":
            key = keys.get(rule["subject"])
            return key is not None and self._window_count(
                transaction, rule["subject"], rule["window"], key, now) + 1 > rule["max"]
        if kind == "quantity":
            return any(self._units_today(transaction, keys["account"], sku, now) + units
                       > rule["max"] for sku, units in lines.items() if not skus or sku in skus)
        if kind == "order_value":
            return (not skus or any(sku in skus for sku in lines)) and total >= rule["min_micros"]
        if kind == "new_account":
            if skus and not any(sku in skus for sku in lines) or total < rule["min_micros"]:
                return False
            return now - self._first_seen(transaction, buyer, keys, now) \
                < rule["age_hours"] * 3_600_000
        if kind == "one_per_account":
            return any(lines[sku] > 1 or transaction.get(
                "purchases", f"{buyer.owner}\0{buyer.account}\0{sku}".encode()) is not None
                for sku in skus if sku in lines)
        if kind == "bound_phone":
            return not buyer.phone_bound and any(sku in lines for sku in skus)
        if kind == "block_ip":
            try:
                address = ipaddress.ip_address(buyer.ip)
            except ValueError:
                return False
            return any(address in network for network in compiled.blocked[rule["name"]])
        subject = kind[6:]  # block_account, block_device
        value = buyer.account if subject == "account" else buyer.device
        return bool(value) and HASHED_PREFIX + self.hash_identifier(subject, value).hex() \
            in compiled.blocked[rule["name"]]

    @staticmethod
    def _velocity_key(subject: str, window: str, key: bytes) -> bytes:
        return b"v" + _SUBJECT_BYTE[subject] + _WINDOW_BYTE[window] + key

    def _window_count(self, transaction, subject, window, key, now) -> int:
        value = transaction.get(COUNTERS_TABLE, self._velocity_key(subject, window, key))
        if value is None:
            return 0
        number, count = _decode(value)
        return count if number == now // WINDOWS_MS[window] else 0

    @staticmethod
    def _units_today(transaction, account_key: bytes, sku: str, now: int) -> int:
        value = transaction.get(COUNTERS_TABLE, b"q" + account_key + sku.encode())
        if value is None:
            return 0
        day, units = _decode(value)
        return units if day == now // DAY_MS else 0

    @staticmethod
    def _first_seen(transaction, buyer: Buyer, keys: dict, now: int) -> int:
        value = transaction.get(COUNTERS_TABLE, b"f" + keys["account"])
        seen = int(value) if value is not None else now
        return min(seen, buyer.account_created_ms) if buyer.account_created_ms > 0 else seen

    # -- the created order's own commit ---------------------------------------------------

    def record(self, transaction, buyer: Buyer, lines: dict[str, int]) -> None:
        """Count a created order in the counters the current rules read."""
        compiled = self.rules(transaction)
        now = transaction.now_ms
        keys = self._keys(buyer)
        for subject, window in compiled.windows:
            key = keys.get(subject)
            if key is not None:
                count = self._window_count(transaction, subject, window, key, now)
                transaction.put(COUNTERS_TABLE, self._velocity_key(subject, window, key),
                                _COUNT.pack(now // WINDOWS_MS[window], count + 1))
        kinds = {rule["kind"] for rule in compiled.rules["rules"]}
        if "quantity" in kinds:
            for sku, units in lines.items():
                held = self._units_today(transaction, keys["account"], sku, now)
                transaction.put(COUNTERS_TABLE, b"q" + keys["account"] + sku.encode(),
                                _COUNT.pack(now // DAY_MS, held + units))
        if "new_account" in kinds and transaction.get(
                COUNTERS_TABLE, b"f" + keys["account"]) is None:
            transaction.put(COUNTERS_TABLE, b"f" + keys["account"], str(now).encode())


PRUNE_KEY = b"prune_from"  # in RULES_TABLE: where the next prune pass goes on


def prune(transaction, limit: int) -> int:
    """Delete velocity and quantity counters whose window is over, looking at `limit` counters
    from where the last pass stopped (a plan of the hold sweeper); how many went. First-seen
    records stay: an account stays known."""
    start = transaction.get(RULES_TABLE, PRUNE_KEY) or b""
    found = transaction.scan(COUNTERS_TABLE, start, limit)
    now = transaction.now_ms
    gone = 0
    for key, value in found:
        if key[:1] == b"v":
            window = next(name for name, byte in _WINDOW_BYTE.items() if byte == key[2:3])
            over = _decode(value)[0] < now // WINDOWS_MS[window]
        else:
            over = key[:1] == b"q" and _decode(value)[0] < now // DAY_MS
        if over:
            transaction.delete(COUNTERS_TABLE, key)
            gone += 1
    following = found[-1][0] + b"\0" if len(found) == limit else b""
    if following != start:
        transaction.put(RULES_TABLE, PRUNE_KEY, following)
    return gone


class Snapshot:
    """A read-only stand-in for a plan's transaction (dry runs): reads never wait for the
    writer."""

    def __init__(self, engine):
        self.get = engine.get
        self.now_ms = engine.now_ms()

    def put(self, table, key, value):  # pragma: no cover - a dry run never writes
        raise AssertionError("a dry run writes nothing")


def set_rules(transaction, rules: dict, expected_version: int, source: str):
    """Store a validated rule set as the next version -> (set, version). expected_version >= 0
    must equal the current one (0: no rules were ever set), so two admins cannot overwrite
    each other unseen; -1 skips that check. The version and its author go to risk_history."""
    raw = transaction.get(RULES_TABLE, VERSION_KEY)
    current = int(raw) if raw is not None else 0
    if expected_version >= 0 and expected_version != current:
        return False, current
    version = current + 1
    record = json.dumps({"version": version, "rules": rules, "set_ms": transaction.now_ms,
                         "actor": transaction.actor.decode(errors="replace"),
                         "source": source}, sort_keys=True).encode()
    transaction.put(RULES_TABLE, CURRENT_KEY, record)
    transaction.put(RULES_TABLE, VERSION_KEY, str(version).encode())
    transaction.put(HISTORY_TABLE, version.to_bytes(8, "big"), record)
    return True, version


def current_rules(get) -> dict:
    """{"version", "rules", "set_ms", "actor", "source"} as stored; the default rule set as
    version 0 before any was set. `get(table, key)` reads a snapshot."""
    raw = get(RULES_TABLE, CURRENT_KEY)
    if raw is None:
        return {"version": 0, "rules": risk_rules.DEFAULT_RULES, "set_ms": 0, "actor": "",
                "source": "default"}
    return json.loads(raw)


class RiskStore:
    """Reading and replacing the rule set (the Risk service, and the TOML file at start)."""

    def __init__(self, engine, scorer: Risk):
        self.engine = engine
        self.scorer = scorer

    def current(self) -> dict:
        """{"version", "rules" (validated), "set_ms", "actor", "source"}."""
        stored = current_rules(self.engine.get)
        if stored["version"] == 0:
            stored["rules"] = risk_rules.validate(stored["rules"], self.scorer.hash_identifier)
        return stored

    def _plan(self, rule_set, expected_version: int, actor: str, source: str):
        checked = risk_rules.validate(rule_set, self.scorer.hash_identifier)
        return self.engine.plan(set_rules, (checked, expected_version, source), actor,
                                full=lambda: (None, expected_version))

    @staticmethod
    def _status(result) -> tuple[SetRiskRulesStatus, int]:
        done, version = result
        if done is None:
            return SetRiskRulesStatus.STORAGE_FULL, version
        return (SetRiskRulesStatus.SET if done else SetRiskRulesStatus.VERSION_CONFLICT), version

    async def set(self, rule_set, expected_version: int, actor: str):
        """-> (status, version in force). InvalidArgument names a bad field."""
        return self._status(await self.engine.run_async(
            self._plan(rule_set, expected_version, actor, "api")))

    def apply_config(self, rule_set) -> bool:
        """At start: the TOML file's rule set becomes the next version unless it is the one
        in force already; whether it changed anything."""
        checked = risk_rules.validate(rule_set, self.scorer.hash_identifier)
        stored = current_rules(self.engine.get)
        if stored["version"] and stored["rules"] == checked:
            return False
        status, _ = self._status(self.engine.run(self._plan(checked, -1, "config", "config")))
        if status != SetRiskRulesStatus.SET:
            raise OSError("the data file is full: the risk rules of the settings file could "
                          "not be stored")
        return True
