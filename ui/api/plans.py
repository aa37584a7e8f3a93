"""The plans the API made, by id: an apply names one (never a client-built list of paths), and
only while the library is as it was when the plan was made."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from .errors import ApiError

__all__ = ["PlanBook", "KeptPlan"]

PLAN_SECONDS = 3600.0
MAX_PLANS = 32


@dataclass(frozen=True)
class KeptPlan:
    plan: object  # search.resolve.ResolutionPlan
    generation: int  # the store's, when planned
    made: float


class PlanBook:
    """At most MAX_PLANS plans, each for PLAN_SECONDS; an apply takes its plan out."""

    def __init__(self):
        self._plans: OrderedDict[str, KeptPlan] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, plan, generation: int) -> str:
        plan_id = secrets.token_urlsafe(12)
        with self._lock:
            self._plans[plan_id] = KeptPlan(plan, generation, time.monotonic())
            while len(self._plans) > MAX_PLANS:
                self._plans.popitem(last=False)
        return plan_id

    def take(self, plan_id: str, generation: int) -> KeptPlan:
        """The plan, removed from the book; 404 if unknown or expired, 409 if the store changed since."""
        with self._lock:
            kept = self._plans.get(plan_id)
            if kept is None or time.monotonic() - kept.made > PLAN_SECONDS:
                self._plans.pop(plan_id, None)
                raise ApiError("unknown_plan", f"no plan {plan_id!r} (plans last {PLAN_SECONDS / 60:.0f} minutes "
                                               "and are used once): make one with POST /api/v1/duplicates/plan")
            if kept.generation != generation:
                self._plans.pop(plan_id)
                raise ApiError("plan_stale", "the library changed since this plan was made: plan again")
            return self._plans.pop(plan_id)
