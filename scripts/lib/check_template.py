"""Checks of infra/template.yaml that cfn-lint and checkov cannot make.

Run by scripts/test with the iac virtualenv's Python (PyYAML comes with cfn-lint):

    .venv/iac/bin/python scripts/lib/check_template.py [infra/template.yaml]

1. Deployed binaries leave the embedded backend out. For every function, `cargo tree`
   runs in its CodeUri (what `sam build` runs `cargo lambda build` in) and must show
   neither the `embedded` feature of `connections` nor rusqlite. Cargo unifies features
   over the packages it builds: from the workspace root that includes the tests, which
   turn `connections/embedded` on. No compilation is needed. (aes-gcm is not among
   them: deployed builds seal with it too, under a data key from KMS.)
2. The KMS key sealing the secrets is used only with exactly the encryption context
   {owner, connection_id, origin}. The condition evaluator of authz.py (the operators
   the template uses and nothing else: an unknown operator is an error, never "true")
   decides each GenerateDataKey/Decrypt statement of the key policy and of the roles
   for several contexts.
3. That key is administered by named principals: the account root may only inspect it,
   grants are denied to everyone, only add and edit may GenerateDataKey, only edit,
   browse, credentials and recheck may Decrypt, and nobody may Encrypt.
4. Each function writes only to its own log group (no AWSLambdaBasicExecutionRole).
5. Other principals are refused: authz.py evaluates the attempts of other function
   roles, an account administrator, the worker role and a key administrator, with and
   without a worker role (the calls each function makes are authz.py's other half,
   run on the calls tests/tests/least_privilege.rs records).
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import authz
from authz import as_list, condition_holds, kms_request, load, role_statements, wildcard

ROOT = pathlib.Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- 1. features of deployed builds

EMBEDDED = re.compile(r'^(connections feature "embedded"|rusqlite v|rusqlite feature|libsqlite3-sys v)')


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


# ---------------------------------------------------------------- 2, 3. the sealing key

CONTEXTS = [
    ({"owner", "connection_id", "origin"}, True),
    ({"owner", "connection_id"}, False),
    ({"owner", "origin"}, False),
    ({"connection_id", "origin"}, False),
    ({"owner"}, False),
    (set(), False),
    ({"owner", "connection_id", "origin", "extra"}, False),
]

USE_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey",
               "kms:GenerateDataKeyWithoutPlaintext", "kms:CreateGrant"]
# Who may do what with the key: GenerateDataKey where secrets are entered, Decrypt where they are used;
# under HasOauth also GenerateDataKey where OAuth tokens are refreshed (authz.REFRESH_SEALING_RIGHTS).
ALLOWED = authz.SEALING_RIGHTS


def rights_under(condition) -> dict[str, set[str]]:
    return authz.sealing_rights(condition == "HasOauth")


def branches(statements: list):
    """(statement, condition) for each statement; both branches of an Fn::If, so that no
    conditional statement escapes the checks."""
    for statement in statements:
        if isinstance(statement, dict) and set(statement) == {"Fn::If"}:
            condition, yes, no = statement["Fn::If"]
            for branch in (yes, no):
                if branch != {"Ref": "AWS::NoValue"}:
                    yield branch, condition
        else:
            yield statement, None


def covered(statement: dict, actions: list[str]) -> list[str]:
    patterns = as_list(statement.get("Action", []))
    return [a for a in actions if any(wildcard(p, a, ignore_case=True) for p in patterns)]


def check_context_conditions(where: str, statement: dict) -> list[str]:
    failures = []
    uses = covered(statement, list(ALLOWED))
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


def unused(where: str, actions: list[str]) -> list[str]:
    extra = [a for a in actions if a not in ALLOWED]
    return [f"{where}: allows {', '.join(extra)}; the service only calls GenerateDataKey and Decrypt"] if extra else []


def check_sealing_key(template: dict) -> list[str]:
    failures = []
    resources = template["Resources"]
    key = resources["ConnectionsKey"]["Properties"]["KeyPolicy"]["Statement"]
    root = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    denies_grants = False
    for statement, condition in branches(key):
        rights = rights_under(condition)
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
            permitted = set.intersection(*(rights.get(action, set()) for action in used))
            if not named or named - permitted or len(named) != len(principals):
                failures.append(f"{where}: {', '.join(used)} for principals other than {sorted(permitted)}")
            failures += unused(where, used)
    if not denies_grants:
        failures.append("ConnectionsKey: no statement denies kms:CreateGrant to every principal")

    for role, where, statement in role_statements(template):
        used = covered(statement, USE_ACTIONS)
        if not used and not any(str(a).startswith("kms:") for a in as_list(statement.get("Action", []))):
            continue
        rights = rights_under(resources[where.split("/")[0]].get("Condition"))
        failures += check_context_conditions(where, statement) + unused(where, used)
        for action in (a for a in used if a in rights):
            if role not in rights[action]:
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


def main() -> int:
    path = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "infra" / "template.yaml"
    template = load(path)
    authz.self_test()
    failures = (
        check_deployed_features(template, path.resolve().parent)
        + check_sealing_key(template)
        + check_logs(template)
        + authz.attempt_failures(template)
    )
    for failure in failures:
        print(f"template: {failure}", file=sys.stderr)
    if failures:
        return 1
    functions = len(function_code_dirs(template, path.resolve().parent))
    print(f"template: {functions} functions build without the embedded backend; "
          "KMS context conditions, key administration, log permissions and other principals' refusals hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
