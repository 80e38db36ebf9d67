"""kamicore.v1.Risk: the risk rules read and replaced at runtime; and the risk part of a
CreateOrder reply (rule sets and assessments between the wire and kamicore.domain.risk)."""

from __future__ import annotations

from ..domain import risk_rules
from ..engine import InvalidArgument
from ..statuses import RiskDecision
from ..v1 import orders_pb2, risk_pb2, risk_pb2_grpc
from .gate import actor
from .services import Services

_DECISIONS = {"ALLOW": RiskDecision.ALLOW, "CHALLENGE": RiskDecision.CHALLENGE,
              "REJECT": RiskDecision.REJECT}
_DECISION_NAMES = {number: name for name, number in _DECISIONS.items()}
_SCALARS = ("subject", "window", "max", "min_micros", "age_hours")


def rule_set_from_wire(message: risk_pb2.RiskRules) -> dict:
    """The plain rule set kamicore.domain.risk_rules validates: a field the rule's kind reads is
    always passed (so a missing one is refused by name), any other only when it is set."""
    rules = []
    for index, wire in enumerate(message.rules):
        needed = risk_rules.KINDS.get(wire.kind, ())
        rule = {"name": wire.name, "kind": wire.kind, "weight": wire.weight}
        if wire.decision and wire.decision not in _DECISION_NAMES:
            raise InvalidArgument(f"rules[{index}].decision", "is not a RiskDecision")
        if wire.decision:
            rule["decision"] = _DECISION_NAMES[wire.decision]
        if wire.verification:
            rule["verification"] = wire.verification
        for name in _SCALARS:
            value = getattr(wire, name)
            if name in needed or value:
                rule[name] = value
        for name in ("skus", "values"):
            values = list(getattr(wire, name))
            if name in needed or values:
                rule[name] = values
        rules.append(rule)
    return {"challenge_score": message.challenge_score, "reject_score": message.reject_score,
            "off_channels": list(message.off_channels), "rules": rules}


def rule_set_to_wire(rule_set: dict) -> risk_pb2.RiskRules:
    message = risk_pb2.RiskRules(challenge_score=rule_set["challenge_score"],
                                 reject_score=rule_set["reject_score"],
                                 off_channels=rule_set["off_channels"])
    for rule in rule_set["rules"]:
        wire = message.rules.add(name=rule["name"], kind=rule["kind"], weight=rule["weight"],
                                 verification=rule["verification"])
        if rule["decision"] != "ALLOW":
            wire.decision = _DECISIONS[rule["decision"]]
        for name in _SCALARS:
            if name in rule:
                setattr(wire, name, rule[name])
        wire.skus.extend(rule.get("skus", ()))
        wire.values.extend(rule.get("values", ()))
    return message


def assessment_to_wire(assessment: dict) -> orders_pb2.RiskAssessment:
    message = orders_pb2.RiskAssessment(
        decision=_DECISIONS[assessment["decision"]], score=assessment["score"],
        verifications_required=assessment["verifications"],
        rules_version=assessment["version"])
    for fired in assessment["fired"]:
        message.fired.add(name=fired["name"], weight=fired["weight"],
                          decision=(_DECISIONS[fired["decision"]]
                                    if fired["decision"] != "ALLOW" else 0))
    return message


class RiskService(risk_pb2_grpc.RiskServicer):
    def __init__(self, services: Services):
        self.s = services

    async def GetRiskRules(self, request, context):
        current = self.s.risk.current()
        return risk_pb2.GetRiskRulesResponse(
            rules=rule_set_to_wire(current["rules"]), version=current["version"],
            set_ms=current["set_ms"], set_by=current["actor"])

    async def SetRiskRules(self, request, context):
        status, version = await self.s.risk.set(
            rule_set_from_wire(request.rules), request.expected_version, actor())
        self.s.outcome("SetRiskRules", status)
        return risk_pb2.SetRiskRulesResponse(status=status, version=version)
