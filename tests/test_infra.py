"""Fast checks of the AWS deployment in infra/: the SAM template, samconfig.toml, the Makefile
and the sample events (their expected answers are checked against the handler in-process; the
built package is exercised by test_infra_build.py)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from conftest import reload_app

from infra import check_package, invoke_local, make_events, runtime

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
OPENAPI = json.loads((REPO / "lambda_handler" / "openapi.json").read_text(encoding="utf-8"))
ROUTES = {(method.upper(), path) for path, item in OPENAPI["paths"].items() for method in item}
ERROR_CLASSES = {
    "400-invalid-json",
    "400-bad-base64",
    "400-wrong-types",
    "400-empty-abstract",
    "400-bad-top-k",
    "400-bad-threshold",
    "404-unknown-path",
    "405-wrong-method",
    "413",
    "415-wrong-content-type",
}


# --- reading CloudFormation YAML --------------------------------------------------------------


class CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that reads short-form intrinsics (`!Ref X`, `!Sub ...`) as their long form."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value: object = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def resolve(node: object, parameters: dict[str, str], conditions: dict[str, object]) -> object:
    """Evaluate the intrinsics the template uses, as CloudFormation would (in aws/us-east-1)."""
    pseudo = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::NoValue": None}
    if isinstance(node, list):
        items = [resolve(item, parameters, conditions) for item in node]
        return [item for item in items if item is not None]
    if not isinstance(node, dict):
        return node
    if len(node) != 1 or not next(iter(node)).startswith(("Ref", "Fn::")):
        return {key: resolve(value, parameters, conditions) for key, value in node.items()}
    ((function, argument),) = node.items()
    if function == "Ref":
        return pseudo[argument] if argument in pseudo else parameters[argument]
    if function == "Fn::If":
        name, if_true, if_false = argument
        chosen = resolve(conditions[name], parameters, conditions)
        return resolve(if_true if chosen else if_false, parameters, conditions)
    if function == "Fn::Sub":
        text, variables = argument if isinstance(argument, list) else (argument, {})
        values = {**pseudo, **parameters, **resolve(variables, parameters, conditions)}
        return re.sub(r"\$\{([^}]+)\}", lambda match: str(values[match.group(1)]), text)
    argument = resolve(argument, parameters, conditions)
    if function == "Fn::Select":
        return argument[1][argument[0]]
    if function == "Fn::Split":
        return argument[1].split(argument[0])
    if function == "Fn::Equals":
        return argument[0] == argument[1]
    if function == "Fn::Not":
        return not argument[0]
    raise AssertionError(f"resolve() does not know {function}")


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.load((INFRA / "template.yaml").read_text(encoding="utf-8"), CloudFormationLoader)


@pytest.fixture(scope="module")
def function(template: dict) -> dict:
    return template["Resources"]["ClassifyFunction"]


def parameter_defaults(template: dict) -> dict[str, str]:
    return {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}


# --- template.yaml ---------------------------------------------------------------------------


def makefile_variables() -> dict[str, str]:
    """The plain `NAME = value` assignments of infra/Makefile."""
    text = (INFRA / "Makefile").read_text()
    return dict(re.findall(r"^([A-Z_0-9a-z]+) = (.*)$", text, re.M))


def test_function_runs_the_handler_on_python_313(template: dict, function: dict):
    properties = function["Properties"]
    assert function["Type"] == "AWS::Serverless::Function"
    assert properties["Handler"] == "lambda_handler.app.handler"
    assert (REPO / "lambda_handler" / "app.py").is_file()
    assert properties["Runtime"] == "python3.13"
    # The Makefile installs wheels for the runtime's CPython, and the tests run that version.
    version = properties["Runtime"].removeprefix("python")
    assert makefile_variables()["RUNTIME_PYTHON"] == version
    assert "{}.{}".format(*runtime.RUNTIME_PYTHON) == version


def test_architecture_is_a_parameter_that_the_makefile_can_build(template: dict, function: dict):
    architecture = template["Parameters"]["Architecture"]
    assert architecture["Default"] == "x86_64"
    assert function["Properties"]["Architectures"] == [{"Ref": "Architecture"}]
    variables = makefile_variables()
    for value in architecture["AllowedValues"]:
        platform = variables[f"WHEEL_PLATFORM_{value}"]
        machine = {"x86_64": "x86_64", "arm64": "aarch64"}[value]
        assert platform == f"manylinux_2_28_{machine}", platform
    assert set(architecture["AllowedValues"]) == {"x86_64", "arm64"}


def test_package_is_built_from_lambda_handler_by_the_makefile(function: dict):
    assert function["Metadata"]["BuildMethod"] == "makefile"
    code_dir = (INFRA / function["Properties"]["CodeUri"]).resolve()
    assert code_dir == REPO / "lambda_handler", "CodeUri must hold the handler package only"
    makefile = (INFRA / function["Metadata"]["ContextPath"] / "Makefile").read_text()
    target = re.search(r"^build-ClassifyFunction:\n((?:\t.*\n)+)", makefile, re.M)
    assert target, "infra/Makefile needs a build-ClassifyFunction target"
    for flag in (
        "--platform $(WHEEL_PLATFORM)",
        "--only-binary=:all:",
        "--python-version $(RUNTIME_PYTHON)",
        "--implementation cp",
    ):
        assert flag in makefile
    assert '"$(ARTIFACTS_DIR)/lambda_handler' in target.group(1)
    assert "__pycache__" in target.group(1)


def test_memory_timeout_and_concurrency(template: dict, function: dict):
    properties = function["Properties"]
    # One full vCPU (Lambda's CPU share grows with memory), as bench/run.py measures the
    # function; its peak RSS (bench/results.md) is under a tenth of that memory.
    assert properties["MemorySize"] == 1769
    # The HTTP API gives up on an integration after 30 s.
    assert 3 <= properties["Timeout"] <= 29
    concurrency = properties["ReservedConcurrentExecutions"]
    assert concurrency == {
        "Fn::If": [
            "HasReservedConcurrency",
            {"Ref": "ReservedConcurrency"},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert template["Parameters"]["ReservedConcurrency"]["Default"] == 0


def test_environment_matches_the_runtime_settings(template: dict, function: dict):
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables == {
        "MODEL_S3_URI": {"Ref": "ModelS3Uri"},
        "LOG_LEVEL": {"Ref": "LogLevel"},
        "ORT_NUM_THREADS": "1",
    }
    defaults = parameter_defaults(template)
    assert defaults["ModelS3Uri"] == "", "empty must mean the bundled model"
    assert defaults["LogLevel"] in template["Parameters"]["LogLevel"]["AllowedValues"]
    # The no-Docker stand-in gives the function the same environment.
    assert resolve(variables, defaults, {}) == invoke_local.DEFAULT_ENV
    assert str(function["Properties"]["MemorySize"]) == str(invoke_local.MEMORY_MB)


@pytest.mark.parametrize(
    ("uri", "resource"),
    [
        ("", None),
        ("s3://arxiv-models", "arn:aws:s3:::arxiv-models/*"),
        ("s3://arxiv-models/lstm", "arn:aws:s3:::arxiv-models/lstm/*"),
        ("s3://arxiv.models-1/prod/lstm/v3", "arn:aws:s3:::arxiv.models-1/prod/lstm/v3/*"),
    ],
)
def test_s3_read_access_only_to_the_model_prefix_and_only_when_set(
    template: dict, function: dict, uri: str, resource: str | None
):
    parameters = {**parameter_defaults(template), "ModelS3Uri": uri}
    policies = resolve(function["Properties"]["Policies"], parameters, template["Conditions"])
    if resource is None:
        assert policies == [], "no S3 access without ModelS3Uri"
        return
    statements = [statement for policy in policies for statement in policy["Statement"]]
    assert statements == [
        {
            "Sid": "ReadModelDirectory",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": resource,
        }
    ]


def test_model_uri_parameter_accepts_only_what_the_policy_can_scope(template: dict):
    pattern = re.compile(template["Parameters"]["ModelS3Uri"]["AllowedPattern"])
    for good in ("", "s3://arxiv-models", "s3://arxiv-models/lstm/v3"):
        assert pattern.fullmatch(good), good
    for bad in (
        "s3://arxiv-models/lstm/",
        "s3://arxiv-models//lstm",
        "https://x.s3.amazonaws.com/m",
        "arxiv-models/lstm",
        "s3://Arxiv/lstm",
        "s3://arxiv-models/*",
        "s3://arxiv-models/lstm?",
    ):
        assert not pattern.fullmatch(bad), bad


def test_http_api_routes_throttling_and_cors(template: dict, function: dict):
    events = function["Properties"]["Events"].values()
    assert all(event["Type"] == "HttpApi" for event in events)
    assert all(event["Properties"]["ApiId"] == {"Ref": "ClassifyApi"} for event in events)
    assert {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events} == ROUTES
    api = template["Resources"]["ClassifyApi"]
    assert api["Type"] == "AWS::Serverless::HttpApi"
    assert api["Properties"]["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": {"Ref": "ThrottlingBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ThrottlingRateLimit"},
    }
    cors = api["Properties"]["CorsConfiguration"]
    assert cors["AllowOrigins"] == {"Ref": "AllowedOrigins"}
    assert {"GET", "POST"} <= set(cors["AllowMethods"])
    assert cors["ExposeHeaders"] == ["x-request-id"]  # a page elsewhere may quote it
    assert template["Parameters"]["AllowedOrigins"]["Type"] == "CommaDelimitedList"


def test_every_api_request_is_access_logged_as_one_json_line(template: dict):
    settings = template["Resources"]["ClassifyApi"]["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["ClassifyApiAccessLogGroup", "Arn"]}
    variables = re.findall(r"\$context\.[A-Za-z.]+", settings["Format"])
    assert "$context.requestId" in variables  # API Gateway requires it
    assert {"$context.status", "$context.routeKey", "$context.integrationErrorMessage"} <= set(
        variables
    )
    # With each variable replaced by a value, the line is one JSON object.
    line = re.sub(r"\$context\.[A-Za-z.]+", "a b", settings["Format"])
    assert set(json.loads(line)) >= {"requestId", "status", "route", "integrationError"}
    group = template["Resources"]["ClassifyApiAccessLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup" and group["DeletionPolicy"] == "Delete"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_outputs_name_the_api_url_and_the_function_arn(template: dict):
    outputs = template["Outputs"]
    assert outputs["ApiUrl"]["Value"]["Fn::Sub"].startswith("https://${ClassifyApi}.execute-api.")
    assert outputs["ClassifyFunctionArn"]["Value"] == {"Fn::GetAtt": ["ClassifyFunction", "Arn"]}


def test_samconfig_defaults():
    config = tomllib.loads((INFRA / "samconfig.toml").read_text(encoding="utf-8"))
    assert config["version"] == 0.1
    default = config["default"]
    assert default["global"]["parameters"]["stack_name"]
    assert default["build"]["parameters"]["cached"] is True
    assert default["validate"]["parameters"]["lint"] is True
    deploy = default["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert deploy["confirm_changeset"] is True


# --- events ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def expected() -> dict[str, dict]:
    return json.loads((make_events.EVENTS_DIR / make_events.EXPECTED_FILE).read_text())


def event_files() -> list[Path]:
    return sorted(
        path
        for path in make_events.EVENTS_DIR.glob("*.json")
        if path.name != make_events.EXPECTED_FILE
    )


def test_event_files_are_what_make_events_writes():
    assert make_events.stale_files() == [], "run: python infra/make_events.py"


def test_every_event_has_an_expected_answer_that_its_name_agrees_with(expected: dict):
    names = {path.name for path in event_files()}
    assert names == set(expected)
    for name, expectation in expected.items():
        if name.startswith("sfn-"):  # a bulk batch: results, or a function error
            assert ("-error-" in name) == ("raises" in expectation), name
            assert ("batch_results" in expectation) != ("raises" in expectation), name
            continue
        assert expectation["status"] in {200, 400, 404, 405, 413, 415}, name
        named = re.search(r"-error-(\d{3})-", name)
        assert (int(named.group(1)) if named else 200) == expectation["status"], name
        assert ("error" in expectation) == (expectation["status"] != 200), name
    shown = {m.group(1) for name in names if (m := re.search(r"-error-(\d{3}-[a-z0-9-]+)", name))}
    missing = [cls for cls in ERROR_CLASSES if not any(s.startswith(cls) for s in shown)]
    assert not missing, f"no event shows {missing}"


def test_events_have_api_gateway_structure():
    envelopes = set()
    for path in event_files():
        event = json.loads(path.read_text(encoding="utf-8"))
        envelope = path.name.split("-", 1)[0]
        envelopes.add(envelope)
        if envelope == "v2":
            assert event["version"] == "2.0"
            assert event["requestContext"]["http"]["method"] in {"GET", "POST", "PUT"}
            assert event["rawPath"] == event["requestContext"]["http"]["path"]
            assert all(name == name.lower() for name in event["headers"])
        elif envelope == "v1":
            assert event["requestContext"]["httpMethod"] == event["httpMethod"]
            assert event["requestContext"]["path"].endswith(event["path"])
            assert event["multiValueHeaders"] == {k: [v] for k, v in event["headers"].items()}
        elif envelope == "sfn":  # as the bulk state machine's ItemSelector and ItemBatcher build it
            assert set(event) == {"Items", "BatchInput"}, path.name
            assert [set(item) for item in event["Items"]] == [{"index", "record"}] * len(
                event["Items"]
            )
            first = event["Items"][0]["index"]  # the Map's item index, counting across batches
            indices = [item["index"] for item in event["Items"]]
            assert indices == list(range(first, first + len(indices)))
            assert set(event["BatchInput"]) == {"top_k", "threshold"}, path.name
        else:
            assert envelope == "direct" and "abstract" in event, path.name
        if envelope in {"v1", "v2"}:
            assert event["requestContext"]["requestId"]
            assert event.get("body") is None or isinstance(event["body"], str)
    assert envelopes == {"v1", "v2", "direct", "sfn"}


def test_body_too_big_events_stay_small():
    for path in event_files():
        assert path.stat().st_size < 64 * 1024, f"{path.name} is larger than it needs to be"


def test_events_get_their_expected_answers_from_the_handler(
    expected: dict, serving_model_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MODEL_DIR", str(serving_model_dir))
    for name, value in invoke_local.DEFAULT_ENV.items():
        monkeypatch.setenv(name, value)
    app = reload_app(monkeypatch)
    failures = {}
    for path in event_files():
        event = json.loads(path.read_text(encoding="utf-8"))
        try:
            response, raised = app.handler(event, invoke_local.LambdaContext()), None
        except Exception as error:  # a batch the function refuses: Lambda's function error
            response, raised = None, type(error).__name__
        if found := make_events.problems(expected[path.name], response, raised):
            failures[path.name] = found
    assert not failures


def test_problems_reports_wrong_status_error_code_content_type_and_result_count():
    def answer(status: int, body: dict) -> dict:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        return {"statusCode": status, "headers": headers, "body": json.dumps(body)}

    good = answer(200, {"results": [{"labels": [{"label": "cs.LG", "score": 0.9}]}]})
    assert make_events.problems({"status": 200, "results": 1}, good) == []
    assert make_events.problems({"status": 200, "results": 2}, good)
    assert make_events.problems({"status": 400, "error": "invalid_json"}, good)
    refused = answer(400, {"error": "invalid_request"})
    assert make_events.problems({"status": 400, "error": "invalid_json"}, refused)
    assert make_events.problems({"status": 200}, {"statusCode": 200})
    assert make_events.problems({"status": 200, "content_type": "text/html"}, good)
    html = {"statusCode": 200, "headers": {"Content-Type": "text/html"}, "body": "<p>"}
    assert make_events.problems({"status": 200, "content_type": "text/html"}, html) == []
    assert make_events.problems({"status": 200}, {**good, "headers": {}})


# --- infra/check_package.py -------------------------------------------------------------------


def test_problems_reports_wrong_batch_answers_and_function_errors():
    expectation = make_events.batch_results(3, errors=1)
    good = {
        "results": [
            {"index": 0, "id": "a", "labels": [{"label": "cs.LG", "score": 0.9}]},
            {"index": 1, "id": "b", "error": "empty_abstract", "message": "..."},
            {"index": 2, "id": "c", "labels": [{"label": "hep-th", "score": 0.7}]},
        ]
    }
    assert make_events.problems(expectation, good) == []
    later = {"results": [{**result, "index": 500 + i} for i, result in enumerate(good["results"])]}
    assert make_events.problems(expectation, later) == []  # a later batch of the same run
    reordered = {"results": [good["results"][1], good["results"][0], good["results"][2]]}
    unlabelled = {"results": [{**good["results"][0], "labels": []}, *good["results"][1:]]}
    for answer, problem in [
        ({"results": good["results"][:2]}, "expected 3 of them"),
        (reordered, "not one per item, in order"),
        (
            {"results": [{**good["results"][0], "index": i} for i in range(3)]},
            "0 error results, expected 1",
        ),
        (unlabelled, "holds no labels"),
        ({"statusCode": 200, "body": "{}"}, "expected 3 of them"),
    ]:
        assert problem in " ".join(make_events.problems(expectation, answer))
    assert make_events.problems(expectation, None, "ValueError") == [
        "raised ValueError, expected an answer"
    ]
    refused = make_events.raises("InvalidBatchOptions")
    assert make_events.problems(refused, None, "InvalidBatchOptions") == []
    assert make_events.problems(refused, good) == [
        "answered, expected to raise InvalidBatchOptions"
    ]


@pytest.fixture(scope="module")
def native_library() -> Path:
    """A real x86_64 shared library of this venv (numpy's core extension)."""
    numpy = pytest.importorskip("numpy")
    found = sorted(Path(numpy.__file__).parent.glob("_core/_multiarray_umath*.so"))
    assert found
    return found[0]


def test_package_check_names_the_symbol_that_needs_a_newer_glibc(
    tmp_path: Path, native_library: Path
):
    (tmp_path / "lib").mkdir()
    copy = tmp_path / "lib" / native_library.name
    copy.write_bytes(native_library.read_bytes())
    elf = check_package.read_elf(copy.read_bytes())
    assert elf is not None and elf.machine == check_package.MACHINES["x86_64"]
    symbol, (major, minor) = elf.newest_glibc()
    assert check_package.problems(tmp_path, "x86_64", glibc=(major, minor)) == []
    assert check_package.problems(tmp_path, "x86_64", glibc=(major, minor - 1)) == [
        f"lib/{copy.name}: {symbol} needs GLIBC_{major}.{minor}, newer than the runtime's "
        f"{major}.{minor - 1}"
    ]
    assert check_package.problems(tmp_path, "arm64", glibc=(major, minor)) == [
        f"lib/{copy.name}: built for x86_64, not arm64"
    ]


@pytest.mark.parametrize("keep", [40, 0.5], ids=["shorter-than-its-header", "half-copied"])
def test_package_check_reports_a_truncated_library_as_a_problem(
    tmp_path: Path, native_library: Path, keep: float
):
    data = native_library.read_bytes()
    (tmp_path / "lib.so").write_bytes(data[: keep if isinstance(keep, int) else len(data) // 2])
    [problem] = check_package.problems(tmp_path, "x86_64")
    assert problem.startswith("lib.so: a ") and "truncated" in problem


def test_package_check_refuses_a_directory_without_native_code(tmp_path: Path):
    (tmp_path / "app.py").write_text("print('no ELF here')\n")
    (tmp_path / "fake.so").write_bytes(b"not an ELF file")
    assert check_package.read_elf(b"not an ELF file") is None
    [problem] = check_package.problems(tmp_path, "x86_64")
    assert "no ELF file at all" in problem
    assert check_package.main([str(tmp_path)]) == 1


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d: [str(d / "missing.json")], "cannot read event file"),
        (lambda d: [str(d / "bad.json")], "is not JSON"),
        (lambda d: [str(d / "good.json"), "--env", "LOG_LEVEL"], "--env takes NAME=VALUE"),
    ],
    ids=["missing-event", "bad-event", "env-without-value"],
)
def test_invoke_local_refuses_bad_arguments_in_one_usage_line(tmp_path, capsys, make_args, message):
    (tmp_path / "lambda_handler").mkdir()
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "good.json").write_text("{}")
    with pytest.raises(SystemExit) as stopped:
        invoke_local.main([str(tmp_path), *make_args(tmp_path)])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_the_makefile_and_the_runtime_module_choose_the_same_python(tmp_path, monkeypatch):
    """infra/Makefile compiles the package's bytecode with the interpreter infra/runtime.py (and
    so .ci/run, bench/run.py and the build tests) stands in for Lambda's runtime with."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    monkeypatch.delenv(runtime.ENV_VAR, raising=False)
    printer = tmp_path / "print.mk"
    printer.write_text("print-%:\n\t@echo $($*)\n")
    done = subprocess.run(
        ["make", "-s", "-f", str(INFRA / "Makefile"), "-f", str(printer), "print-LAMBDA_PYTHON"],
        capture_output=True, text=True, timeout=120, cwd=INFRA,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (runtime.lambda_python() or "")
