"""Risk rules: what each kind of rule checks, how a rule set is validated, and the default set.

A rule set is plain data (dicts and lists, as JSON, TOML and the Risk service carry it):

    {"challenge_score": 50, "reject_score": 100, "off_channels": ["kiosk"],
     "rules": [{"name": "account-per-minute", "kind": "velocity", "subject": "account",
                "window": "minute", "max": 5, "weight": 60, "decision": "CHALLENGE",
                "verification": "captcha"}, ...]}

An order's score is the sum of the weights of the rules that fire. Its decision is the most
severe of: each fired rule's forced decision, CHALLENGE when the score reaches
challenge_score, REVIEW at review_score, REJECT at reject_score (0 turns a threshold off).
Kinds and what fires them:
- velocity: this order would be more than `max` orders created by the same `subject`
  (account, ip or device) in the current clock `window` (minute or hour);
- quantity: the account would hold more than `max` units of one SKU bought today (UTC day);
- order_value: the order's total is at least `min_micros` (in its own currency);
- new_account: the account was first seen less than `age_hours` ago and the order's total is
  at least `min_micros`;
- one_per_account: the order takes more than one unit of a listed SKU, or the account already
  holds one in an open or paid order;
- bound_phone: a listed SKU is ordered by a buyer whose phone is not bound;
- block_account, block_device: the buyer's account or device is listed; the list is stored as
  keyed hashes (kamicore.domain.risk), never in the clear;
- block_ip: the buyer's IP address is in one of the listed CIDR ranges.
`skus` narrows quantity, order_value and new_account to the SKUs listed (empty: every SKU).
"""

from __future__ import annotations

import ipaddress

from .. import limits
from ..engine import InvalidArgument
from ..engine.validate import integer, text

DECISIONS = ("ALLOW", "CHALLENGE", "REVIEW", "REJECT")  # by severity
SEVERITY = {name: rank for rank, name in enumerate(DECISIONS)}
SUBJECTS = ("account", "ip", "device")
WINDOWS_MS = {"minute": 60_000, "hour": 3_600_000}
DAY_MS = 86_400_000
HASHED_PREFIX = "hash:"  # a block-list entry already in its stored form
KINDS = {  # kind -> the fields it needs beyond name, kind, weight, decision, verification
    "velocity": ("subject", "window", "max"),
    "quantity": ("max",),
    "order_value": ("min_micros",),
    "new_account": ("age_hours", "min_micros"),
    "one_per_account": ("skus",),
    "bound_phone": ("skus",),
    "block_account": ("values",),
    "block_device": ("values",),
    "block_ip": ("values",),
}
OPTIONAL = ("skus",)  # may be given (and empty) for quantity, order_value and new_account
DEFAULT_VERIFICATION = "captcha"

DEFAULT_RULES = {  # velocity and quantity force decisions; value only adds to the score
    "challenge_score": 50,
    "reject_score": 100,
    "off_channels": [],
    "rules": [
        {"name": "account-per-minute", "kind": "velocity", "subject": "account",
         "window": "minute", "max": 30, "weight": 50, "decision": "CHALLENGE",
         "verification": "captcha"},
        {"name": "account-per-hour", "kind": "velocity", "subject": "account",
         "window": "hour", "max": 300, "weight": 100, "decision": "REJECT"},
        {"name": "ip-per-minute", "kind": "velocity", "subject": "ip", "window": "minute",
         "max": 120, "weight": 50, "decision": "CHALLENGE", "verification": "captcha"},
        {"name": "device-per-hour", "kind": "velocity", "subject": "device", "window": "hour",
         "max": 300, "weight": 50, "decision": "CHALLENGE", "verification": "captcha"},
        {"name": "units-per-sku-per-day", "kind": "quantity", "max": 10_000, "weight": 100,
         "decision": "REJECT"},
        {"name": "new-account-high-value", "kind": "new_account", "age_hours": 24,
         "min_micros": 500_000_000, "weight": 25},
        {"name": "high-value", "kind": "order_value", "min_micros": 5_000_000_000,
         "weight": 20},
    ],
}


def _strings(values, field: str, bytes_max: int) -> list[str]:
    if not isinstance(values, (list, tuple)):
        raise InvalidArgument(field, "must be a list")
    if len(values) > limits.risk_list_items_max:
        raise InvalidArgument(field, f"has more than {limits.risk_list_items_max} items")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise InvalidArgument(f"{field}[{index}]", "must be text")
        text(value, f"{field}[{index}]", bytes_max)
    return list(values)


def _rule(rule, field: str, hash_identifier) -> dict:
    """One rule checked and normalised; block-listed accounts and devices hashed."""
    if not isinstance(rule, dict):
        raise InvalidArgument(field, "must be a table")
    kind = rule.get("kind")
    if kind not in KINDS:
        raise InvalidArgument(f"{field}.kind", f"must be one of {', '.join(KINDS)}")
    allowed = {"name", "kind", "weight", "decision", "verification", *KINDS[kind]}
    if kind in ("quantity", "order_value", "new_account"):
        allowed.update(OPTIONAL)
    unknown = sorted(set(rule) - allowed)
    if unknown:
        raise InvalidArgument(f"{field}.{unknown[0]}", f"is not a field of a {kind} rule")
    name = rule.get("name")
    if not isinstance(name, str):
        raise InvalidArgument(f"{field}.name", "is required")
    text(name, f"{field}.name", limits.name_bytes_max)
    out = {"name": name, "kind": kind,
           "weight": integer(rule.get("weight", 0), f"{field}.weight", 0,
                             limits.risk_weight_max)}
    decision = rule.get("decision") or "ALLOW"
    if decision not in DECISIONS:
        raise InvalidArgument(f"{field}.decision", f"must be one of {', '.join(DECISIONS)}")
    out["decision"] = decision
    verification = rule.get("verification") or ""
    if verification and decision != "CHALLENGE":
        raise InvalidArgument(f"{field}.verification", "applies only to CHALLENGE")
    if decision == "CHALLENGE":
        verification = verification or DEFAULT_VERIFICATION
        text(verification, f"{field}.verification", limits.name_bytes_max)
    out["verification"] = verification
    for name_ in KINDS[kind]:
        if name_ not in rule:
            raise InvalidArgument(f"{field}.{name_}", f"is required for a {kind} rule")
    if kind == "velocity":
        if rule["subject"] not in SUBJECTS:
            raise InvalidArgument(f"{field}.subject", f"must be one of {', '.join(SUBJECTS)}")
        if rule["window"] not in WINDOWS_MS:
            raise InvalidArgument(f"{field}.window", "must be minute or hour")
        out.update(subject=rule["subject"], window=rule["window"])
    if "max" in KINDS[kind]:
        out["max"] = integer(rule["max"], f"{field}.max", 1, limits.risk_count_max)
    if "min_micros" in KINDS[kind]:
        out["min_micros"] = integer(rule["min_micros"], f"{field}.min_micros", 0,
                                    limits.price_micros_max * limits.codes_per_order_max)
    if kind == "new_account":
        out["age_hours"] = integer(rule["age_hours"], f"{field}.age_hours", 1,
                                   limits.risk_account_age_hours_max)
    if kind in ("quantity", "order_value", "new_account", "one_per_account", "bound_phone"):
        out["skus"] = _strings(rule.get("skus", []), f"{field}.skus", limits.name_bytes_max)
        if kind in ("one_per_account", "bound_phone") and not out["skus"]:
            raise InvalidArgument(f"{field}.skus", "must not be empty")
    if kind.startswith("block_"):
        values = _strings(rule["values"], f"{field}.values", limits.buyer_field_bytes_max)
        if kind == "block_ip":
            for index, value in enumerate(values):
                try:
                    ipaddress.ip_network(value, strict=False)
                except ValueError:
                    raise InvalidArgument(f"{field}.values[{index}]",
                                          "is not an IP address or CIDR range") from None
        else:
            values = [value if value.startswith(HASHED_PREFIX)
                      else HASHED_PREFIX + hash_identifier(kind[6:], value).hex()
                      for value in values]
        out["values"] = sorted(set(values))
    return out


def validate(rule_set, hash_identifier) -> dict:
    """A rule set checked and normalised (InvalidArgument names the bad field);
    hash_identifier(subject, value) -> the keyed hash a block list stores."""
    if not isinstance(rule_set, dict):
        raise InvalidArgument("rules", "must be a table")
    unknown = sorted(set(rule_set) - {"challenge_score", "review_score", "reject_score",
                                      "off_channels", "rules"})
    if unknown:
        raise InvalidArgument(unknown[0], "is not a setting of a rule set")
    rules = rule_set.get("rules", [])
    if not isinstance(rules, (list, tuple)):
        raise InvalidArgument("rules", "must be a list")
    if len(rules) > limits.risk_rules_max:
        raise InvalidArgument("rules", f"has more than {limits.risk_rules_max} rules")
    checked = [_rule(rule, f"rules[{index}]", hash_identifier)
               for index, rule in enumerate(rules)]
    names = [rule["name"] for rule in checked]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise InvalidArgument(f"rules[{index}].name", f"{name!r} is used twice")
    return {"challenge_score": integer(rule_set.get("challenge_score", 0), "challenge_score",
                                       0, limits.risk_score_max),
            "review_score": integer(rule_set.get("review_score", 0), "review_score", 0,
                                    limits.risk_score_max),
            "reject_score": integer(rule_set.get("reject_score", 0), "reject_score", 0,
                                    limits.risk_score_max),
            "off_channels": sorted(set(_strings(rule_set.get("off_channels", []),
                                                "off_channels", limits.name_bytes_max))),
            "rules": checked}
