"""AWS's policy evaluation logic for exactly the policy language of infra/template.yaml,
and the authorization test built on it.

    .venv/iac/bin/python scripts/lib/authz.py infra/template.yaml calls.json

calls.json holds the calls each function's code makes (tests/tests/least_privilege.rs
records them):

    {"calls": {"add": [{"action": "dynamodb:PutItem", "resource": "table"},
                       {"action": "kms:GenerateDataKey", "resource": "sealing-key",
                        "context_keys": ["connection_id", "origin", "owner"]}, ...],
               "list": [...], "edit": [...], "delete": [...], "browse": [...],
               "credentials": [...], "recheck": [...], "web": []},
     "oauth_calls": {...}}

"oauth_calls" (optional, the same shape) are the calls made only with "Connect with
Bitbucket" configured: evaluated, besides "calls", where OauthClientsSecretArn is set.

Resources are symbolic: "table", "table/index/<name>", "sealing-key" (ConnectionsKey),
"event-bus" (ConnectionEvents), "credentials-function", "recheck-queue" (RecheckQueue),
"oauth-clients" (the secret OauthClientsSecretArn names). The template is resolved with
fixed sample values (SAMPLE below): with a worker role, without one, and with OAuth. Printed:
each recorded call with its decision and the statement that decides it (plus the table
key calls DynamoDB makes with the caller's permissions), then the attempts of other
principals with the decision each must get. Exit status 1 when a recorded call would be
denied or an attempt gets the wrong decision; 2 when the template or the calls use what
the evaluator does not model.

The evaluation follows AWS's documented logic for requests inside one account: an
explicit Deny in any applicable policy wins; otherwise the identity-based policy OR the
resource-based policy must allow (a resource policy statement naming the principal's ARN
or "*"); except for KMS, where the key policy must allow, naming the principal, or
naming the account root, which delegates to IAM, so the identity policy must allow too.
Whatever lies outside the modelled language (a condition operator or key, NotAction,
NotPrincipal, NotResource, an intrinsic function, a managed policy) is an error, never a
silent allow or deny.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys
from dataclasses import dataclass

import yaml

# ---------------------------------------------------------------- loading


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags, as their long-form mappings."""


def _tag(loader: yaml.Loader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + suffix: value}


_Loader.add_multi_constructor("!", _tag)


def load(path: pathlib.Path) -> dict:
    return yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def role_statements(template: dict):
    """(role logical id, where, statement) for every inline statement of every role."""
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                for statement in as_list(policy["PolicyDocument"]["Statement"]):
                    yield name, f"{name}/{policy['PolicyName']}", statement
        elif resource["Type"] == "AWS::IAM::RolePolicy":
            role = properties["RoleName"]
            role = role["Ref"] if isinstance(role, dict) else role
            for statement in as_list(properties["PolicyDocument"]["Statement"]):
                yield role, name, statement
        elif resource["Type"] == "AWS::IAM::Policy":
            for role in as_list(properties["Roles"]):
                role = role["Ref"] if isinstance(role, dict) else role
                for statement in as_list(properties["PolicyDocument"]["Statement"]):
                    yield role, name, statement


# ---------------------------------------------------------------- conditions

# The condition keys the template uses, and whether each is multivalued; any other key
# is refused, as its meaning here would be a guess. kms:EncryptionContext:<key> is
# single-valued, one per pair of the encryption context.
CONDITION_KEYS = {
    "aws:principalarn": False,
    "aws:principalaccount": False,
    "kms:calleraccount": False,
    "kms:viaservice": False,
    "kms:encryptioncontextkeys": True,
}
CONTEXT_PAIR = "kms:encryptioncontext:"


def _multivalued(key: str) -> bool:
    name = key.lower()
    if name in CONDITION_KEYS:
        return CONDITION_KEYS[name]
    if name.startswith(CONTEXT_PAIR) and len(name) > len(CONTEXT_PAIR):
        return False
    raise ValueError(f"the evaluator does not model condition key {key!r}")


def wildcard(pattern: str, text: str, ignore_case: bool = False) -> bool:
    # IAM's wildcards are * and ? only; brackets are literal (unlike fnmatch).
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.IGNORECASE if ignore_case else 0) is not None


def _arn_equals(actual: str, pattern: str) -> bool:
    # ArnEquals and ArnLike are the same test: each of the six colon-separated parts is
    # matched on its own, so a wildcard never spans a colon.
    parts, patterns = actual.split(":", 5), pattern.split(":", 5)
    return len(parts) == len(patterns) == 6 and all(map(wildcard, patterns, parts))


MATCHERS = {"StringEquals": str.__eq__, "ArnEquals": _arn_equals}
NEGATIONS = {"StringNotEquals": "StringEquals", "ArnNotEquals": "ArnEquals"}
OPERATORS = {"Null", "ForAllValues:StringEquals", *MATCHERS, *NEGATIONS}


def _flag(value, operator: str, key: str) -> bool:
    for text in as_list(value):
        if str(text).lower() not in ("true", "false"):
            raise ValueError(f"{operator} {key}: {text!r} is not true or false")
    if len(as_list(value)) != 1:
        raise ValueError(f"{operator} {key}: expected one value")
    return str(as_list(value)[0]).lower() == "true"


def _holds(operator: str, key: str, expected, request: dict[str, list[str]]) -> bool:
    if operator not in OPERATORS:
        raise ValueError(f"the evaluator does not model condition operator {operator!r}")
    # Condition key names are case-insensitive; their values are not (StringEquals).
    present = request.get(key.lower())
    multivalued = _multivalued(key)
    if operator == "Null":
        return _flag(expected, operator, key) == (present is None)
    wanted = [str(v) for v in as_list(expected)]
    if operator.startswith("ForAllValues:"):
        if not multivalued:
            raise ValueError(f"{operator} on the single-valued {key}")
        match = MATCHERS[operator.split(":", 1)[1]]
        # Vacuously true when the request has no value for the key.
        return all(any(match(v, w) for w in wanted) for v in present or [])
    if multivalued:
        raise ValueError(f"{operator} on the multivalued {key} needs ForAllValues")
    if operator in NEGATIONS:
        # A negated operator holds when the key is absent.
        return not _holds(NEGATIONS[operator], key, expected, request)
    match = MATCHERS[operator]
    return present is not None and any(match(v, w) for v in present for w in wanted)


def condition_holds(condition: dict, request: dict[str, list[str]]) -> bool:
    """IAM semantics for exactly these operators; all blocks and all keys ANDed.

    - StringEquals, ArnEquals (wildcards per ARN part): some request value matches some
      listed value; false when the request lacks the key.
    - StringNotEquals, ArnNotEquals: the negation, so true when the request lacks the key.
    - ForAllValues:StringEquals: every value the request has for the key is one of the
      listed values (case-sensitive); true when the request has no value at all.
    - Null: "true" holds when the request lacks the key, "false" when it has it.
    """
    for operator, block in condition.items():
        if not isinstance(block, dict):
            raise ValueError(f"condition operator {operator} must map keys to values")
        for key, expected in block.items():
            if not _holds(operator, key, expected, request):
                return False
    return True


# The request context of a KMS call, as IAM sees its encryption context: the
# multivalued kms:EncryptionContextKeys, and kms:EncryptionContext:<key> per pair.
def kms_request(context_keys) -> dict[str, list[str]]:
    request = {}
    if context_keys:
        request["kms:encryptioncontextkeys"] = sorted(context_keys)
    for key in context_keys:
        request[f"{CONTEXT_PAIR}{key}".lower()] = ["some-value"]
    return request


# ---------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Principal:
    name: str
    arn: str
    identity: tuple  # (where, statement) pairs of its identity-based policies

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]

    @property
    def root(self) -> str:
        return f"arn:{self.arn.split(':')[1]}:iam::{self.account}:root"


@dataclass(frozen=True)
class Request:
    principal: Principal
    action: str
    resource: str
    context: dict

    @property
    def is_kms(self) -> bool:
        return self.action.lower().startswith("kms:")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    because: str


def request(principal: Principal, action: str, resource: str, context: dict | None = None) -> Request:
    """The request context AWS builds: the caller's ARN and account, and for KMS the caller's account."""
    full = {"aws:principalarn": [principal.arn], "aws:principalaccount": [principal.account]}
    if action.lower().startswith("kms:"):
        full["kms:calleraccount"] = [principal.account]
    full.update(context or {})
    return Request(principal, action, resource, full)


def _applies(statement: dict, req: Request) -> bool:
    for unmodelled in ("NotAction", "NotResource", "NotPrincipal"):
        if unmodelled in statement:
            raise ValueError(f"the evaluator does not model {unmodelled}")
    if statement.get("Effect") not in ("Allow", "Deny"):
        raise ValueError(f"statement effect {statement.get('Effect')!r}")
    if not any(wildcard(a, req.action, ignore_case=True) for a in as_list(statement["Action"])):
        return False
    if not any(wildcard(r, req.resource) for r in as_list(statement["Resource"])):
        return False
    return condition_holds(statement.get("Condition", {}), req.context)


def _named(statement: dict, principal: Principal) -> str | None:
    """How a resource policy statement names the principal: "direct", "account" (the root), or not."""
    value = statement["Principal"]
    if value == "*":
        return "direct"
    if not isinstance(value, dict) or set(value) - {"AWS", "Service"}:
        raise ValueError(f"the evaluator does not model the principal {value!r}")
    for name in as_list(value.get("AWS", [])):
        if name in ("*", principal.arn):
            return "direct"
        if name in (principal.account, principal.root):
            return "account"
    return None


def evaluate(req: Request, identity, resource_policy) -> Decision:
    """One request against the principal's identity statements and the resource's policy."""
    if req.resource.split(":")[4] != req.principal.account:
        raise ValueError(f"{req.principal.name} -> {req.resource}: the evaluator does not model cross-account requests")
    own = [(where, s) for where, s in identity if _applies(s, req)]
    named = [(where, s, _named(s, req.principal)) for where, s in resource_policy]
    theirs = [(where, s, how) for where, s, how in named if how and _applies(s, req)]
    denied = [where for where, s in own if s["Effect"] == "Deny"]
    denied += [where for where, s, _ in theirs if s["Effect"] == "Deny"]
    if denied:
        return Decision(False, f"explicit deny: {denied[0]}")
    by_identity = next((where for where, s in own if s["Effect"] == "Allow"), None)
    direct = next((where for where, s, how in theirs if s["Effect"] == "Allow" and how == "direct"), None)
    delegated = next((where for where, s, how in theirs if s["Effect"] == "Allow" and how == "account"), None)
    if req.is_kms:
        return _key_policy_decides(direct, delegated, by_identity)
    if by_identity:
        return Decision(True, by_identity)
    if direct:
        return Decision(True, direct)
    return Decision(False, "implicit deny: no policy allows it")


def _key_policy_decides(direct, delegated, by_identity) -> Decision:
    if direct:
        return Decision(True, direct)
    if delegated and by_identity:
        return Decision(True, f"{delegated} delegates to IAM: {by_identity}")
    if delegated:
        return Decision(False, f"implicit deny: {delegated} delegates to IAM, and no identity policy allows it")
    return Decision(False, "implicit deny: the key policy does not allow it" +
                    (f" ({by_identity} alone is not enough)" if by_identity else ""))


# ---------------------------------------------------------------- the template, resolved

SAMPLE = {
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "111122223333",
    "AWS::StackName": "conn",
    "AWS::URLSuffix": "amazonaws.com",
}
WORKER = "arn:aws:iam::111122223333:role/pr-worker"
KEY_ADMIN = "arn:aws:iam::111122223333:role/key-admin"
ADMIN = "arn:aws:iam::111122223333:role/admin"
OAUTH_CLIENTS = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:conn-oauth-clients-AbCdEf"
SCENARIOS = {
    f"WorkerRoleArn={WORKER}": {"WorkerRoleArn": WORKER, "KeyAdministratorArns": KEY_ADMIN},
    "WorkerRoleArn empty (HasWorkers false)": {"WorkerRoleArn": "", "KeyAdministratorArns": KEY_ADMIN},
    f"OauthClientsSecretArn={OAUTH_CLIENTS}": {"WorkerRoleArn": WORKER, "KeyAdministratorArns": KEY_ADMIN,
                                              "OauthClientsSecretArn": OAUTH_CLIENTS},
}

ARNS = {
    "AWS::IAM::Role": "arn:{partition}:iam::{account}:role/{name}",
    "AWS::KMS::Key": "arn:{partition}:kms:{region}:{account}:key/{name}",
    "AWS::DynamoDB::Table": "arn:{partition}:dynamodb:{region}:{account}:table/{name}",
    "AWS::Events::EventBus": "arn:{partition}:events:{region}:{account}:event-bus/{name}",
    "AWS::Logs::LogGroup": "arn:{partition}:logs:{region}:{account}:log-group:{name}:*",
    "AWS::Serverless::Function": "arn:{partition}:lambda:{region}:{account}:function:{name}",
    "AWS::SQS::Queue": "arn:{partition}:sqs:{region}:{account}:{name}",
}
NAME_PROPERTY = {"AWS::DynamoDB::Table": "TableName", "AWS::Events::EventBus": "Name",
                 "AWS::Logs::LogGroup": "LogGroupName", "AWS::SQS::Queue": "QueueName"}

# AWS managed policies are not in the template. AWSXRayDaemonWriteAccess grants X-Ray
# trace uploads and sampling reads only; modelled as xray:* on *, which is wider and
# still touches nothing this test asks about.
MANAGED = {"AWSXRayDaemonWriteAccess": {"Effect": "Allow", "Action": "xray:*", "Resource": "*"}}

_NO_VALUE = object()


class Stack:
    """The template deployed with some parameter values: its intrinsics resolve to sample ARNs."""

    def __init__(self, template: dict, parameters: dict[str, str]):
        self.template = template
        self.resources = template["Resources"]
        self.parameters = dict(SAMPLE)
        for name, spec in template.get("Parameters", {}).items():
            value = parameters.get(name, spec.get("Default"))
            if value is not None:
                value = str(value)
                self.parameters[name] = value.split(",") if spec["Type"] == "CommaDelimitedList" else value

    # Names are generated from the stack and logical id unless the template names the resource.
    def name(self, logical: str) -> str:
        resource = self.resources[logical]
        explicit = NAME_PROPERTY.get(resource["Type"])
        if explicit and explicit in resource.get("Properties", {}):
            return self.resolve(resource["Properties"][explicit])
        return f"{SAMPLE['AWS::StackName']}-{logical}"

    def arn(self, logical: str) -> str:
        kind = self.resources[logical]["Type"]
        if kind not in ARNS:
            raise ValueError(f"the evaluator does not know the ARN of {logical} ({kind})")
        return ARNS[kind].format(name=self.name(logical), partition=SAMPLE["AWS::Partition"],
                                 region=SAMPLE["AWS::Region"], account=SAMPLE["AWS::AccountId"])

    def exists(self, logical: str) -> bool:
        condition = self.resources[logical].get("Condition")
        return condition is None or self.condition(condition)

    def condition(self, name: str) -> bool:
        return self._truth(self.template["Conditions"][name])

    def _truth(self, expression) -> bool:
        (function, argument), = expression.items()
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Equals":
            left, right = (self.resolve(a) for a in argument)
            return str(left) == str(right)
        if function == "Fn::Not":
            return not self._truth(argument[0])
        if function == "Fn::And":
            return all(self._truth(a) for a in argument)
        if function == "Fn::Or":
            return any(self._truth(a) for a in argument)
        raise ValueError(f"the evaluator does not model the condition function {function}")

    def ref(self, name: str):
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.name(name)
        raise ValueError(f"!Ref {name}: no such parameter or resource")

    def get_att(self, logical: str, attribute: str) -> str:
        if attribute != "Arn":
            raise ValueError(f"the evaluator does not model !GetAtt {logical}.{attribute}")
        return self.arn(logical)

    def sub(self, argument) -> str:
        text, names = (argument, {}) if isinstance(argument, str) else argument

        def one(match: re.Match) -> str:
            name = match.group(1)
            if name in names:
                return str(self.resolve(names[name]))
            if "." in name:
                return self.get_att(*name.split(".", 1))
            return str(self.ref(name))

        return re.sub(r"\$\{([^!}][^}]*)\}", one, text)

    def resolve(self, value):
        if isinstance(value, list):
            return [v for v in (self.resolve(x) for x in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (function, argument), = value.items()
            if function == "Ref":
                return self.ref(argument)
            if function == "Fn::GetAtt":
                return self.get_att(*argument)
            if function == "Fn::Sub":
                return self.sub(argument)
            if function == "Fn::If":
                name, yes, no = argument
                return self.resolve(yes if self.condition(name) else no)
            if function.startswith("Fn::"):
                raise ValueError(f"the evaluator does not model {function}")
        return {k: v for k, v in ((k, self.resolve(x)) for k, x in value.items()) if v is not _NO_VALUE}

    # ------------------------------------------------------------ principals and policies

    def role_principal(self, role: str, name: str) -> Principal:
        # `where` starts with the logical id of the resource holding the statement.
        statements = [(where, self.resolve(s)) for owner, where, s in role_statements(self.template)
                      if owner == role and self.exists(where.split("/")[0])]
        for arn in self.resolve(self.resources[role]["Properties"].get("ManagedPolicyArns", [])):
            policy = arn.rsplit("/", 1)[-1]
            if policy not in MANAGED:
                raise ValueError(f"{role}: the evaluator does not model the managed policy {arn}")
            statements.append((f"{role}/{policy}", MANAGED[policy]))
        return Principal(name, self.arn(role), tuple(statements))

    def function_role(self, function: str) -> str:
        role = self.resources[function]["Properties"]["Role"]
        if not (isinstance(role, dict) and "Fn::GetAtt" in role):
            raise ValueError(f"{function}: Role must be !GetAtt <role>.Arn")
        return role["Fn::GetAtt"][0]

    def resource_policy(self, arn: str) -> list:
        """(where, statement) of the resource-based policy of the resource with this ARN."""
        for logical, resource in self.resources.items():
            if resource["Type"] in ARNS and self.exists(logical) and self.arn(logical) == arn:
                return self._policy_of(logical, resource)
        if "/index/" in arn:  # an index is governed by its table's policies
            return self.resource_policy(arn.split("/index/")[0])
        if arn and arn == self.parameters.get("OauthClientsSecretArn"):
            # The operator's secret, outside the template: in the same account, the
            # functions' identity policies decide (a resource policy on it could only deny).
            return []
        raise ValueError(f"no resource of the template has the ARN {arn}")

    def _policy_of(self, logical: str, resource: dict) -> list:
        kind, properties = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::KMS::Key":
            return [(f"{logical}/{s.get('Sid', '?')}", s)
                    for s in self.resolve(properties["KeyPolicy"])["Statement"]]
        if kind == "AWS::Serverless::Function":
            return self._function_policy(logical)
        if kind == "AWS::DynamoDB::Table" and "ResourcePolicy" in properties:
            raise ValueError(f"{logical}: the evaluator does not model table resource policies")
        if kind == "AWS::Events::EventBus" and any(
                r["Type"] == "AWS::Events::EventBusPolicy" for r in self.resources.values()):
            raise ValueError("the evaluator does not model AWS::Events::EventBusPolicy")
        return []

    def _function_policy(self, function: str) -> list:
        if self.resources[function]["Properties"].get("Events"):
            raise ValueError(f"{function}: SAM adds permissions for its events, which the evaluator does not model")
        arn, name = self.arn(function), self.name(function)
        permissions, documents = [], []
        for logical, resource in self.resources.items():
            properties = resource.get("Properties", {})
            if not self.exists(logical):
                continue
            kind = resource["Type"]
            if kind == "AWS::Lambda::Permission" and self.resolve(properties["FunctionName"]) in (arn, name):
                permissions.append((logical, self._permission_statement(logical, properties, arn)))
            elif kind == "AWS::Lambda::ResourcePolicy" and self.resolve(properties["ResourceArn"]) == arn:
                documents += [(f"{logical}/{s.get('Sid', '?')}", s)
                              for s in self.resolve(properties["PolicyDocument"])["Statement"]]
        if permissions and documents:
            # AWS: PutResourcePolicy replaces statements AddPermission made; never use both.
            raise ValueError(f"{function} has both AWS::Lambda::Permission and AWS::Lambda::ResourcePolicy")
        return permissions + documents

    def _permission_statement(self, logical: str, properties: dict, arn: str) -> dict:
        unmodelled = set(properties) - {"FunctionName", "Action", "Principal"}
        if unmodelled:
            raise ValueError(f"{logical}: the evaluator does not model {sorted(unmodelled)}")
        principal = self.resolve(properties["Principal"])
        kind = "Service" if principal.endswith(".amazonaws.com") else "AWS"
        return {"Effect": "Allow", "Principal": {kind: principal}, "Action": self.resolve(properties["Action"]),
                "Resource": arn}

    def table_key_arn(self) -> str:
        key = self.resources["ConnectionsTable"]["Properties"]["SSESpecification"]["KMSMasterKeyId"]
        if not (isinstance(key, dict) and "Ref" in key):
            raise ValueError("ConnectionsTable: KMSMasterKeyId must be !Ref to a key of the template")
        return self.arn(key["Ref"])


def decide(stack: Stack, req: Request) -> Decision:
    return evaluate(req, req.principal.identity, stack.resource_policy(req.resource))


# ---------------------------------------------------------------- the test

FUNCTIONS = {
    "add": "AddFunction", "list": "ListFunction", "edit": "EditFunction", "delete": "DeleteFunction",
    "browse": "BrowseFunction", "credentials": "CredentialsFunction", "recheck": "RecheckFunction",
    "web": "WebFunction",
}
SYMBOLS = {"table": "ConnectionsTable", "sealing-key": "ConnectionsKey", "event-bus": "ConnectionEvents",
           "credentials-function": "CredentialsFunction", "recheck-queue": "RecheckQueue"}
# Who may use the sealing key, and how: a secret is sealed where it is entered (add,
# edit) and opened where it is used (edit re-verifies, browse, credentials, recheck).
SEALING_RIGHTS = {
    "kms:GenerateDataKey": {"AddRole", "EditRole"},
    "kms:Decrypt": {"EditRole", "BrowseRole", "CredentialsRole", "RecheckRole"},
}
# With "Connect with Bitbucket" (HasOauth), an OAuth connection's tokens are sealed again
# where they are refreshed: wherever they are used.
REFRESH_SEALING_RIGHTS = {"kms:GenerateDataKey": {"BrowseRole", "CredentialsRole", "RecheckRole"}}
# Who may read the OAuth clients (their secrets): the functions that add, use or refresh.
OAUTH_CLIENT_READERS = {"AddRole", "EditRole", "BrowseRole", "CredentialsRole", "RecheckRole"}


def sealing_rights(oauth: bool) -> dict[str, set[str]]:
    if not oauth:
        return SEALING_RIGHTS
    return {action: SEALING_RIGHTS.get(action, set()) | REFRESH_SEALING_RIGHTS.get(action, set())
            for action in SEALING_RIGHTS.keys() | REFRESH_SEALING_RIGHTS.keys()}
SEALING_ACTIONS = ["kms:GenerateDataKey", "kms:Decrypt", "kms:Encrypt", "kms:CreateGrant"]
GOOD_CONTEXT = ("connection_id", "origin", "owner")
BAD_CONTEXTS = [("connection_id", "owner"), ("connection_id", "extra", "origin", "owner")]
INVOKE_ACTIONS = ["lambda:InvokeFunction", "lambda:InvokeFunctionUrl", "lambda:InvokeAsync"]

# Principals outside the stack and their identity-based policies (admin, worker, key
# administrator, in this order): each holds broad IAM permissions, so that only the
# resource and key policies can refuse them.
OUTSIDERS = {
    "admin": (ADMIN, {"Effect": "Allow", "Action": ["lambda:*", "kms:*", "dynamodb:*"], "Resource": "*"}),
    "pr-worker": (WORKER, {"Effect": "Allow", "Action": ["lambda:InvokeFunction", "kms:Decrypt"], "Resource": "*"}),
    "key-admin": (KEY_ADMIN, {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}),
}

NOTE = ("note: the credentials function decrypts under its own role for any owner, so a worker "
        "asking for another owner's secret is refused by the function's code (its tests), not by policy.")


@dataclass(frozen=True)
class Row:
    who: str
    what: str
    expected: bool
    decision: Decision

    @property
    def ok(self) -> bool:
        return self.decision.allowed == self.expected


def resource_arn(stack: Stack, symbol: str) -> str:
    table, _, index = symbol.partition("/index/")
    if index and table == "table":
        indexes = [i["IndexName"] for i in stack.resources["ConnectionsTable"]["Properties"]["GlobalSecondaryIndexes"]]
        if index not in indexes:
            raise ValueError(f"the table has no index {index!r}")
        return f"{stack.arn('ConnectionsTable')}/index/{index}"
    if symbol == "oauth-clients":
        arn = stack.parameters.get("OauthClientsSecretArn", "")
        if not arn:
            raise ValueError("a call reads the OAuth clients' secret in a scenario without one")
        return arn
    if symbol not in SYMBOLS:
        raise ValueError(f"unknown resource {symbol!r}; known: {sorted(SYMBOLS)}, oauth-clients and table/index/<name>")
    return stack.arn(SYMBOLS[symbol])


def _label(action: str, symbol: str, context_keys) -> str:
    return f"{action} {symbol}" + (" {" + ",".join(sorted(context_keys)) + "}" if context_keys else "")


def _via_dynamodb(stack: Stack, principal: Principal) -> list[tuple[str, Request]]:
    # DynamoDB uses the caller's permission on a customer managed table key, through
    # the service, with the table's encryption context.
    pairs = {"aws:dynamodb:tableName": stack.name("ConnectionsTable"), "aws:dynamodb:subscriberId": principal.account}
    context = {f"{CONTEXT_PAIR}{key}".lower(): [value] for key, value in pairs.items()}
    context["kms:encryptioncontextkeys"] = sorted(pairs)
    context["kms:viaservice"] = [f"dynamodb.{SAMPLE['AWS::Region']}.amazonaws.com"]
    return [(f"{action} table-key (via DynamoDB)", request(principal, action, stack.table_key_arn(), context))
            for action in ("kms:Decrypt", "kms:GenerateDataKey")]


def call_rows(stack: Stack, calls: dict) -> list[Row]:
    rows = []
    for function, recorded in calls.items():
        principal = stack.role_principal(stack.function_role(FUNCTIONS[function]), function)
        requests = []
        for call in recorded:
            keys = call.get("context_keys", [])
            context = kms_request(keys) if keys else {}
            requests.append((_label(call["action"], call["resource"], keys),
                             request(principal, call["action"], resource_arn(stack, call["resource"]), context)))
        if any(c["action"].startswith("dynamodb:") for c in recorded):
            requests += _via_dynamodb(stack, principal)
        rows += [Row(function, label, True, decide(stack, req)) for label, req in requests]
    return rows


def _attempt(stack: Stack, principal: Principal, action: str, symbol: str, keys, expected: bool) -> Row:
    req = request(principal, action, resource_arn(stack, symbol), kms_request(keys))
    return Row(principal.name, _label(action, symbol, keys), expected, decide(stack, req))


def _function_role_attempts(stack: Stack) -> list[Row]:
    # Each role is refused the sealing key's uses that are not its function's, and the
    # ones that are whenever the encryption context is not exactly the service's.
    rows = []
    oauth = stack.condition("HasOauth")
    rights = sealing_rights(oauth)
    for function, logical in FUNCTIONS.items():
        role = stack.function_role(logical)
        principal = stack.role_principal(role, function)
        if oauth and role not in OAUTH_CLIENT_READERS:
            rows.append(_attempt(stack, principal, "secretsmanager:GetSecretValue", "oauth-clients", (), False))
        for action in SEALING_ACTIONS:
            if role in rights.get(action, set()):
                rows += [_attempt(stack, principal, action, "sealing-key", bad, False) for bad in BAD_CONTEXTS]
            else:
                rows.append(_attempt(stack, principal, action, "sealing-key", GOOD_CONTEXT, False))
    return rows


def _outsider_attempts(stack: Stack) -> list[Row]:
    admin, worker, key_admin = (Principal(name, arn, ((f"{name}/identity", policy),))
                                for name, (arn, policy) in OUTSIDERS.items())
    rows = [_attempt(stack, admin, action, "credentials-function", (), False) for action in INVOKE_ACTIONS]
    rows += [_attempt(stack, admin, action, "sealing-key", GOOD_CONTEXT, False)
             for action in ("kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant")]
    rows.append(_attempt(stack, admin, "kms:PutKeyPolicy", "sealing-key", (), False))
    rows.append(_attempt(stack, worker, "lambda:InvokeFunction", "credentials-function", (),
                         stack.condition("HasWorkers")))
    rows.append(_attempt(stack, worker, "kms:Decrypt", "sealing-key", GOOD_CONTEXT, False))
    rows.append(_attempt(stack, key_admin, "kms:Decrypt", "sealing-key", GOOD_CONTEXT, False))
    return rows


def attempt_rows(stack: Stack) -> list[Row]:
    """What other principals try, and what each must get."""
    return _function_role_attempts(stack) + _outsider_attempts(stack)


def attempt_failures(template: dict) -> list[str]:
    """The attempts that get the wrong decision, in every scenario (for check_template.py)."""
    return [f"{title}: {row.who} {row.what}: {'allowed' if row.decision.allowed else 'refused'} "
            f"({row.decision.because})"
            for title, parameters in SCENARIOS.items() for row in attempt_rows(Stack(template, parameters))
            if not row.ok]


def load_calls(path: pathlib.Path) -> tuple[dict, dict]:
    """The calls every deployment makes, and those made only with OAuth configured."""
    document = json.loads(path.read_text())
    both = (document["calls"], document.get("oauth_calls", {function: [] for function in FUNCTIONS}))
    for calls in both:
        if set(calls) != set(FUNCTIONS):
            raise ValueError(f"{path}: calls must name exactly {sorted(FUNCTIONS)}, not {sorted(calls)}")
        for function, recorded in calls.items():
            for call in recorded:
                if set(call) - {"action", "resource", "context_keys"} or not {"action", "resource"} <= set(call):
                    raise ValueError(f"{path}: {function}: a call has action, resource and maybe context_keys: {call}")
    return both


def _print(title: str, headers: tuple, rows: list[Row], expectation: bool) -> None:
    lines = [(r.who, r.what, ("must allow" if r.expected else "must refuse") if expectation else "",
              ("allow" if r.decision.allowed else "deny") + ("" if r.ok else "  FAIL"), r.decision.because)
             for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *lines)]
    print(f"\n{title}")
    for line in [headers, *lines]:
        print("  " + "  ".join(str(x).ljust(w) for x, w in zip(line, widths) if w).rstrip())


def report(template: dict, calls: tuple[dict, dict]) -> int:
    """Prints both matrices for every scenario; the number of wrong decisions."""
    failed = 0
    always, with_oauth = calls
    for title, parameters in SCENARIOS.items():
        stack = Stack(template, parameters)
        calls_made = call_rows(stack, always) + (call_rows(stack, with_oauth) if stack.condition("HasOauth") else [])
        attempts = attempt_rows(stack)
        print(f"== {title}")
        _print("recorded calls", ("function", "call", "", "decision", "deciding statement"), calls_made, False)
        _print("other principals' attempts", ("principal", "attempt", "expected", "decision", "deciding statement"),
               attempts, True)
        failed += sum(not row.ok for row in calls_made + attempts)
    print(f"\n{NOTE}")
    return failed


def main(argv: list[str]) -> int:
    self_test()
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        failed = report(load(pathlib.Path(argv[1])), load_calls(pathlib.Path(argv[2])))
    except ValueError as error:
        print(f"authz: {error}", file=sys.stderr)
        return 2
    print(f"authz: {failed} wrong decision(s)" if failed
          else "authz: every recorded call allowed, every attempt as required")
    return 1 if failed else 0


# ---------------------------------------------------------------- self-test

def _raises(function, *args) -> bool:
    try:
        function(*args)
    except ValueError:
        return True
    return False


def _self_test_conditions() -> None:
    only_keys = {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["owner", "connection_id"]}}
    assert condition_holds(only_keys, kms_request(set())), "ForAllValues holds vacuously on an absent key"
    assert condition_holds(only_keys, kms_request({"owner"}))
    assert not condition_holds(only_keys, kms_request({"owner", "x"}))
    assert condition_holds({"ForAllValues:StringEquals": {"KMS:encryptionContextKEYS": ["owner"]}},
                           kms_request({"owner"})), "condition key names are case-insensitive"
    assert not condition_holds({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Owner"]}},
                               kms_request({"owner"})), "StringEquals values are case-sensitive"
    assert condition_holds({"Null": {"kms:EncryptionContext:owner": "false"}}, kms_request({"owner"}))
    assert not condition_holds({"Null": {"kms:EncryptionContext:owner": "false"}}, kms_request({"connection_id"}))
    assert condition_holds({"Null": {"kms:EncryptionContextKeys": "true"}}, kms_request(set()))
    # A Null on the keys list alone (this template once had it) lets {owner} through.
    weak = dict(only_keys, Null={"kms:EncryptionContextKeys": "false"})
    assert condition_holds(weak, kms_request({"owner"}))
    via = {"kms:viaservice": ["dynamodb.eu-west-1.amazonaws.com"]}
    assert condition_holds({"StringEquals": {"kms:ViaService": "dynamodb.eu-west-1.amazonaws.com"}}, via)
    assert not condition_holds({"StringEquals": {"kms:ViaService": "dynamodb.eu-west-1.amazonaws.com"}}, {})
    assert condition_holds({"StringNotEquals": {"kms:ViaService": "x"}}, {}), "negated: holds on an absent key"
    role = {"aws:principalarn": ["arn:aws:iam::111122223333:role/a"]}
    assert condition_holds({"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/*"}}, role)
    assert not condition_holds({"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::*"}}, role), "no wildcard across colons"
    assert not condition_holds({"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/a"}}, role)
    assert condition_holds({"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/b"}}, role)
    assert condition_holds({"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/a"}}, {})
    assert _raises(condition_holds, {"StringLike": {"kms:EncryptionContextKeys": "*"}}, {}), "unknown operator"
    assert _raises(condition_holds, {"StringEquals": {"aws:SourceIp": "10.0.0.1"}}, {}), "unknown key"
    assert _raises(condition_holds, {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "owner"}}, {})
    assert _raises(condition_holds, {"StringEquals": {"kms:EncryptionContextKeys": "owner"}}, {}), "set operator"
    assert _raises(condition_holds, {"ForAllValues:StringEquals": {"kms:ViaService": "x"}}, {}), "single-valued key"


def _self_test_logic() -> None:
    alice = Principal("alice", "arn:aws:iam::111122223333:role/alice", ())
    function = "arn:aws:lambda:eu-west-1:111122223333:function:f"
    key = "arn:aws:kms:eu-west-1:111122223333:key/k"
    allow_all = [("id", {"Effect": "Allow", "Action": "*", "Resource": "*"})]

    def on(principal):
        return [("rp", {"Effect": "Allow", "Principal": principal, "Action": "*", "Resource": "*"})]

    invoke, decrypt = request(alice, "lambda:InvokeFunction", function), request(alice, "kms:Decrypt", key)
    deny = [("rp", {"Effect": "Deny", "Principal": "*", "Action": "lambda:Invoke*", "Resource": function})]
    assert not evaluate(invoke, allow_all, deny).allowed, "an explicit deny beats an allow"
    assert evaluate(invoke, allow_all, []).allowed, "same account: the identity policy alone allows"
    assert evaluate(invoke, [], on({"AWS": alice.arn})).allowed, "same account: the resource policy alone allows"
    assert evaluate(invoke, [], on("*")).allowed
    assert not evaluate(invoke, [], []).allowed, "nothing allows: implicit deny"
    assert not evaluate(invoke, [], on({"AWS": alice.root})).allowed, "the account root delegates to IAM"
    assert not evaluate(decrypt, allow_all, []).allowed, "KMS: the key policy must allow"
    assert evaluate(decrypt, [], on({"AWS": alice.arn})).allowed, "KMS: a key policy naming the principal suffices"
    assert evaluate(decrypt, allow_all, on({"AWS": alice.root})).allowed, "KMS: root delegates to IAM"
    assert not evaluate(decrypt, [], on({"AWS": alice.root})).allowed, "KMS: root alone is not enough"
    assert not evaluate(decrypt, allow_all, on({"AWS": "arn:aws:iam::111122223333:role/bob"})).allowed
    refuse = [("id", {"Effect": "Deny", "Action": "kms:*", "Resource": "*"})]
    assert not evaluate(decrypt, refuse, on({"AWS": alice.arn})).allowed, "an identity deny beats the key policy"
    elsewhere = request(alice, "kms:Decrypt", "arn:aws:kms:eu-west-1:444455556666:key/k")
    assert _raises(evaluate, elsewhere, allow_all, []), "cross-account requests are not modelled"


def self_test() -> None:
    """The evaluator against facts of AWS's documentation, so a wrong evaluator cannot pass a wrong policy."""
    _self_test_conditions()
    _self_test_logic()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
