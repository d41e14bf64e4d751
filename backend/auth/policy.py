"""The policy table: which role each gRPC method needs, keyed by full method name.

Every method the server serves must have a row here. A method without one is refused for everybody
(PERMISSION_DENIED), so a new RPC is closed until someone decides who may call it, and
tests/backend/auth/test_policy.py fails until every method of every fruitstack.v1 service has a row.

- PUBLIC: anyone, no token (health, reflection, and Login itself).
- READ: a signed-in viewer or better; also callers without a token when ALLOW_ANONYMOUS_READS is
  true. Predictions are reads: they change nothing.
- SIGNED_IN: any signed-in user, never an anonymous caller (changing one's own password).
- EDIT: an editor or an admin: changes to the fruit store, and feedback labels (they become
  training data).
- ADMIN: an admin: the model in service (updates, rollbacks, retraining) and the users.
- SERVE_CHAMPION: an admin or the retraining runner's service account (role retrainer), which may
  call nothing else: switching to the champion the promotion gate chose is all the runner needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from backend.auth.roles import Role


@dataclass(frozen=True, slots=True)
class Rule:
    """What a method needs: the roles that may call it; `roles` None means public."""

    roles: frozenset[Role] | None
    # Without any token, allowed when ALLOW_ANONYMOUS_READS is true.
    anonymous_read: bool = False

    def allows(self, role: Role) -> bool:
        """Whether a user of `role` may call the method: every role check goes through here."""
        return self.roles is None or role in self.roles

    def describe(self) -> str:
        if self.roles is None:
            return "anyone"
        allowed = [r.label for r in sorted(self.roles)]
        if len(allowed) == 1:
            return f"role {allowed[0]}"
        return f"role {', '.join(allowed[:-1])} or {allowed[-1]}"


PUBLIC = Rule(roles=None)
READ = Rule(roles=Role.at_least(Role.VIEWER), anonymous_read=True)
# Any signed-in person (never anonymous, never a service account): their own password.
SIGNED_IN = Rule(roles=Role.at_least(Role.VIEWER))
EDIT = Rule(roles=Role.at_least(Role.EDITOR))
ADMIN = Rule(roles=Role.at_least(Role.ADMIN))
SERVE_CHAMPION = Rule(roles=Role.at_least(Role.ADMIN) | {Role.RETRAINER})

POLICY: Mapping[str, Rule] = MappingProxyType(
    {
        # Infrastructure: load balancers, probes and grpcurl must work without a token.
        "/grpc.health.v1.Health/Check": PUBLIC,
        "/grpc.health.v1.Health/Watch": PUBLIC,
        "/grpc.health.v1.Health/List": PUBLIC,
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": PUBLIC,
        # AuthService
        "/fruitstack.v1.AuthService/Login": PUBLIC,
        "/fruitstack.v1.AuthService/CreateUser": ADMIN,
        "/fruitstack.v1.AuthService/SetUserRole": ADMIN,
        "/fruitstack.v1.AuthService/ListUsers": ADMIN,
        "/fruitstack.v1.AuthService/DisableUser": ADMIN,
        "/fruitstack.v1.AuthService/EnableUser": ADMIN,
        "/fruitstack.v1.AuthService/DeleteUser": ADMIN,
        "/fruitstack.v1.AuthService/ResetPassword": ADMIN,
        # One's own password: any signed-in user, never an anonymous caller.
        "/fruitstack.v1.AuthService/ChangePassword": SIGNED_IN,
        # FruitService
        "/fruitstack.v1.FruitService/ListFruits": READ,
        "/fruitstack.v1.FruitService/SummarizeFruits": READ,
        "/fruitstack.v1.FruitService/AddFruit": EDIT,
        "/fruitstack.v1.FruitService/DeleteFruit": EDIT,
        # PredictionService
        "/fruitstack.v1.PredictionService/GetModel": READ,
        "/fruitstack.v1.PredictionService/Predict": READ,
        "/fruitstack.v1.PredictionService/PredictBatch": READ,
        "/fruitstack.v1.PredictionService/ListModelVersions": READ,
        # UpdateModel with a version is a rollback: admin either way.
        "/fruitstack.v1.PredictionService/UpdateModel": ADMIN,
        "/fruitstack.v1.PredictionService/UnpinModel": ADMIN,
        "/fruitstack.v1.PredictionService/ServeChampion": SERVE_CHAMPION,
        # MonitoringService
        "/fruitstack.v1.MonitoringService/GetDriftReport": READ,
        "/fruitstack.v1.MonitoringService/GetLiveAccuracy": READ,
        "/fruitstack.v1.MonitoringService/GetPredictionCounts": READ,
        "/fruitstack.v1.MonitoringService/GetMonitoringStatus": READ,
        "/fruitstack.v1.MonitoringService/RecordFeedback": EDIT,
        # RetrainingService
        "/fruitstack.v1.RetrainingService/GetRetrainingStatus": READ,
        "/fruitstack.v1.RetrainingService/Retrain": ADMIN,
    }
)
