"""The cold-start check that the package's wheels are for the CPU it runs on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lambda_handler.build_check import WrongArchitecture, check_architecture


def build_file(tmp_path: Path, architecture: str) -> Path:
    path = tmp_path / "build.json"
    path.write_text(json.dumps({"architecture": architecture}))
    return path


@pytest.mark.parametrize(
    ("built", "machine"), [("x86_64", "x86_64"), ("arm64", "aarch64"), ("arm64", "arm64")]
)
def test_a_package_on_its_own_cpu_starts(tmp_path, built, machine):
    check_architecture(build_file(tmp_path, built), machine)


@pytest.mark.parametrize(("built", "machine", "running"), [
    ("x86_64", "aarch64", "arm64"), ("arm64", "x86_64", "x86_64"),
])  # fmt: skip
def test_a_package_for_another_cpu_names_both_and_the_fix(tmp_path, built, machine, running):
    with pytest.raises(WrongArchitecture) as raised:
        check_architecture(build_file(tmp_path, built), machine)
    assert str(raised.value) == (
        f"this package's numpy and onnxruntime were built for {built}, but the function runs "
        f"on {running}: build with `LAMBDA_ARCH={running} sam build` for "
        f"Architecture={running}, or deploy with Architecture={built}"
    )


@pytest.mark.parametrize("content", ["{", "{}", "[]", '{"arch": "x86_64"}'])
def test_an_unreadable_build_file_is_named(tmp_path, content):
    path = tmp_path / "build.json"
    path.write_text(content)
    with pytest.raises(WrongArchitecture, match=r"^build\.json does not say which architecture"):
        check_architecture(path, "x86_64")


def test_an_unknown_cpu_is_named_without_advice_the_makefile_would_refuse(tmp_path):
    with pytest.raises(WrongArchitecture) as raised:
        check_architecture(build_file(tmp_path, "x86_64"), "i686")
    assert str(raised.value) == (
        "the function runs on i686, which no Lambda architecture is; the package was built "
        "for x86_64"
    )


def test_a_source_checkout_is_not_checked(tmp_path):
    check_architecture(tmp_path / "build.json", "sparc")
