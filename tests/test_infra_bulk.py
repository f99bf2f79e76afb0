"""The bulk classification state machine (infra/statemachine/bulk.asl.json) and its resources in
infra/template.yaml: the definition passes a real Amazon States Language validator, its input
handling routes and rejects execution inputs as documented (a small interpreter of the states
before the Map), the Distributed Map is wired as intended, and the IAM role is least privilege.

The validator is the npm package asl-validator, pinned, installed outside git's view:

    npm install --no-save --prefix .venv/asl-validator asl-validator@4.0.0

$ASL_VALIDATOR may name another executable; without node or the package those tests are skipped
and say why.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_infra import CloudFormationLoader, parameter_defaults, resolve

from lambda_handler.bulk import MAX_BULK_TOP_K
from lambda_handler.service import ModelUnavailable
from lambda_handler.validation import MAX_ABSTRACT_CHARS, MAX_DOCUMENTS

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
DEFINITION = INFRA / "statemachine" / "bulk.asl.json"
ASL_VALIDATOR_VERSION = "4.0.0"
ASL_VALIDATOR_PREFIX = REPO / ".venv" / "asl-validator"
INSTALL = (
    f"npm install --no-save --prefix {ASL_VALIDATOR_PREFIX.relative_to(REPO)} "
    f"asl-validator@{ASL_VALIDATOR_VERSION}"
)
BUCKET = "arxiv-bulk-test"
# The pseudo parameters that test_infra.resolve() leaves to its caller.
ACCOUNT, STACK = "123456789012", "arxiv-classifier"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{STACK}-ClassifyFunction-AbC123"
MAPS = {"ClassifyJsonl": "JSONL", "ClassifyCsv": "CSV"}
LAMBDA_TRANSIENT_ERRORS = {
    "Lambda.TooManyRequestsException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
}
EXPRESS_MAX_SECONDS = 5 * 60
PAYLOAD_LIMIT_BYTES = 256 * 1024
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)\}")


# --- the template and the definition, as CloudFormation would deploy them ---------------------


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.load((INFRA / "template.yaml").read_text(encoding="utf-8"), CloudFormationLoader)


@pytest.fixture(scope="module")
def machine(template: dict) -> dict:
    return template["Resources"]["BulkStateMachine"]


@pytest.fixture(scope="module")
def definition() -> dict:
    return json.loads(DEFINITION.read_text(encoding="utf-8"))


def deploy_parameters(template: dict, **overrides: str) -> dict[str, str]:
    """The template's defaults with a bulk bucket, plus the pseudo parameters resolve() lacks."""
    return {
        **parameter_defaults(template),
        "BulkBucket": BUCKET,
        "AWS::AccountId": ACCOUNT,
        "AWS::StackName": STACK,
        **overrides,
    }


def without_getatt(node: object) -> object:
    """`node` with ClassifyFunction.Arn filled in (resolve() knows no Fn::GetAtt)."""
    if isinstance(node, list):
        return [without_getatt(item) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Fn::GetAtt"}:
        assert node["Fn::GetAtt"] == ["ClassifyFunction", "Arn"], node
        return FUNCTION_ARN
    return {key: without_getatt(value) for key, value in node.items()}


def deployed(template: dict, node: object, **overrides: str) -> object:
    parameters = deploy_parameters(template, **overrides)
    return resolve(without_getatt(node), parameters, template["Conditions"])


def substitutions(template: dict, machine: dict, **overrides: str) -> dict[str, str]:
    values = deployed(template, machine["Properties"]["DefinitionSubstitutions"], **overrides)
    return {name: str(value) for name, value in values.items()}


def substituted_text(template: dict, machine: dict, **overrides: str) -> str:
    """The definition as Step Functions receives it: every ${Name} replaced."""
    values = substitutions(template, machine, **overrides)
    text = PLACEHOLDER.sub(lambda match: values[match.group(1)], DEFINITION.read_text())
    assert "${" not in text
    return text


@pytest.fixture(scope="module")
def deployed_definition(template: dict, machine: dict) -> dict:
    return json.loads(substituted_text(template, machine))


# --- asl-validator ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asl_validator() -> str:
    if not shutil.which("node"):
        pytest.skip(f"node is not installed, so asl-validator cannot run; then: {INSTALL}")
    candidates = [
        os.environ.get("ASL_VALIDATOR"),
        str(ASL_VALIDATOR_PREFIX / "node_modules" / ".bin" / "asl-validator"),
    ]
    found = next((path for path in candidates if path and Path(path).is_file()), None)
    if found is None:
        pytest.skip(f"asl-validator is not installed; install it with: {INSTALL}")
    version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == ASL_VALIDATOR_VERSION, f"{found}: reinstall with {INSTALL}"
    return found


def validate(validator: str, definition: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "definition.asl.json"
    path.write_text(json.dumps(definition, indent=2), encoding="utf-8")
    return subprocess.run(
        [validator, "--json-path", str(path)], capture_output=True, text=True, timeout=60
    )


def test_deployed_definition_passes_asl_validator(
    asl_validator: str, deployed_definition: dict, tmp_path: Path
):
    done = validate(asl_validator, deployed_definition, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is valid" in done.stdout


def test_definition_file_is_valid_json_and_asl_before_substitution(
    asl_validator: str, definition: dict, tmp_path: Path
):
    # Placeholders only inside strings: editors, linters and this validator read the file as is.
    done = validate(asl_validator, definition, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def _unknown_state_type(definition: dict) -> None:
    definition["States"]["ChooseFormat"]["Type"] = "Switch"


def _map_without_item_processor(definition: dict) -> None:
    del definition["States"]["ClassifyCsv"]["ItemProcessor"]


def _missing_transition_target(definition: dict) -> None:
    definition["States"]["Prepare"]["Next"] = "Nowhere"


def _unknown_execution_type(definition: dict) -> None:
    definition["States"]["ClassifyJsonl"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = (
        "FAST"
    )


def _duplicate_state_name(definition: dict) -> None:
    processor = definition["States"]["ClassifyCsv"]["ItemProcessor"]
    processor["States"] = {"ClassifyJsonlBatch": processor["States"].pop("ClassifyCsvBatch")}
    processor["StartAt"] = "ClassifyJsonlBatch"


@pytest.mark.parametrize(
    ("breakage", "error"),
    [
        (_unknown_state_type, "SCHEMA_VALIDATION_FAILED"),
        (_map_without_item_processor, "MAP_ITEM_PROCESSOR"),
        (_missing_transition_target, "MISSING_TRANSITION_TARGET"),
        (_unknown_execution_type, "SCHEMA_VALIDATION_FAILED"),
        (_duplicate_state_name, "DUPLICATE_STATE_NAMES"),
    ],
)
def test_asl_validator_rejects_broken_copies(
    asl_validator: str, deployed_definition: dict, tmp_path: Path, breakage, error: str
):
    broken = copy.deepcopy(deployed_definition)
    breakage(broken)
    done = validate(asl_validator, broken, tmp_path)
    assert done.returncode != 0, done.stdout
    assert error in done.stdout + done.stderr


# --- the states before the Map, interpreted ---------------------------------------------------


class Missing(LookupError):
    """A path that selects nothing: Step Functions fails the execution (States.Runtime)."""


def select(path: str, data: object, context: dict) -> object:
    """A reference path ($, $.a.b, $$.a.b) as Step Functions resolves it."""
    root, _, rest = path.partition(".") if path.startswith("$$") else ("$", "", path[2:])
    value = context if root == "$$" else data
    if path in ("$", "$$"):
        return value
    for name in rest.split(".") if rest else []:
        if not isinstance(value, dict) or name not in value:
            raise Missing(path)
        value = value[name]
    return value


def intrinsic(expression: str, data: object, context: dict) -> object:
    """The intrinsic functions the definition uses, and only those."""
    name, arguments = re.fullmatch(r"(States\.\w+)\((.*)\)", expression).groups()
    args = [a.strip() for a in re.findall(r"'[^']*'|[^,]+", arguments)]

    def value(arg: str) -> object:
        if arg.startswith("'"):
            return arg[1:-1]
        if arg in ("true", "false"):
            return arg == "true"
        return select(arg, data, context)

    values = [value(arg) for arg in args]
    if name == "States.JsonMerge":
        first, second, deep = values
        assert isinstance(first, dict) and isinstance(second, dict) and deep is False
        return {**first, **second}
    if name == "States.Format":
        template, *fields = values
        assert template.count("{}") == len(fields)
        for field in fields:
            template = template.replace(
                "{}", field if isinstance(field, str) else json.dumps(field), 1
            )
        return template
    if name == "States.StringToJson":
        (text,) = values
        return json.loads(text)
    raise AssertionError(f"intrinsic() does not know {name}")


def payload(template: object, data: object, context: dict) -> object:
    """A Parameters payload template applied to `data`."""
    if isinstance(template, list):
        return [payload(item, data, context) for item in template]
    if not isinstance(template, dict):
        return template
    out = {}
    for key, value in template.items():
        if key.endswith(".$"):
            selected = value.startswith("States.")
            out[key[:-2]] = (intrinsic if selected else select)(value, data, context)
        else:
            out[key] = payload(value, data, context)
    return out


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def matches(rule: dict, data: object, context: dict) -> bool:
    """A Choice Rule. And/Or evaluate every operand (no reliance on short-circuiting), and a
    comparison with a value of another type is false ("Step Functions doesn't attempt to match a
    numeric field to a string value"), while a missing path fails as on AWS."""
    if "And" in rule:
        return all([matches(r, data, context) for r in rule["And"]])
    if "Or" in rule:
        return any([matches(r, data, context) for r in rule["Or"]])
    if "Not" in rule:
        return not matches(rule["Not"], data, context)
    (test, operand), *others = ((k, v) for k, v in rule.items() if k not in ("Variable", "Next"))
    assert not others, rule
    if test == "IsPresent":
        try:
            select(rule["Variable"], data, context)
        except Missing:
            return not operand
        return operand
    value = select(rule["Variable"], data, context)
    tests = {
        "IsNull": lambda: (value is None) == operand,
        "IsString": lambda: isinstance(value, str) == operand,
        "IsNumeric": lambda: is_number(value) == operand,
        "StringEquals": lambda: isinstance(value, str) and value == operand,
        "StringMatches": lambda: isinstance(value, str) and fnmatch.fnmatchcase(value, operand),
        "NumericLessThan": lambda: is_number(value) and value < operand,
        "NumericGreaterThan": lambda: is_number(value) and value > operand,
    }
    return tests[test]()


def run_until_map(definition: dict, execution_input: object, name: str = "exec-1") -> tuple:
    """(state name, its input) for the first Map or Fail state the execution reaches."""
    context = {"Execution": {"Name": name, "Input": execution_input}}
    state_name, data = definition["StartAt"], execution_input
    for _ in range(len(definition["States"])):
        state = definition["States"][state_name]
        if state["Type"] in ("Map", "Fail"):
            return state_name, data
        if state["Type"] == "Pass":
            assert set(state) <= {"Type", "Comment", "Parameters", "Next"}, state_name
            data, state_name = payload(state["Parameters"], data, context), state["Next"]
        elif state["Type"] == "Choice":
            chosen = (c["Next"] for c in state["Choices"] if matches(c, data, context))
            state_name = next(chosen, state["Default"])
        else:
            raise AssertionError(f"run_until_map() does not know {state['Type']}")
    raise AssertionError("no Map or Fail state reached")


@pytest.mark.parametrize(
    ("execution_input", "reached"),
    [
        ({"key": "papers.jsonl"}, "ClassifyJsonl"),
        ({"key": "kaggle/arxiv_data.csv"}, "ClassifyCsv"),
        ({"key": "papers.txt", "format": "jsonl"}, "ClassifyJsonl"),
        ({"key": "papers.jsonl", "format": "csv"}, "ClassifyCsv"),
        ({"key": "papers.jsonl", "format": None, "top_k": 3, "threshold": 0.5}, "ClassifyJsonl"),
        ({"key": "p.csv", "top_k": None, "threshold": None, "run": "june"}, "ClassifyCsv"),
        ({"key": "p.csv", "threshold": 0}, "ClassifyCsv"),
        ({"key": "p.csv", "threshold": 1}, "ClassifyCsv"),
        ({"key": "papers.txt"}, "UnknownFormat"),
        ({"key": "papers.jsonl", "format": "JSONL"}, "UnknownFormat"),
        ({"key": "papers.jsonl", "format": "parquet"}, "UnknownFormat"),
        ({"key": "papers.jsonl", "format": 1}, "UnknownFormat"),
        ({}, "InvalidKey"),
        ({"format": "jsonl"}, "InvalidKey"),
        ({"key": ""}, "InvalidKey"),
        ({"key": None}, "InvalidKey"),
        ({"key": 7}, "InvalidKey"),
        (["papers.jsonl"], "InvalidKey"),
        ("papers.jsonl", "InvalidKey"),
        ({"key": "p.jsonl", "top_k": 0}, "InvalidTopK"),
        ({"key": "p.jsonl", "top_k": MAX_BULK_TOP_K + 1}, "InvalidTopK"),  # the function's bound
        ({"key": "p.jsonl", "top_k": MAX_BULK_TOP_K}, "ClassifyJsonl"),
        ({"key": "p.jsonl", "top_k": "3"}, "InvalidTopK"),
        ({"key": "p.jsonl", "top_k": True}, "InvalidTopK"),
        ({"key": "p.jsonl", "threshold": -0.1}, "InvalidThreshold"),
        ({"key": "p.jsonl", "threshold": 1.5}, "InvalidThreshold"),
        ({"key": "p.jsonl", "threshold": "high"}, "InvalidThreshold"),
        ({"key": "p.jsonl", "run": ""}, "InvalidRun"),
        ({"key": "p.jsonl", "run": None}, "InvalidRun"),
        ({"key": "p.jsonl", "run": 3}, "InvalidRun"),
    ],
)
def test_execution_input_is_routed_or_rejected(
    deployed_definition: dict, execution_input: object, reached: str
):
    assert run_until_map(deployed_definition, execution_input)[0] == reached


def test_each_rejection_says_what_is_wrong(deployed_definition: dict):
    fails = {n: s for n, s in deployed_definition["States"].items() if s["Type"] == "Fail"}
    assert set(fails) == {
        "InvalidKey",
        "UnknownFormat",
        "InvalidTopK",
        "InvalidThreshold",
        "InvalidRun",
    }
    fields = {
        "InvalidKey": "key",
        "UnknownFormat": "format",
        "InvalidTopK": "top_k",
        "InvalidThreshold": "threshold",
        "InvalidRun": "run",
    }
    for name, state in fails.items():
        assert state["Error"] == f"Bulk.{name}"
        assert f'"{fields[name]}"' in state["Cause"], name
    assert "s3://arxiv-bulk-test/bulk/input/papers.jsonl" in fails["InvalidKey"]["Cause"]
    assert (
        '"jsonl"' in fails["UnknownFormat"]["Cause"] and '"csv"' in fails["UnknownFormat"]["Cause"]
    )


def test_map_input_comes_from_the_execution_input_and_the_template(
    template: dict, deployed_definition: dict
):
    execution_input = {"key": "june/papers.jsonl", "top_k": 3, "threshold": 0.25, "run": "june"}
    state, data = run_until_map(deployed_definition, execution_input)
    assert state == "ClassifyJsonl"
    defaults = parameter_defaults(template)
    assert data == {
        "key": defaults["BulkInputPrefix"] + "june/papers.jsonl",
        "format": None,
        "output_prefix": defaults["BulkOutputPrefix"] + "june",
        "options": {"top_k": 3, "threshold": 0.25},
        "limits": {
            "max_items_per_batch": int(defaults["BulkMaxItemsPerBatch"]),
            "max_concurrency": int(defaults["BulkMaxConcurrency"]),
            "tolerated_failure_percentage": int(defaults["BulkToleratedFailurePercentage"]),
        },
    }
    # Left out, the options are null and the output folder is the execution's name.
    _, data = run_until_map(deployed_definition, {"key": "p.csv"}, name="run-42")
    assert data["options"] == {"top_k": None, "threshold": None}
    assert data["output_prefix"] == defaults["BulkOutputPrefix"] + "run-42"


def test_limits_follow_the_template_parameters(template: dict, machine: dict):
    overrides = {
        "BulkMaxItemsPerBatch": "16",
        "BulkMaxConcurrency": "250",
        "BulkToleratedFailurePercentage": "5",
    }
    definition = json.loads(substituted_text(template, machine, **overrides))
    _, data = run_until_map(definition, {"key": "p.jsonl"})
    assert data["limits"] == {
        "max_items_per_batch": 16,
        "max_concurrency": 250,
        "tolerated_failure_percentage": 5,
    }


# --- the Distributed Map --------------------------------------------------------------------


def map_state(definition: dict, name: str) -> dict:
    state = definition["States"][name]
    assert state["Type"] == "Map"
    return state


def only_state(processor: dict) -> dict:
    (child,) = processor["States"].values()
    assert processor["StartAt"] in processor["States"]
    return child


@pytest.mark.parametrize(("name", "input_type"), MAPS.items())
def test_map_is_distributed_with_express_children_reading_one_s3_object(
    definition: dict, name: str, input_type: str
):
    state = map_state(definition, name)
    assert state["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "EXPRESS",
    }
    reader = state["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:getObject"
    assert reader["ReaderConfig"]["InputType"] == input_type
    if input_type == "CSV":
        assert reader["ReaderConfig"]["CSVHeaderLocation"] == "FIRST_ROW"
    assert reader["Parameters"] == {"Bucket": "${BulkBucket}", "Key.$": "$.key"}
    assert state["ItemSelector"] == {
        "index.$": "$$.Map.Item.Index",
        "record.$": "$$.Map.Item.Value",
    }
    assert state.get("End") is True


def test_both_maps_are_the_same_but_for_the_reader(definition: dict):
    def normalised(name: str) -> dict:
        state = copy.deepcopy(map_state(definition, name))
        state.pop("Comment")
        state["ItemReader"].pop("ReaderConfig")
        processor = state["ItemProcessor"]
        processor["States"] = {"Batch": only_state(processor)}
        processor["StartAt"] = "Batch"
        return state

    assert normalised("ClassifyJsonl") == normalised("ClassifyCsv")


@pytest.mark.parametrize("name", MAPS)
def test_batches_concurrency_and_tolerance_come_from_template_parameters(
    template: dict, deployed_definition: dict, name: str
):
    state = map_state(deployed_definition, name)
    _, data = run_until_map(deployed_definition, {"key": "p.jsonl", "top_k": 2, "threshold": 0.4})
    defaults = parameter_defaults(template)
    batcher = state["ItemBatcher"]
    for path, parameter in [
        (batcher["MaxItemsPerBatchPath"], "BulkMaxItemsPerBatch"),
        (state["MaxConcurrencyPath"], "BulkMaxConcurrency"),
        (state["ToleratedFailurePercentagePath"], "BulkToleratedFailurePercentage"),
    ]:
        assert select(path, data, {}) == int(defaults[parameter]), parameter
    # No fixed values beside them, which Step Functions would refuse anyway.
    assert not {"MaxItemsPerBatch", "MaxConcurrency", "ToleratedFailurePercentage"} & (
        set(state) | set(batcher)
    )
    # A child's input is {"Items": [...], "BatchInput": {"top_k", "threshold"}}.
    assert payload(batcher["BatchInput"], data, {}) == {"top_k": 2, "threshold": 0.4}
    assert 4 * MAX_ABSTRACT_CHARS < batcher["MaxInputBytesPerBatch"] <= PAYLOAD_LIMIT_BYTES


def test_batch_size_parameter_stays_within_the_api_and_payload_limits(template: dict):
    spec = template["Parameters"]["BulkMaxItemsPerBatch"]
    assert (spec["Type"], spec["Default"], spec["MinValue"]) == ("Number", 64, 1)
    assert spec["MaxValue"] == MAX_DOCUMENTS == 64
    # 64 typical abstracts (~2 KB each) fit a child's 256 KiB input with room to spare.
    assert spec["MaxValue"] * 2 * 1024 <= PAYLOAD_LIMIT_BYTES / 2
    concurrency = template["Parameters"]["BulkMaxConcurrency"]
    assert (concurrency["Default"], concurrency["MinValue"], concurrency["MaxValue"]) == (
        100,
        1,
        10000,
    )
    assert "1,000" in concurrency["Description"]  # Lambda's default account concurrency
    tolerance = template["Parameters"]["BulkToleratedFailurePercentage"]
    assert tolerance["Default"] in (0, 5)
    assert (tolerance["MinValue"], tolerance["MaxValue"]) == (0, 100)


@pytest.mark.parametrize("name", MAPS)
def test_results_are_written_under_the_output_prefix(
    template: dict, deployed_definition: dict, name: str
):
    writer = map_state(deployed_definition, name)["ResultWriter"]
    assert writer["Resource"] == "arn:aws:states:::s3:putObject"
    assert set(writer["Parameters"]) == {"Bucket", "Prefix.$"}
    assert writer["Parameters"]["Bucket"] == BUCKET
    _, data = run_until_map(deployed_definition, {"key": "p.csv", "run": "2026-12"})
    prefix = select(writer["Parameters"]["Prefix.$"], data, {})
    assert prefix == parameter_defaults(template)["BulkOutputPrefix"] + "2026-12"


@pytest.mark.parametrize("name", MAPS)
def test_child_invokes_the_function_and_keeps_only_its_results(
    machine: dict, definition: dict, name: str
):
    task = only_state(map_state(definition, name)["ItemProcessor"])
    assert task["Type"] == "Task" and task.get("End") is True
    assert task["Resource"] == "arn:aws:states:::lambda:invoke"
    assert task["Parameters"] == {"FunctionName": "${ClassifyFunctionArn}", "Payload.$": "$"}
    substitution = machine["Properties"]["DefinitionSubstitutions"]["ClassifyFunctionArn"]
    assert substitution == {"Fn::GetAtt": ["ClassifyFunction", "Arn"]}
    assert task["ResultSelector"] == {"results.$": "$.Payload.results"}
    # What lambda:invoke returns, reduced to the function's answer.
    invoke_result = {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": {"results": [1]}}
    assert payload(task["ResultSelector"], invoke_result, {}) == {"results": [1]}


@pytest.mark.parametrize("name", MAPS)
def test_child_retries_lambda_throttling_and_service_errors_with_backoff(
    template: dict, definition: dict, name: str
):
    task = only_state(map_state(definition, name)["ItemProcessor"])
    retry, model_retry = task["Retry"]
    # A container whose model did not load raises ModelUnavailable: another may load it.
    # Lambda reports a raised exception's class name as its errorType.
    assert model_retry["ErrorEquals"] == [ModelUnavailable.__name__]
    assert model_retry["MaxAttempts"] <= 3 and model_retry["JitterStrategy"] == "FULL"
    assert set(retry["ErrorEquals"]) == LAMBDA_TRANSIENT_ERRORS
    assert len(retry["ErrorEquals"]) == len(LAMBDA_TRANSIENT_ERRORS)
    assert retry["IntervalSeconds"] >= 1 and retry["BackoffRate"] > 1
    assert 3 <= retry["MaxAttempts"] <= 10
    assert retry["JitterStrategy"] == "FULL"
    # Everything else (a function error such as a malformed batch) fails the batch at once.
    assert "Catch" not in task
    # The function's own timeout fires first, and the worst case ends inside Express's limit.
    function_timeout = template["Resources"]["ClassifyFunction"]["Properties"]["Timeout"]
    assert function_timeout < task["TimeoutSeconds"]
    delays = [
        min(retry["IntervalSeconds"] * retry["BackoffRate"] ** n, retry["MaxDelaySeconds"])
        for n in range(retry["MaxAttempts"])
    ]
    model_delays = [
        model_retry["IntervalSeconds"] * model_retry["BackoffRate"] ** n
        for n in range(model_retry["MaxAttempts"])
    ]
    # a ModelUnavailable attempt ends within the function's own timeout (it raises at once)
    model_attempts = model_retry["MaxAttempts"] * function_timeout + sum(model_delays)
    worst = (retry["MaxAttempts"] + 1) * task["TimeoutSeconds"] + sum(delays) + model_attempts
    assert worst < EXPRESS_MAX_SECONDS


# --- the template -----------------------------------------------------------------------------


def test_state_machine_is_standard_with_its_definition_file(machine: dict):
    properties = machine["Properties"]
    assert machine["Type"] == "AWS::Serverless::StateMachine"
    assert properties["Type"] == "STANDARD"
    assert (INFRA / properties["DefinitionUri"]).resolve() == DEFINITION


def test_every_placeholder_has_a_substitution_and_every_substitution_is_used(machine: dict):
    used = set(PLACEHOLDER.findall(DEFINITION.read_text()))
    assert used == set(machine["Properties"]["DefinitionSubstitutions"])


@pytest.mark.parametrize(("bucket", "exists"), [("", False), (BUCKET, True), ("my.bucket-2", True)])
def test_bulk_resources_exist_only_when_bulk_bucket_is_set(
    template: dict, bucket: str, exists: bool
):
    parameters = deploy_parameters(template, BulkBucket=bucket)
    conditions = template["Conditions"]
    assert template["Parameters"]["BulkBucket"]["Default"] == ""
    assert resolve(conditions["HasBulkBucket"], parameters, conditions) is exists
    bulk = {n: r for n, r in template["Resources"].items() if "Bulk" in n}
    assert set(bulk) == {"BulkStateMachine"}
    assert all(resource.get("Condition") == "HasBulkBucket" for resource in bulk.values())
    outputs = {n: o for n, o in template["Outputs"].items() if "Bulk" in n}
    assert set(outputs) == {"BulkStateMachineArn"}
    assert outputs["BulkStateMachineArn"]["Condition"] == "HasBulkBucket"
    assert outputs["BulkStateMachineArn"]["Value"] == {"Ref": "BulkStateMachine"}


def test_bucket_and_prefix_parameters_accept_only_what_the_policies_can_scope(template: dict):
    bucket = re.compile(template["Parameters"]["BulkBucket"]["AllowedPattern"])
    for good in ("", "arxiv-bulk", "my.bucket-2"):
        assert bucket.fullmatch(good), good
    for bad in ("Arxiv", "s3://arxiv", "arxiv/bulk", "a", "bucket*"):
        assert not bucket.fullmatch(bad), bad
    for name, default in (("BulkInputPrefix", "bulk/input/"), ("BulkOutputPrefix", "bulk/output/")):
        spec = template["Parameters"][name]
        assert spec["Default"] == default
        prefix = re.compile(spec["AllowedPattern"])
        for good in (default, "x/", "2026/arxiv_runs-1.0/"):
            assert prefix.fullmatch(good), good
        for bad in (
            "",
            "/",
            "bulk/input",
            "/bulk/",
            "bulk//in/",
            "bulk/*/",
            "it's/",
            "{}/",
            "a b/",
        ):
            assert not prefix.fullmatch(bad), bad


def role_statements(template: dict, machine: dict, **overrides: str) -> list[dict]:
    policies = deployed(template, machine["Properties"]["Policies"], **overrides)
    assert all(isinstance(policy, dict) for policy in policies), "no managed policies"
    return [statement for policy in policies for statement in policy["Statement"]]


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_role_is_least_privilege(template: dict, machine: dict):
    name = deployed(template, machine["Properties"]["Name"])
    assert name == f"{STACK}-bulk"
    arn = f"arn:aws:states:us-east-1:{ACCOUNT}"
    expected = {
        "ReadBulkInput": ({"s3:GetObject"}, [f"arn:aws:s3:::{BUCKET}/bulk/input/*"]),
        # AWS's ResultWriter policy: multipart upload of the result files, and s3:GetObject.
        "WriteBulkResults": (
            {
                "s3:PutObject",
                "s3:GetObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            },
            [f"arn:aws:s3:::{BUCKET}/bulk/output/*"],
        ),
        "InvokeClassifier": ({"lambda:InvokeFunction"}, [FUNCTION_ARN]),
        "StartChildWorkflows": ({"states:StartExecution"}, [f"{arn}:stateMachine:{name}"]),
        "ManageChildWorkflows": (
            {"states:DescribeExecution", "states:StopExecution"},
            [f"{arn}:execution:{name}:*", f"{arn}:execution:{name}/*"],
        ),
    }
    statements = role_statements(template, machine)
    found = {s["Sid"]: (set(as_list(s["Action"])), as_list(s["Resource"])) for s in statements}
    assert found == expected
    for statement in statements:
        assert set(statement) == {"Sid", "Effect", "Action", "Resource"}, statement["Sid"]
        assert statement["Effect"] == "Allow"
        assert not any("*" in action for action in as_list(statement["Action"]))
        assert all(resource != "*" for resource in as_list(statement["Resource"]))
    assert "Role" not in machine["Properties"]


def test_policies_cover_exactly_what_the_definition_touches(
    template: dict, machine: dict, deployed_definition: dict
):
    statements = {s["Sid"]: s for s in role_statements(template, machine)}

    def allowed(action: str, resource: str) -> bool:
        return any(
            action in as_list(s["Action"])
            and any(fnmatch.fnmatchcase(resource, r) for r in as_list(s["Resource"]))
            for s in statements.values()
        )

    _, data = run_until_map(deployed_definition, {"key": "sub/dir/papers.jsonl", "run": "r1"})
    input_object = f"arn:aws:s3:::{BUCKET}/{data['key']}"
    result_file = f"arn:aws:s3:::{BUCKET}/{data['output_prefix']}/0f9c-map-run/SUCCEEDED_0.json"
    assert allowed("s3:GetObject", input_object)
    assert allowed("s3:PutObject", result_file)
    assert not allowed("s3:PutObject", input_object), "results never overwrite inputs"
    assert not allowed("s3:GetObject", f"arn:aws:s3:::{BUCKET}/private/secrets.json")
    assert not allowed("s3:GetObject", f"arn:aws:s3:::other-bucket/{data['key']}")
    assert allowed("lambda:InvokeFunction", FUNCTION_ARN)
    assert not allowed("lambda:InvokeFunction", FUNCTION_ARN.replace("ClassifyFunction", "Other"))
    other = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:{STACK}-bulkier"
    assert not allowed("states:StartExecution", other)
    assert not allowed("states:StopExecution", other.replace("stateMachine", "execution") + ":x")


def test_sam_generates_a_role_with_these_statements_only(
    template: dict, machine: dict, monkeypatch: pytest.MonkeyPatch
):
    translator = pytest.importorskip("samtranslator.translator.transform")
    yaml_helper = pytest.importorskip("samtranslator.yaml_helper")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    document = yaml_helper.yaml_parse((INFRA / "template.yaml").read_text(encoding="utf-8"))
    # `sam package` turns local paths into S3 locations before the transform runs.
    document["Resources"]["BulkStateMachine"]["Properties"]["DefinitionUri"] = "s3://b/bulk.json"
    document["Resources"]["ClassifyFunction"]["Properties"]["CodeUri"] = "s3://b/code.zip"

    class ManagedPolicies:
        def load(self) -> dict[str, str]:
            return {"AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/basic"}

    output = translator.transform(document, {"BulkBucket": BUCKET}, ManagedPolicies())
    resources = output["Resources"]
    role = resources["BulkStateMachineRole"]
    assert role["Condition"] == resources["BulkStateMachine"]["Condition"] == "HasBulkBucket"
    assert role["Properties"].get("ManagedPolicyArns", []) == []
    (policy,) = role["Properties"]["Policies"]
    sids = [statement["Sid"] for statement in policy["PolicyDocument"]["Statement"]]
    assert sids == [statement["Sid"] for statement in role_statements(template, machine)]
    principal = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Service": ["states.amazonaws.com"]}
    assert resources["BulkStateMachine"]["Properties"]["StateMachineName"] == {
        "Fn::Sub": "${AWS::StackName}-bulk"
    }
