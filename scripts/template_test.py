"""Tests of template.yaml as SAM expands it (the "SAM transform" step of check-template.sh).

    python scripts/template_test.py EXPANDED.json

For several sets of parameter values, resolves the template's Conditions the way CloudFormation
does (Fn::Equals / Not / And / Or / Condition over parameter values), drops the resources whose
Condition is false, resolves Fn::If and AWS::NoValue, and checks that each alarm, permission
and KMS statement is there exactly when its parameter asks for it, and what the backfill
state machine may do (invoke the converter only, list raw/ only, write its results outside the
converter's prefixes). Also checks, for every
parameter set, that the resources form no dependency cycle (Ref, GetAtt, Sub, DependsOn), which
CloudFormation would refuse and no linter here reports. Standard library only; under a second.
"""

import copy
import json
import os
import re
import sys
import unittest

NO_VALUE = object()
TEMPLATE = None  # the expanded template, loaded in main()

KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
FUNCTIONS = {
    "FirehoseTransformer": "FirehoseTransformerLogGroup",
    "ParquetConverter": "ParquetConverterLogGroup",
    "UrlIngester": "UrlIngesterLogGroup",
}
ALARMS = [
    "FailedInvocationsAlarm",
    "FirehoseTransformerErrorsAlarm",
    "FirehoseTransformerThrottlesAlarm",
    "ParquetConverterErrorsAlarm",
    "ParquetConverterThrottlesAlarm",
    "UrlIngesterErrorsAlarm",
    "UrlIngesterThrottlesAlarm",
    "DeliveryFreshnessAlarm",
    "DeliverySuccessAlarm",
    "ProcessingSuccessAlarm",
    "BadRowsAlarm",
    "DefaultPartitionRowsAlarm",
]


def resolve(params):
    """The template's resources under `params` (defaults for the rest)."""
    t = copy.deepcopy(TEMPLATE)
    values = {k: str(v.get("Default", "")) for k, v in t.get("Parameters", {}).items()}
    for k, v in params.items():
        assert k in values, f"no parameter {k}"
        values[k] = str(v)
    conditions = t.get("Conditions", {})
    cache = {}

    def value(x):
        if isinstance(x, dict) and "Ref" in x:
            return values[x["Ref"]]
        assert isinstance(x, (str, int, float)), f"cannot evaluate {x!r}"
        return str(x)

    def cond(name):
        if name not in cache:
            cache[name] = evaluate(conditions[name])
        return cache[name]

    def evaluate(c):
        ((fn, args),) = c.items()
        if fn == "Fn::Equals":
            return value(args[0]) == value(args[1])
        if fn == "Fn::Not":
            return not evaluate(args[0])
        if fn == "Fn::And":
            return all(evaluate(a) for a in args)
        if fn == "Fn::Or":
            return any(evaluate(a) for a in args)
        if fn == "Condition":
            return cond(args)
        raise AssertionError(f"unknown condition function {fn}")

    def walk(x):
        if isinstance(x, dict):
            if list(x) == ["Fn::If"]:
                name, yes, no = x["Fn::If"]
                return walk(yes if cond(name) else no)
            if x == {"Ref": "AWS::NoValue"}:
                return NO_VALUE
            out = {}
            for k, v in x.items():
                v = walk(v)
                if v is not NO_VALUE:
                    out[k] = v
            return out
        if isinstance(x, list):
            return [v for v in (walk(i) for i in x) if v is not NO_VALUE]
        return x

    resources = {}
    for name, r in t["Resources"].items():
        if "Condition" in r and not cond(r["Condition"]):
            continue
        resources[name] = walk(r)
    return resources


def references(x, found):
    """Logical ids `x` refers to (Ref, GetAtt, ${...} in Sub)."""
    if isinstance(x, dict):
        for k, v in x.items():
            if k == "Ref" and isinstance(v, str):
                found.add(v)
            elif k == "Fn::GetAtt":
                found.add(v[0] if isinstance(v, list) else v.split(".")[0])
            elif k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                for m in re.finditer(r"\$\{([^!}][^}]*)\}", text):
                    found.add(m.group(1).split(".")[0])
                if isinstance(v, list):
                    references(v[1], found)
            else:
                references(v, found)
    elif isinstance(x, list):
        for i in x:
            references(i, found)
    return found


def cycle(resources):
    """A dependency cycle among `resources` as a list of ids, or None."""
    edges = {}
    for name, r in resources.items():
        deps = references(r.get("Properties", {}), set())
        d = r.get("DependsOn", [])
        deps |= set([d] if isinstance(d, str) else d)
        edges[name] = {x for x in deps if x in resources}
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def statements(role):
    """(policy name, statement) of each inline policy statement of an IAM role."""
    out = []
    for p in role["Properties"].get("Policies", []):
        st = p["PolicyDocument"]["Statement"]
        for s in st if isinstance(st, list) else [st]:
            out.append((p["PolicyName"], s))
    return out


def actions(s):
    a = s.get("Action", [])
    return [a] if isinstance(a, str) else a


def kms_statements(resources, via=None):
    """{role: [statement]} of every statement granting a kms: action (only those whose
    kms:ViaService starts with `via`, when given: "s3." or "secretsmanager.")."""
    out = {}
    for name, r in resources.items():
        if r["Type"] == "AWS::IAM::Role":
            for _, s in statements(r):
                if not any(a.startswith("kms:") for a in actions(s)):
                    continue
                if via is not None:
                    service = s.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService", {})
                    if not service.get("Fn::Sub", "").startswith(via):
                        continue
                out.setdefault(name, []).append(s)
    return out


def secret_statements(resources):
    """The url-ingester role's statements granting a secretsmanager: action."""
    return [
        s
        for _, s in statements(resources["UrlIngesterRole"])
        if any(a.startswith("secretsmanager:") for a in actions(s))
    ]


SECRETS_RESOURCE = {
    "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${IngesterSecretsPrefix}*"
}


def lifecycle_rules(resources):
    rules = resources["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    return {r["Id"]: r for r in rules}


def bucket_arn(path=""):
    return {"Fn::Sub": "arn:${AWS::Partition}:s3:::${AWS::StackName}-${AWS::AccountId}-${AWS::Region}" + path}


def states_arn(kind, rest):
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:{kind}:{rest}"}


def definition(state_machine):
    """The ASL document of an expanded state machine (SAM writes it as Fn::Join of lines; the
    ${...} substitutions stay in its strings)."""
    d = state_machine["Properties"]["DefinitionString"]
    if isinstance(d, dict):
        sep, parts = d["Fn::Join"]
        assert all(isinstance(p, str) for p in parts), "a definition line that is not text"
        d = sep.join(parts)
    return json.loads(d)


def backfill_map(resources):
    """The Distributed Map state of the backfill state machine."""
    maps = [s for s in definition(resources["Backfill"])["States"].values() if s["Type"] == "Map"]
    assert len(maps) == 1, maps
    return maps[0]


def converter_env(resources):
    return resources["ParquetConverter"]["Properties"]["Environment"]["Variables"]


def retryable_error_types():
    """tributary::error::RETRYABLE_ERROR_TYPES as written in shared/src/error.rs."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "shared", "src", "error.rs")) as f:
        text = f.read()
    m = re.search(r"pub const RETRYABLE_ERROR_TYPES: &\[&str\] = &\[(.*?)\];", text, re.S)
    assert m, "RETRYABLE_ERROR_TYPES not found in shared/src/error.rs"
    return re.findall(r'"([A-Za-z0-9]+)"', m.group(1))


EVERYTHING_ON = {
    "AlarmEmail": "ops@example.com",
    "KmsKeyArn": KMS_KEY,
    "ConverterReservedConcurrency": "5",
    "RawLifecycleDays": "45",
    "RawLifecycleAction": "GLACIER_IR",
    "ErrorsExpirationDays": "14",
    "IngesterSecretsPrefix": "tributary/",
}


class Defaults(unittest.TestCase):
    """Every optional parameter at its default: none of what it adds."""

    def setUp(self):
        self.r = resolve({})

    def test_no_topic_and_alarms_without_actions(self):
        self.assertNotIn("AlarmTopic", self.r)
        self.assertNotIn("AlarmEmailSubscription", self.r)
        self.assertNotIn("AlarmTopicPolicy", self.r)
        for a in ALARMS:
            self.assertIn(a, self.r)
            self.assertNotIn("AlarmActions", self.r[a]["Properties"], a)
            self.assertNotIn("OKActions", self.r[a]["Properties"], a)

    def test_no_secrets_access(self):
        self.assertEqual(secret_statements(self.r), [])

    def test_no_kms(self):
        self.assertEqual(kms_statements(self.r), {})
        sse = self.r["DataBucket"]["Properties"]["BucketEncryption"]
        rule = sse["ServerSideEncryptionConfiguration"][0]
        self.assertEqual(rule["ServerSideEncryptionByDefault"], {"SSEAlgorithm": "AES256"})
        athena = self.r["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"]
        self.assertEqual(
            athena["ResultConfiguration"]["EncryptionConfiguration"], {"EncryptionOption": "SSE_S3"}
        )

    def test_continue_async_on_by_default(self):
        names = [p for p, _ in statements(self.r["UrlIngesterRole"])]
        self.assertIn("continue-async", names)
        self.assertEqual(self.r["UrlIngester"]["Properties"]["RecursiveLoop"], "Allow")

    def test_no_reserved_concurrency(self):
        self.assertNotIn("ReservedConcurrentExecutions", self.r["ParquetConverter"]["Properties"])

    def test_no_raw_or_errors_lifecycle(self):
        rules = lifecycle_rules(self.r)
        for rid in ("raw-transition", "raw-expiration", "errors-expiration"):
            self.assertNotIn(rid, rules)
        self.assertIn("abort-incomplete-multipart-uploads", rules)


class EverythingOn(unittest.TestCase):
    """Every optional parameter set: each thing it adds, where it belongs and nowhere else."""

    def setUp(self):
        self.r = resolve(dict(EVERYTHING_ON, IngesterContinueAsync="false"))

    def test_topic_subscription_and_alarm_actions(self):
        sub = self.r["AlarmEmailSubscription"]["Properties"]
        self.assertEqual(sub["Protocol"], "email")
        self.assertEqual(sub["Endpoint"], {"Ref": "AlarmEmail"})
        self.assertIn("AlarmTopic", self.r)
        for a in ALARMS:
            props = self.r[a]["Properties"]
            self.assertEqual(props["AlarmActions"], [{"Ref": "AlarmTopic"}], a)
            self.assertEqual(props["OKActions"], [{"Ref": "AlarmTopic"}], a)

    def test_emf_alarms_use_namespace_dimension_and_threshold(self):
        for a, metric, threshold in [
            ("BadRowsAlarm", "BadRows", "BadRowsAlarmThreshold"),
            ("DefaultPartitionRowsAlarm", "DefaultPartitionRows", "DefaultPartitionRowsAlarmThreshold"),
        ]:
            p = self.r[a]["Properties"]
            self.assertEqual(p["MetricName"], metric)
            self.assertEqual(p["Namespace"], {"Ref": "MetricsNamespace"})
            self.assertEqual(p["Dimensions"], [{"Name": "Function", "Value": "parquet-converter"}])
            self.assertEqual(p["Threshold"], {"Ref": threshold})
            self.assertEqual(p["ComparisonOperator"], "GreaterThanThreshold")
        for a, metric in [
            ("DeliveryFreshnessAlarm", "DeliveryToS3.DataFreshness"),
            ("DeliverySuccessAlarm", "DeliveryToS3.Success"),
            ("ProcessingSuccessAlarm", "ExecuteProcessing.Success"),
        ]:
            self.assertEqual(self.r[a]["Properties"]["MetricName"], metric)
            self.assertEqual(self.r[a]["Properties"]["Namespace"], "AWS/Firehose")

    def test_kms_for_exactly_the_roles_that_use_the_bucket(self):
        grants = kms_statements(self.r, via="s3.")
        self.assertEqual(
            sorted(grants),
            ["BackfillRole", "FirehoseRole", "LargeObjectRole", "ParquetConverterRole", "UrlIngesterRole"],
        )
        for role, sts in grants.items():
            self.assertEqual(len(sts), 1, role)
            s = sts[0]
            self.assertEqual(sorted(actions(s)), ["kms:Decrypt", "kms:GenerateDataKey"], role)
            self.assertEqual(s["Resource"], {"Ref": "KmsKeyArn"}, role)
            cond = s["Condition"]["StringEquals"]
            self.assertIn("kms:ViaService", cond, role)
            self.assertIn("kms:EncryptionContext:aws:s3:arn", cond, role)

    def test_bucket_and_athena_use_the_key(self):
        rule = self.r["DataBucket"]["Properties"]["BucketEncryption"][
            "ServerSideEncryptionConfiguration"
        ][0]
        self.assertEqual(
            rule["ServerSideEncryptionByDefault"],
            {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Ref": "KmsKeyArn"}},
        )
        self.assertIs(rule["BucketKeyEnabled"], True)
        enc = self.r["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"][
            "ResultConfiguration"
        ]["EncryptionConfiguration"]
        self.assertEqual(enc, {"EncryptionOption": "SSE_KMS", "KmsKey": {"Ref": "KmsKeyArn"}})

    def test_no_self_invoke_without_continue_async(self):
        for _, s in statements(self.r["UrlIngesterRole"]):
            self.assertNotIn("lambda:InvokeFunction", actions(s))
        self.assertEqual(self.r["UrlIngester"]["Properties"]["RecursiveLoop"], "Terminate")

    def test_reserved_concurrency(self):
        self.assertEqual(
            self.r["ParquetConverter"]["Properties"]["ReservedConcurrentExecutions"],
            {"Ref": "ConverterReservedConcurrency"},
        )

    def test_lifecycle_rules(self):
        rules = lifecycle_rules(self.r)
        t = rules["raw-transition"]
        self.assertEqual(t["Prefix"], "raw/")
        self.assertEqual(
            t["Transitions"],
            [{"StorageClass": {"Ref": "RawLifecycleAction"}, "TransitionInDays": {"Ref": "RawLifecycleDays"}}],
        )
        self.assertNotIn("raw-expiration", rules)
        e = rules["errors-expiration"]
        self.assertEqual((e["Prefix"], e["ExpirationInDays"]), ("errors/", {"Ref": "ErrorsExpirationDays"}))


class IngestSecrets(unittest.TestCase):
    """headers_secret_arn: GetSecretValue on the prefix's secrets exactly when the prefix is
    set; kms:Decrypt through Secrets Manager only with a KMS key too."""

    def test_get_secret_value_only_with_a_prefix(self):
        for prefix, want in (("", 0), ("tributary/", 1)):
            got = secret_statements(resolve({"IngesterSecretsPrefix": prefix}))
            self.assertEqual(len(got), want, prefix)
        (s,) = secret_statements(resolve({"IngesterSecretsPrefix": "tributary/"}))
        self.assertEqual(actions(s), ["secretsmanager:GetSecretValue"])
        self.assertEqual(s["Resource"], SECRETS_RESOURCE)

    def test_no_other_role_reads_secrets(self):
        r = resolve(EVERYTHING_ON)
        for name, res in r.items():
            if res["Type"] == "AWS::IAM::Role" and name != "UrlIngesterRole":
                for _, s in statements(res):
                    self.assertFalse(any(a.startswith("secretsmanager:") for a in actions(s)), name)

    def test_decrypt_through_secrets_manager_only_with_prefix_and_key(self):
        for params, want in (
            ({"IngesterSecretsPrefix": "tributary/"}, 0),
            ({"KmsKeyArn": KMS_KEY}, 0),
            ({"IngesterSecretsPrefix": "tributary/", "KmsKeyArn": KMS_KEY}, 1),
        ):
            grants = kms_statements(resolve(params), via="secretsmanager.")
            self.assertEqual(sum(len(v) for v in grants.values()), want, params)
            if want:
                ((role, (s,)),) = grants.items()
                self.assertEqual(role, "UrlIngesterRole")
                self.assertEqual(actions(s), ["kms:Decrypt"])
                self.assertEqual(s["Resource"], {"Ref": "KmsKeyArn"})
                self.assertEqual(
                    s["Condition"]["StringLike"]["kms:EncryptionContext:SecretARN"], SECRETS_RESOURCE
                )
        # Every kms: grant is either the bucket's (through S3) or the secrets' (through
        # Secrets Manager): none without a service.
        r = resolve(EVERYTHING_ON)
        total = sum(len(v) for v in kms_statements(r).values())
        through = sum(len(v) for v in kms_statements(r, via="s3.").values()) + sum(
            len(v) for v in kms_statements(r, via="secretsmanager.").values()
        )
        self.assertEqual(total, through)


class RawExpiration(unittest.TestCase):
    def test_expire_instead_of_transition(self):
        rules = lifecycle_rules(resolve({"RawLifecycleDays": "90", "RawLifecycleAction": "EXPIRE"}))
        self.assertNotIn("raw-transition", rules)
        self.assertEqual(rules["raw-expiration"]["ExpirationInDays"], {"Ref": "RawLifecycleDays"})
        self.assertEqual(rules["raw-expiration"]["Prefix"], "raw/")
        self.assertNotIn("errors-expiration", rules)


class Always(unittest.TestCase):
    """What holds under every parameter set."""

    CASES = [{}, dict(EVERYTHING_ON, IngesterContinueAsync="false"), EVERYTHING_ON]

    def test_no_dependency_cycle(self):
        for params in self.CASES:
            self.assertIsNone(cycle(resolve(params)), params)

    def test_logs_only_in_the_functions_own_log_groups(self):
        for params in self.CASES:
            r = resolve(params)
            for fn, group in FUNCTIONS.items():
                props = r[fn]["Properties"]
                role = props["Role"]["Fn::GetAtt"][0]
                self.assertNotIn("ManagedPolicyArns", r[role]["Properties"], role)
                logs = [s for _, s in statements(r[role]) if any(a.startswith("logs:") for a in actions(s))]
                self.assertEqual(len(logs), 1, role)
                self.assertEqual(logs[0]["Resource"], {"Fn::GetAtt": [group, "Arn"]}, role)
                self.assertEqual(props["LoggingConfig"]["LogGroup"], {"Ref": group}, fn)
            # No role other than the functions' may write their logs, nor any role logs anywhere.
            for name, res in r.items():
                if res["Type"] == "AWS::IAM::Role":
                    for _, s in statements(res):
                        if any(a.startswith("logs:") for a in actions(s)):
                            self.assertNotEqual(s["Resource"], "*", name)

    def test_every_lambda_permission_names_its_source(self):
        for params in self.CASES:
            perms = {n: p for n, p in resolve(params).items() if p["Type"] == "AWS::Lambda::Permission"}
            self.assertIn("ParquetConverterS3InvokePermission", perms)
            for name, p in perms.items():
                props = p["Properties"]
                self.assertIn("SourceArn", props, name)
                self.assertEqual(props["SourceAccount"], {"Ref": "AWS::AccountId"}, name)
            s3 = perms["ParquetConverterS3InvokePermission"]["Properties"]
            self.assertEqual(s3["Principal"], "s3.amazonaws.com")
            self.assertEqual(
                s3["SourceArn"],
                {"Fn::Sub": "arn:${AWS::Partition}:s3:::${AWS::StackName}-${AWS::AccountId}-${AWS::Region}"},
            )
            self.assertEqual(
                resolve(params)["DataBucket"]["Properties"]["BucketName"],
                {"Fn::Sub": "${AWS::StackName}-${AWS::AccountId}-${AWS::Region}"},
            )

    def test_self_invoke_only_with_continue_async(self):
        for flag in ("true", "false"):
            r = resolve({"IngesterContinueAsync": flag})
            invoke = [s for _, s in statements(r["UrlIngesterRole"]) if "lambda:InvokeFunction" in actions(s)]
            self.assertEqual(len(invoke), 1 if flag == "true" else 0, flag)


class Backfill(unittest.TestCase):
    """The backfill state machine: a Distributed Map over ListObjectsV2 of a raw/ prefix whose
    children invoke the converter, and a role that may do that and nothing more."""

    CASES = Always.CASES

    def test_state_machine_lists_a_prefix_and_invokes_the_converter(self):
        for params in self.CASES:
            r = resolve(params)
            sm = r["Backfill"]
            self.assertEqual(sm["Type"], "AWS::StepFunctions::StateMachine")
            props = sm["Properties"]
            self.assertEqual(props["StateMachineType"], "STANDARD")
            self.assertEqual(props["RoleArn"], {"Fn::GetAtt": ["BackfillRole", "Arn"]})
            subs = props["DefinitionSubstitutions"]
            self.assertEqual(subs["ConverterArn"], {"Fn::GetAtt": ["ParquetConverter", "Arn"]})
            self.assertEqual(subs["DataBucket"], r["DataBucket"]["Properties"]["BucketName"])
            m = backfill_map(r)
            self.assertEqual(
                m["ItemProcessor"]["ProcessorConfig"], {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
            )
            reader = m["ItemReader"]
            self.assertEqual(reader["Resource"], "arn:aws:states:::s3:listObjectsV2")
            self.assertEqual(reader["Parameters"], {"Bucket.$": "$.bucket", "Prefix.$": "$.prefix"})
            # The converter's item event: the key as listed (not form-encoded).
            self.assertEqual(
                m["ItemSelector"],
                {
                    "bucket.$": "$.bucket",
                    "key.$": "$$.Map.Item.Value.Key",
                    "etag.$": "$$.Map.Item.Value.Etag",
                    "size.$": "$$.Map.Item.Value.Size",
                },
            )
            children = m["ItemProcessor"]["States"]
            tasks = [s for s in children.values() if s["Type"] == "Task"]
            self.assertEqual(len(tasks), 1)
            (task,) = tasks
            self.assertEqual(task["Resource"], "arn:aws:states:::lambda:invoke")
            self.assertEqual(task["Parameters"], {"FunctionName": "${ConverterArn}", "Payload.$": "$"})
            self.assertEqual(task["OutputPath"], "$.Payload")

    def test_retries_exactly_what_can_pass(self):
        (task,) = [
            s for s in backfill_map(resolve({}))["ItemProcessor"]["States"].values() if s["Type"] == "Task"
        ]
        retried = [e for rule in task["Retry"] for e in rule["ErrorEquals"]]
        lambda_errors = [e for e in retried if e.startswith("Lambda.")]
        # The converter's retryable errorTypes, as the shared crate lists them, and no other.
        self.assertEqual(sorted(set(retried) - set(lambda_errors)), sorted(retryable_error_types()))
        for e in (
            "Lambda.TooManyRequestsException",
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
        ):
            self.assertIn(e, lambda_errors)
        for rule in task["Retry"]:
            self.assertGreater(rule["BackoffRate"], 1, rule)
            self.assertLessEqual(rule["MaxAttempts"], 10, rule)
        self.assertNotIn("Catch", task)

    def test_concurrency_and_tolerance_from_the_parameters(self):
        r = resolve({})
        sm = r["Backfill"]["Properties"]
        subs = sm["DefinitionSubstitutions"]
        d = definition(r["Backfill"])
        m = backfill_map(r)
        # Substitutions are text: the Settings state turns them into numbers, which the Map
        # reads through its *Path fields (no literal value that would ignore the parameters).
        for field, key, sub, param in (
            ("MaxConcurrency", "max_concurrency", "MaxConcurrency", "BackfillMaxConcurrency"),
            (
                "ToleratedFailurePercentage",
                "tolerated_failure_percent",
                "ToleratedFailurePercent",
                "BackfillToleratedFailurePercent",
            ),
        ):
            self.assertNotIn(field, m)
            self.assertEqual(m[field + "Path"], f"$.{key}")
            self.assertEqual(subs[sub], {"Ref": param})
            self.assertEqual(
                d["States"][d["StartAt"]]["Parameters"][key + ".$"], f"States.StringToJson('${{{sub}}}')"
            )
        self.assertNotIn("ToleratedFailureCount", m)
        self.assertNotIn("ToleratedFailureCountPath", m)
        params = TEMPLATE["Parameters"]
        self.assertEqual(params["BackfillMaxConcurrency"]["Default"], 40)
        self.assertEqual(params["BackfillToleratedFailurePercent"]["Default"], 0)
        self.assertEqual(params["BackfillToleratedFailurePercent"]["MaxValue"], 100)

    def test_results_outside_the_converters_prefixes(self):
        for params in self.CASES:
            r = resolve(params)
            writer = backfill_map(r)["ResultWriter"]
            self.assertEqual(writer["Resource"], "arn:aws:states:::s3:putObject")
            self.assertEqual(writer["Parameters"]["Bucket"], "${DataBucket}")
            prefix = writer["Parameters"]["Prefix"].rstrip("/") + "/"
            env = converter_env(r)
            for var in ("INPUT_PREFIX", "OUTPUT_PREFIX", "ERROR_PREFIX"):
                self.assertFalse(prefix.startswith(env[var]), var)
                self.assertFalse(env[var].startswith(prefix), var)
            # Nothing under the prefix triggers the converter, and no lifecycle rule expires it.
            for c in r["DataBucket"]["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]:
                for rule in c["Filter"]["S3Key"]["Rules"]:
                    self.assertFalse(prefix.startswith(rule["Value"]), rule)
            for rule in lifecycle_rules(r).values():
                if "Prefix" in rule:
                    self.assertFalse(prefix.startswith(rule["Prefix"]), rule["Id"])
            # The role writes there and nowhere else.
            writes = [
                s
                for _, s in statements(r["BackfillRole"])
                if any(a in ("s3:PutObject", "s3:DeleteObject") for a in actions(s))
            ]
            self.assertEqual(len(writes), 1)
            self.assertEqual(writes[0]["Resource"], bucket_arn("/" + prefix + "*"))

    def test_role_may_invoke_only_the_converter(self):
        for params in self.CASES:
            r = resolve(params)
            role = r["BackfillRole"]
            self.assertNotIn("ManagedPolicyArns", role["Properties"])
            trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            self.assertEqual([s["Principal"] for s in trust], [{"Service": "states.amazonaws.com"}])
            self.assertEqual(trust[0]["Condition"]["StringEquals"]["aws:SourceAccount"], {"Ref": "AWS::AccountId"})
            invoke = [s for _, s in statements(role) if any(a.startswith("lambda:") for a in actions(s))]
            self.assertEqual(len(invoke), 1)
            self.assertEqual(actions(invoke[0]), ["lambda:InvokeFunction"])
            self.assertEqual(
                invoke[0]["Resource"],
                [{"Fn::GetAtt": ["ParquetConverter", "Arn"]}, {"Fn::Sub": "${ParquetConverter.Arn}:*"}],
            )
            for _, s in statements(role):
                self.assertEqual(s["Effect"], "Allow")
                for a in actions(s):
                    self.assertNotIn("*", a, s)
                if s["Resource"] == "*":
                    self.assertTrue(all(a.startswith("xray:") for a in actions(s)), s)

    def test_role_lists_raw_only_and_runs_only_its_own_children(self):
        r = resolve({})
        name = r["Backfill"]["Properties"]["StateMachineName"]
        self.assertEqual(name, {"Fn::Sub": "${AWS::StackName}-backfill"})
        sts = {s["Sid"]: s for _, s in statements(r["BackfillRole"])}
        listing = sts["ListRawPrefix"]
        self.assertEqual(actions(listing), ["s3:ListBucket"])
        self.assertEqual(listing["Resource"], bucket_arn())
        self.assertEqual(
            listing["Condition"], {"StringLike": {"s3:prefix": converter_env(r)["INPUT_PREFIX"] + "*"}}
        )
        own = "${AWS::StackName}-backfill"
        self.assertEqual(actions(sts["ChildExecutions"]), ["states:StartExecution"])
        self.assertEqual(sts["ChildExecutions"]["Resource"], states_arn("stateMachine", own))
        self.assertEqual(
            sorted(actions(sts["ManageChildExecutions"])),
            ["states:DescribeExecution", "states:RedriveExecution", "states:StopExecution"],
        )
        self.assertEqual(sts["ManageChildExecutions"]["Resource"], states_arn("execution", own + "/*"))
        self.assertEqual(actions(sts["MapRunCounts"]), ["states:DescribeMapRun"])
        self.assertEqual(sts["MapRunCounts"]["Resource"], states_arn("mapRun", own + "/*"))
        states_actions = [a for _, s in statements(r["BackfillRole"]) for a in actions(s) if a.startswith("states:")]
        self.assertEqual(
            sorted(states_actions),
            [
                "states:DescribeExecution",
                "states:DescribeMapRun",
                "states:RedriveExecution",
                "states:StartExecution",
                "states:StopExecution",
            ],
        )

    def test_kms_exactly_when_the_key_is_set(self):
        for params, want in (({}, 0), ({"KmsKeyArn": KMS_KEY}, 1), (EVERYTHING_ON, 1)):
            grants = kms_statements(resolve(params)).get("BackfillRole", [])
            self.assertEqual(len(grants), want, params)
            if want:
                (s,) = grants
                self.assertEqual(sorted(actions(s)), ["kms:Decrypt", "kms:GenerateDataKey"])
                self.assertEqual(s["Resource"], {"Ref": "KmsKeyArn"})
                self.assertEqual(
                    s["Condition"]["StringEquals"]["kms:EncryptionContext:aws:s3:arn"], bucket_arn()
                )

    def test_summary_and_output(self):
        d = definition(resolve({})["Backfill"])
        ends = [n for n, s in d["States"].items() if s.get("End")]
        self.assertEqual(ends, ["Summary"])
        summary = d["States"]["Summary"]["Parameters"]
        for k in ("objects.$", "succeeded.$", "failed.$", "results.$", "rows.$", "bad_rows.$", "failures.$"):
            self.assertIn(k, summary)
        # The totals: the converter over the Map Run's result files, which its role may read.
        totals = d["States"]["Totals"]
        self.assertEqual(totals["Parameters"]["FunctionName"], "${ConverterArn}")
        self.assertEqual(
            totals["Parameters"]["Payload"],
            {"mode": "totals", "bucket.$": "$.map.ResultWriterDetails.Bucket", "key.$": "$.map.ResultWriterDetails.Key"},
        )
        writer = backfill_map(resolve({}))["ResultWriter"]["Parameters"]["Prefix"]
        sts = {s["Sid"]: s for _, s in statements(resolve({})["ParquetConverterRole"])}
        self.assertEqual(actions(sts["BackfillResults"]), ["s3:GetObject"])
        self.assertEqual(sts["BackfillResults"]["Resource"], bucket_arn("/" + writer + "/*"))
        self.assertEqual(TEMPLATE["Outputs"]["BackfillStateMachineArn"]["Value"], {"Ref": "Backfill"})


class LargeObject(unittest.TestCase):
    """The large-object state machine: plan, a Distributed Map over the plan's lines whose
    children convert one range each, commit; any failure after the plan leads to the abort.
    Its role may invoke the converter and read the plans, nothing more."""

    CASES = Always.CASES

    def states(self, r):
        return definition(r["LargeObject"])["States"]

    def test_plan_ranges_commit_and_abort_on_any_failure(self):
        for params in self.CASES:
            r = resolve(params)
            props = r["LargeObject"]["Properties"]
            self.assertEqual(props["StateMachineType"], "STANDARD")
            self.assertEqual(props["RoleArn"], {"Fn::GetAtt": ["LargeObjectRole", "Arn"]})
            self.assertEqual(
                props["DefinitionSubstitutions"]["ConverterArn"], {"Fn::GetAtt": ["ParquetConverter", "Arn"]}
            )
            d = definition(r["LargeObject"])
            st = d["States"]
            self.assertEqual(d["StartAt"], "Request")
            self.assertEqual(st["Request"]["Next"], "Plan")
            self.assertEqual(st["Plan"]["Next"], "Settings")
            self.assertEqual(st["Settings"]["Next"], "ConvertEachRange")
            m = st["ConvertEachRange"]
            self.assertEqual(m["Next"], "CommitRequest")
            self.assertEqual(st["CommitRequest"]["Next"], "Commit")
            self.assertEqual(m["ItemReader"]["Resource"], "arn:aws:states:::s3:getObject")
            self.assertEqual(m["ItemReader"]["ReaderConfig"], {"InputType": "JSONL"})
            self.assertEqual(
                m["ItemReader"]["Parameters"],
                {"Bucket.$": "$.plan.manifest.bucket", "Key.$": "$.plan.manifest.key"},
            )
            self.assertEqual(m["ToleratedFailurePercentage"], 0)
            self.assertEqual(m["MaxConcurrencyPath"], "$.max_concurrency")
            self.assertEqual(props["DefinitionSubstitutions"]["MaxConcurrency"], {"Ref": "LargeObjectMaxConcurrency"})
            # Every way out after the plan: done, or the abort then a failed execution.
            for name in ("ConvertEachRange", "Commit"):
                (catch,) = st[name]["Catch"]
                self.assertEqual(catch["ErrorEquals"], ["States.ALL"])
                self.assertEqual(catch["Next"], "AbortRequest")
            self.assertEqual(st["AbortRequest"]["Next"], "Abort")
            self.assertEqual(st["Abort"]["Next"], "Failed")
            self.assertEqual(st["Failed"]["Type"], "Fail")
            self.assertEqual([n for n, s in st.items() if s.get("End")], ["Commit"])
            # Each step is the converter in one mode: the request, with the mode set before it.
            self.assertEqual((st["Request"]["Result"], st["Request"]["ResultPath"]), ("plan", "$.mode"))
            self.assertEqual((st["CommitRequest"]["Result"], st["CommitRequest"]["ResultPath"]), ("commit", "$.plan.mode"))
            self.assertEqual(st["AbortRequest"]["Result"], {"mode": "commit", "abort": True})
            for name, payload in (
                ("Plan", "$"),
                ("Commit", "$.plan"),
                ("Abort", "States.JsonMerge($.plan, $.undo, false)"),
            ):
                task = st[name]
                self.assertEqual(task["Resource"], "arn:aws:states:::lambda:invoke")
                self.assertEqual(task["Parameters"], {"FunctionName": "${ConverterArn}", "Payload.$": payload})
            (child,) = m["ItemProcessor"]["States"].values()
            self.assertEqual(child["Parameters"], {"FunctionName": "${ConverterArn}", "Payload.$": "$"})
            self.assertEqual(
                m["ItemProcessor"]["ProcessorConfig"], {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
            )

    def test_ranges_retry_what_can_pass_and_the_commit_only_lambdas_errors(self):
        st = self.states(resolve({}))
        (child,) = st["ConvertEachRange"]["ItemProcessor"]["States"].values()
        retried = {e for rule in child["Retry"] for e in rule["ErrorEquals"]}
        self.assertEqual(sorted(e for e in retried if not e.startswith("Lambda.")), sorted(retryable_error_types()))
        commit = {e for rule in st["Commit"]["Retry"] for e in rule["ErrorEquals"]}
        self.assertTrue(all(e.startswith("Lambda.") for e in commit), commit)

    def test_split_size_reaches_the_converter(self):
        r = resolve({})
        self.assertEqual(converter_env(r)["SPLIT_MB"], {"Ref": "ConverterSplitMB"})
        self.assertEqual(TEMPLATE["Parameters"]["ConverterSplitMB"]["Default"], 1024)
        sts = {s["Sid"]: s for _, s in statements(r["ParquetConverterRole"])}
        self.assertEqual(
            sts["TellMissingRangesApart"]["Condition"], {"StringLike": {"s3:prefix": "processed/_ranges/*"}}
        )
        self.assertEqual(actions(sts["FindAbandonedRangeUploads"]), ["s3:ListBucketMultipartUploads"])
        self.assertEqual(sts["FindAbandonedRangeUploads"]["Resource"], bucket_arn())

    def test_role_invokes_the_converter_reads_plans_and_runs_its_own_children(self):
        for params in self.CASES:
            r = resolve(params)
            role = r["LargeObjectRole"]
            self.assertNotIn("ManagedPolicyArns", role["Properties"])
            sts = {s["Sid"]: s for _, s in statements(role)}
            self.assertEqual(actions(sts["InvokeConverter"]), ["lambda:InvokeFunction"])
            self.assertEqual(
                sts["InvokeConverter"]["Resource"],
                [{"Fn::GetAtt": ["ParquetConverter", "Arn"]}, {"Fn::Sub": "${ParquetConverter.Arn}:*"}],
            )
            self.assertEqual(actions(sts["ReadPlans"]), ["s3:GetObject"])
            self.assertEqual(sts["ReadPlans"]["Resource"], bucket_arn("/processed/_ranges/*"))
            writer = self.states(r)["ConvertEachRange"]["ResultWriter"]["Parameters"]
            self.assertEqual(sts["WriteResults"]["Resource"], bucket_arn("/" + writer["Prefix"] + "/*"))
            own = "${AWS::StackName}-large-object"
            self.assertEqual(r["LargeObject"]["Properties"]["StateMachineName"], {"Fn::Sub": own})
            self.assertEqual(sts["ChildExecutions"]["Resource"], states_arn("stateMachine", own))
            self.assertEqual(sts["ManageChildExecutions"]["Resource"], states_arn("execution", own + "/*"))
            s3_actions = sorted({a for _, s in statements(role) for a in actions(s) if a.startswith("s3:")})
            self.assertEqual(
                s3_actions,
                ["s3:AbortMultipartUpload", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:PutObject"],
            )
            for _, s in statements(role):
                for a in actions(s):
                    self.assertNotIn("*", a, s)
                if s["Resource"] == "*":
                    self.assertTrue(all(a.startswith("xray:") for a in actions(s)), s)
        self.assertEqual(TEMPLATE["Outputs"]["LargeObjectStateMachineArn"]["Value"], {"Ref": "LargeObject"})


class IngestRanged(unittest.TestCase):
    """The ranged ingestion state machine: plan, an inline Map of range children, commit; any
    failure after the plan goes through the abort. Its role invokes the ingester only."""

    CASES = Always.CASES

    def test_plan_ranges_commit_and_abort_on_any_failure(self):
        for params in self.CASES:
            r = resolve(params)
            props = r["IngestRanged"]["Properties"]
            self.assertEqual(props["StateMachineType"], "STANDARD")
            self.assertEqual(props["RoleArn"], {"Fn::GetAtt": ["IngestRangedRole", "Arn"]})
            self.assertEqual(props["DefinitionSubstitutions"]["IngesterArn"], {"Fn::GetAtt": ["UrlIngester", "Arn"]})
            d = definition(r["IngestRanged"])
            st = d["States"]
            self.assertEqual((st["Request"]["Result"], st["Request"]["ResultPath"]), ("plan", "$.mode"))
            self.assertEqual(st["Plan"]["Next"], "Ranges")
            self.assertEqual(st["Ranges"]["Next"], "Commit")
            self.assertEqual(st["Ranges"]["ItemsPath"], "$.Items")
            for name in ("Ranges", "Commit"):
                (catch,) = st[name]["Catch"]
                self.assertEqual(catch["ErrorEquals"], ["States.ALL"])
                self.assertEqual(catch["Next"], "Abort")
            self.assertEqual(st["Abort"]["Parameters"]["Payload"]["mode"], "commit")
            self.assertIs(st["Abort"]["Parameters"]["Payload"]["abort"], True)
            self.assertEqual(st["Abort"]["Next"], "Failed")
            self.assertEqual([n for n, s in st.items() if s["Type"] == "Fail"], ["Failed"])
            self.assertEqual([n for n, s in st.items() if s.get("End")], ["Commit"])
            tasks = [st["Plan"], st["Commit"], st["Abort"], *st["Ranges"]["ItemProcessor"]["States"].values()]
            for t in tasks:
                self.assertEqual(t["Resource"], "arn:aws:states:::lambda:invoke")
                self.assertEqual(t["Parameters"]["FunctionName"], "${IngesterArn}")

    def test_ranges_retry_exactly_what_can_pass(self):
        st = definition(resolve({})["IngestRanged"])["States"]
        (child,) = st["Ranges"]["ItemProcessor"]["States"].values()
        retried = {e for rule in child["Retry"] for e in rule["ErrorEquals"]}
        self.assertEqual(
            sorted(e for e in retried if not e.startswith(("Lambda.", "States."))), sorted(retryable_error_types())
        )
        commit = {e for rule in st["Commit"]["Retry"] for e in rule["ErrorEquals"]}
        self.assertTrue(commit - {e for e in commit if e.startswith("Lambda.")} <= set(retryable_error_types()))

    def test_role_invokes_only_the_ingester(self):
        for params in self.CASES:
            r = resolve(params)
            role = r["IngestRangedRole"]
            self.assertNotIn("ManagedPolicyArns", role["Properties"])
            for _, s in statements(role):
                for a in actions(s):
                    self.assertTrue(a == "lambda:InvokeFunction" or a.startswith("xray:"), s)
                if "lambda:InvokeFunction" in actions(s):
                    self.assertEqual(
                        s["Resource"], [{"Fn::GetAtt": ["UrlIngester", "Arn"]}, {"Fn::Sub": "${UrlIngester.Arn}:*"}]
                    )

    def test_the_ingester_reads_back_and_deletes_under_raw_only(self):
        r = resolve({})
        sts = {s["Sid"]: s for _, s in statements(r["UrlIngesterRole"])}
        commit = sts["RangedCommit"]
        self.assertEqual(
            sorted(actions(commit)),
            ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:GetObject", "s3:ListMultipartUploadParts"],
        )
        self.assertEqual(commit["Resource"], sts["WriteRaw"]["Resource"])
        env = r["UrlIngester"]["Properties"]["Environment"]["Variables"]
        self.assertEqual(env["RANGE_MB"], {"Ref": "IngesterRangeMiB"})
        self.assertEqual(
            TEMPLATE["Outputs"]["IngestRangedStateMachineArn"]["Value"], {"Ref": "IngestRanged"}
        )


class Resolver(unittest.TestCase):
    """The resolver itself: a cycle is found, conditions combine."""

    def test_finds_a_cycle(self):
        r = {
            "A": {"Type": "X", "Properties": {"P": {"Fn::GetAtt": ["B", "Arn"]}}},
            "B": {"Type": "X", "Properties": {"P": {"Fn::Sub": "x-${C}"}}},
            "C": {"Type": "X", "DependsOn": "A", "Properties": {}},
        }
        self.assertEqual(cycle(r), ["A", "B", "C", "A"])
        del r["C"]["DependsOn"]
        self.assertIsNone(cycle(r))


def main():
    global TEMPLATE
    path = sys.argv.pop(1)
    with open(path) as f:
        TEMPLATE = json.load(f)
    unittest.main(verbosity=1)


if __name__ == "__main__":
    main()
