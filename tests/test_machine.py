"""scope_lib.common.machine.cpu_model: the model name of /proc/cpuinfo-shaped text, the platform's
name where there is none."""

import platform
import shutil
import subprocess

import pytest

from scope_lib.common import machine

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
flags\t\t: fpu vme avx2

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B14
"""


def test_reads_the_first_model_name(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    assert machine.cpu_model(info) == "AMD EPYC 9B14"


def test_without_a_model_name_or_a_file_names_the_platform(tmp_path):
    fallback = platform.processor() or platform.machine() or "unknown"
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t:\nCPU part\t: 0xd0c\n")  # an ARM cpuinfo: no model name
    assert machine.cpu_model(info) == fallback
    assert machine.cpu_model(tmp_path / "absent") == fallback


def test_matches_lscpu_where_there_is_one():
    if shutil.which("lscpu") is None or not machine.CPUINFO.exists():
        pytest.skip("no lscpu or /proc/cpuinfo here")
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    named = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name:")]
    if not named:
        pytest.skip("lscpu names no model here")
    assert machine.cpu_model() == named[0]
