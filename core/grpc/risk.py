"""kamicore.v1.Risk: the risk rules read and replaced at runtime; and the risk part of a
CreateOrder reply (rule sets and assessments between the wire and kamicore.domain.risk)."""

from __future__ import annotations

from .. import limits
from ..domain import risk_reviews, risk_rules
from ..engine import InvalidArgument
from ..engine.validate import text
from ..statuses import DecideReviewStatus, ReviewState, RiskDecision
from ..v1 import orders_pb2, risk_pb2, risk_pb2_grpc
from .gate import actor
from .services import Services

_DECISIONS = {"ALLOW": RiskDecision.ALLOW, "CHALLENGE": RiskDecision.CHALLENGE,
              "REVIEW": RiskDecision.REVIEW, "REJECT": RiskDecision.REJECT}
_REVIEW_STATES = {"PENDING": ReviewState.PENDING, "APPROVED": ReviewState.APPROVED,
                  "REJECTED": ReviewState.REJECTED, "EXPIRED": ReviewState.EXPIRED}
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
    return {"challenge_score": message.challenge_score, "review_score": message.review_score,
            "reject_score": message.reject_score,
            "off_channels": list(message.off_channels), "rules": rules}


def rule_set_to_wire(rule_set: dict) -> risk_pb2.RiskRules:
    message = risk_pb2.RiskRules(challenge_score=rule_set["challenge_score"],
                                 review_score=rule_set.get("review_score", 0),
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


def review_to_wire(order_id: str, review: dict) -> risk_pb2.Review:
    return risk_pb2.Review(
        order_id=order_id, state=_REVIEW_STATES[review["state"]],
        risk=assessment_to_wire(review["risk"]), created_ms=review["created_ms"],
        expires_ms=review["expires_ms"], decided_by=review["decided_by"],
        decided_ms=review["decided_ms"])


class RiskService(risk_pb2_grpc.RiskServicer):
    def __init__(self, services: Services):
        self.s = services

    async def GetRiskRules(self, request, context):
        current = self.s.risk.current()
        return risk_pb2.GetRiskRulesResponse(
            rules=rule_set_to_wire(current["rules"]), version=current["version"],
            set_ms=current["set_ms"], set_by=current["actor"])

    async def SetRiskRules(self, request, context):
        try:  # the rule set's fields are named as the request nests them: rules.<field>
            rule_set = rule_set_from_wire(request.rules)
            status, version = await self.s.risk.set(rule_set, request.expected_version, actor())
        except InvalidArgument as error:
            raise InvalidArgument(f"rules.{error.field}", error.message) from None
        self.s.outcome("SetRiskRules", status)
        return risk_pb2.SetRiskRulesResponse(status=status, version=version)

    async def ListReviews(self, request, context):
        page, token = risk_reviews.pending_page(self.s.engine, request.page_size,
                                                request.page_token)
        return risk_pb2.ListReviewsResponse(
            reviews=[review_to_wire(order_id, review) for order_id, review in page],
            next_page_token=token)

    async def DecideReview(self, request, context):
        text(request.order_id, "order_id", limits.order_id_bytes_max)
        status, review = await self.s.orders.decide_review(request.order_id, request.approve,
                                                           actor())
        self.s.outcome("DecideReview", status)
        response = risk_pb2.DecideReviewResponse(status=status)
        if review is not None and status != DecideReviewStatus.STORAGE_FULL:
            response.review.CopyFrom(review_to_wire(request.order_id, review))
        return response
