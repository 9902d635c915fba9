"""Checks of infra/template.yaml that cfn-lint and checkov cannot make.

Run by scripts/test with the iac virtualenv's Python (PyYAML comes with cfn-lint):

    .venv/iac/bin/python scripts/lib/check_template.py [infra/template.yaml]

1. Deployed binaries leave the embedded backend out. For every function, `cargo tree`
   runs in its CodeUri (what `sam build` runs `cargo lambda build` in) and must show
   neither the `embedded` feature of `connections` nor rusqlite or aes-gcm. Cargo
   unifies features over the packages it builds: from the workspace root that includes
   the tests, which turn `connections/embedded` on. No compilation is needed.
2. The KMS key sealing the secrets is used only with exactly the encryption context
   {owner, connection_id}. An evaluator of the condition operators the template uses
   (and nothing else: an unknown operator is an error, never "true") decides each
   Encrypt/Decrypt statement of the key policy and of the roles for five contexts.
3. That key is administered by named principals: the account root may only inspect it,
   grants are denied to everyone, only add and edit may Encrypt and only edit,
   browse, credentials and recheck may Decrypt.
4. Each function writes only to its own log group (no AWSLambdaBasicExecutionRole).
"""

from __future__ import annotations

import fnmatch
import pathlib
import re
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


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


# ---------------------------------------------------------------- 1. features of deployed builds

EMBEDDED = re.compile(r'^(connections feature "embedded"|rusqlite v|rusqlite feature|aes-gcm v|libsqlite3-sys v)')


def function_code_dirs(template: dict, template_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    default = template.get("Globals", {}).get("Function", {}).get("CodeUri")
    dirs = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        code_uri = resource.get("Properties", {}).get("CodeUri", default)
        if not isinstance(code_uri, str):
            raise SystemExit(f"{name}: CodeUri must be a local directory, not {code_uri!r}")
        dirs[name] = (template_dir / code_uri).resolve()
    return dirs


def check_deployed_features(template: dict, template_dir: pathlib.Path) -> list[str]:
    failures = []
    for name, directory in function_code_dirs(template, template_dir).items():
        manifest = directory / "Cargo.toml"
        binary = template["Resources"][name].get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if not manifest.is_file():
            failures.append(f"{name}: CodeUri {directory} has no Cargo.toml")
            continue
        if "[package]" not in manifest.read_text():
            failures.append(f"{name}: CodeUri {directory} is a workspace root, not the function's package")
        elif binary and not re.search(rf'(?m)^name\s*=\s*"{re.escape(binary)}"', manifest.read_text()):
            failures.append(f"{name}: {manifest} does not define the binary {binary!r} that BuildProperties names")
        tree = subprocess.run(
            ["cargo", "tree", "--locked", "-e", "normal,build,features", "--prefix", "none"],
            cwd=directory,
            capture_output=True,
            text=True,
        )
        if tree.returncode != 0:
            failures.append(f"{name}: cargo tree failed in {directory}:\n{tree.stderr}")
            continue
        found = sorted({line for line in tree.stdout.splitlines() if EMBEDDED.match(line)})
        if found:
            failures.append(
                f"{name}: building from {directory} compiles in the embedded backend: " + "; ".join(found[:4])
            )
    return failures


# ---------------------------------------------------------------- 2. condition evaluation

# The request context of a KMS call, as IAM sees its encryption context: the
# multi-valued kms:EncryptionContextKeys, and kms:EncryptionContext:<key> per pair.
def kms_request(context_keys: set[str]) -> dict[str, list[str]]:
    request = {}
    if context_keys:
        request["kms:encryptioncontextkeys"] = sorted(context_keys)
    for key in context_keys:
        request[f"kms:encryptioncontext:{key}".lower()] = ["some-value"]
    return request


def _values(request: dict[str, list[str]], key: str) -> list[str] | None:
    # Condition key names are case-insensitive; their values are not (StringEquals).
    return request.get(key.lower())


def _flag(value, operator: str, key: str) -> bool:
    for text in as_list(value):
        if str(text).lower() not in ("true", "false"):
            raise ValueError(f"{operator} {key}: {text!r} is not true or false")
    if len(as_list(value)) != 1:
        raise ValueError(f"{operator} {key}: expected one value")
    return str(as_list(value)[0]).lower() == "true"


def condition_holds(condition: dict, request: dict[str, list[str]]) -> bool:
    """IAM semantics for exactly these operators; all blocks and all keys ANDed.

    - ForAllValues:StringEquals: every value the request has for the key is one of the
      listed values (case-sensitive); true when the request has no value at all.
    - Null: "true" holds when the request lacks the key, "false" when it has it.
    """
    for operator, block in condition.items():
        if not isinstance(block, dict):
            raise ValueError(f"condition operator {operator} must map keys to values")
        for key, expected in block.items():
            present = _values(request, key)
            if operator == "ForAllValues:StringEquals":
                allowed = [str(v) for v in as_list(expected)]
                if any(v not in allowed for v in present or []):
                    return False
            elif operator == "Null":
                wants_absent = _flag(expected, operator, key)
                if wants_absent != (present is None):
                    return False
            else:
                raise ValueError(f"the evaluator does not model condition operator {operator!r}")
    return True


CONTEXTS = [
    ({"owner", "connection_id"}, True),
    ({"owner"}, False),
    ({"connection_id"}, False),
    (set(), False),
    ({"owner", "connection_id", "extra"}, False),
]

USE_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
               "kms:GenerateDataKeyWithoutPlaintext", "kms:CreateGrant"]


def action_matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def covered(statement: dict, actions: list[str]) -> list[str]:
    return [a for a in actions if any(action_matches(p, a) for p in as_list(statement.get("Action", [])))]


def check_context_conditions(where: str, statement: dict) -> list[str]:
    failures = []
    uses = covered(statement, ["kms:Encrypt", "kms:Decrypt"])
    if statement.get("Effect") != "Allow" or not uses:
        return failures
    condition = statement.get("Condition")
    if not condition:
        return [f"{where}: allows {', '.join(uses)} without an encryption-context condition"]
    for keys, allowed in CONTEXTS:
        try:
            holds = condition_holds(condition, kms_request(keys))
        except ValueError as error:
            return [f"{where}: {error}"]
        if holds != allowed:
            verdict = "allows" if holds else "denies"
            failures.append(f"{where}: {verdict} {', '.join(uses)} with the context {sorted(keys) or '{}'}")
    return failures


def is_ref(value, logical_id: str) -> bool:
    return value == {"Ref": logical_id} or value == {"Fn::GetAtt": [logical_id, "Arn"]}


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


def check_sealing_key(template: dict) -> list[str]:
    failures = []
    resources = template["Resources"]
    key = resources["ConnectionsKey"]["Properties"]["KeyPolicy"]["Statement"]
    root = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    # Who may do what with the key: Encrypt where secrets are entered, Decrypt where they are used.
    allowed = {
        "kms:Encrypt": {"AddRole", "EditRole"},
        "kms:Decrypt": {"EditRole", "BrowseRole", "CredentialsRole", "RecheckRole"},
    }
    users = allowed["kms:Encrypt"] | allowed["kms:Decrypt"]
    denies_grants = False
    for statement in key:
        where = f"ConnectionsKey/{statement.get('Sid', '?')}"
        failures += check_context_conditions(where, statement)
        principals = as_list(statement.get("Principal", {}).get("AWS", [])) if isinstance(
            statement.get("Principal"), dict) else as_list(statement.get("Principal"))
        if statement.get("Effect") == "Deny":
            if covered(statement, ["kms:CreateGrant"]) and principals in (["*"], [{"AWS": "*"}]):
                denies_grants = True
            continue
        if root in principals:
            powerful = [p for p in as_list(statement["Action"])
                        if not re.fullmatch(r"kms:(Describe|Get|List)\w*", p)]
            if powerful:
                failures.append(f"{where}: the account root (so any IAM principal) may {', '.join(powerful)}")
        used = covered(statement, USE_ACTIONS)
        if used:
            named = {p["Fn::GetAtt"][0] for p in principals if isinstance(p, dict) and "Fn::GetAtt" in p}
            permitted = set.intersection(*(allowed.get(action, set()) for action in used))
            if not named or named - permitted or len(named) != len(principals):
                failures.append(f"{where}: {', '.join(used)} for principals other than {sorted(permitted)}")
            if "kms:CreateGrant" in used or any(a.startswith("kms:ReEncrypt") or a.startswith("kms:GenerateDataKey")
                                                 for a in used):
                failures.append(f"{where}: allows {', '.join(used)}; the service only Encrypts and Decrypts")
    if not denies_grants:
        failures.append("ConnectionsKey: no statement denies kms:CreateGrant to every principal")

    for role, where, statement in role_statements(template):
        if not covered(statement, USE_ACTIONS) and not any(str(a).startswith("kms:") for a in as_list(statement.get("Action", []))):
            continue
        failures += check_context_conditions(where, statement)
        for action in covered(statement, ["kms:Encrypt", "kms:Decrypt"]):
            if role not in allowed[action]:
                failures.append(f"{where}: {role} may {action}")
            if not all(is_ref(r, "ConnectionsKey") for r in as_list(statement.get("Resource"))):
                failures.append(f"{where}: KMS use must name the ConnectionsKey, not {statement.get('Resource')!r}")
    return failures


# ---------------------------------------------------------------- 4. logs

def check_logs(template: dict) -> list[str]:
    failures = []
    resources = template["Resources"]
    log_group_of = {}
    for name, resource in resources.items():
        if resource["Type"] == "AWS::Serverless::Function":
            properties = resource["Properties"]
            role = properties["Role"]["Fn::GetAtt"][0]
            log_group_of[role] = properties["LoggingConfig"]["LogGroup"]["Ref"]
    for name, resource in resources.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for arn in resource["Properties"].get("ManagedPolicyArns", []):
            text = arn["Fn::Sub"] if isinstance(arn, dict) else arn
            if "AWSLambdaBasicExecutionRole" in text:
                failures.append(f"{name}: AWSLambdaBasicExecutionRole allows writing to every log group")
    writes = {}
    for role, where, statement in role_statements(template):
        actions = [a for a in as_list(statement.get("Action", [])) if str(a).startswith("logs:")]
        if not actions:
            continue
        if set(actions) != {"logs:CreateLogStream", "logs:PutLogEvents"}:
            failures.append(f"{where}: logs actions {actions}; a function only needs CreateLogStream and PutLogEvents")
        for target in as_list(statement.get("Resource")):
            if not is_ref(target, log_group_of.get(role, "?")):
                failures.append(f"{where}: writes logs to {target!r}, not its own log group {log_group_of.get(role)}")
        writes[role] = True
    for role in log_group_of:
        if role not in writes:
            failures.append(f"{role}: cannot write to its log group {log_group_of[role]}")
    return failures


# ---------------------------------------------------------------- self-test of the evaluator

def self_test() -> None:
    """The evaluator against facts of IAM, so a wrong evaluator cannot pass a wrong policy."""
    only_keys = {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["owner", "connection_id"]}}
    assert condition_holds(only_keys, kms_request(set())), "ForAllValues holds vacuously on an absent key"
    assert condition_holds(only_keys, kms_request({"owner"}))
    assert not condition_holds(only_keys, kms_request({"owner", "x"}))
    assert not condition_holds({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Owner"]}},
                               kms_request({"owner"})), "StringEquals is case-sensitive"
    assert condition_holds({"Null": {"kms:EncryptionContext:owner": "false"}}, kms_request({"owner"}))
    assert not condition_holds({"Null": {"kms:EncryptionContext:owner": "false"}}, kms_request({"connection_id"}))
    assert condition_holds({"Null": {"kms:EncryptionContextKeys": "true"}}, kms_request(set()))
    # The condition this template had before: Null on the keys list alone lets {owner} through.
    weak = dict(only_keys, Null={"kms:EncryptionContextKeys": "false"})
    assert condition_holds(weak, kms_request({"owner"}))
    try:
        condition_holds({"StringLike": {"kms:EncryptionContextKeys": "*"}}, kms_request(set()))
    except ValueError:
        pass
    else:
        raise AssertionError("an unknown operator must be an error")


def main() -> int:
    path = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "infra" / "template.yaml"
    template = load(path)
    self_test()
    failures = (
        check_deployed_features(template, path.resolve().parent)
        + check_sealing_key(template)
        + check_logs(template)
    )
    for failure in failures:
        print(f"template: {failure}", file=sys.stderr)
    if failures:
        return 1
    functions = len(function_code_dirs(template, path.resolve().parent))
    print(f"template: {functions} functions build without the embedded backend; "
          "KMS context conditions, key administration and log permissions hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
