"""``edge env``: what the machine offers the runtime, and what its CPU features mean."""

import json

import edge.environment as env
from edge.cpu_info import CpuInfo, cpu_info
from toolkit_cli.main import main


def _cpu(machine="x86_64", features=(), dot=None):
    return CpuInfo("test CPU", machine, tuple(features), dot)


def test_int8_note_follows_the_dot_product():
    assert "avx512_vnni" in env.int8_note(_cpu(features=("avx512_vnni",), dot="avx512_vnni"))
    assert "VPMADDUBSW" in env.int8_note(_cpu(features=("avx2",)))
    arm = env.int8_note(_cpu(machine="aarch64", features=("asimd",)))
    assert "side by side" in arm and "VPMADDUBSW" not in arm


def test_bf16_note_native_or_not():
    assert env.bf16_note(_cpu(features=("avx512_bf16",))).startswith("native bfloat16")
    assert env.bf16_note(_cpu(features=("avx2",))).startswith("no native bfloat16")


def test_report_names_this_machine_and_the_shipped_bundles(monkeypatch):
    monkeypatch.setattr(env, "tensorrt_line", lambda: "unavailable: no TensorRT (test)")
    report = env.environment_report()
    assert report["cpu"] == cpu_info().to_json()
    assert {"terrain", "terrain-fp32", "msl"} <= set(report["bundles"])
    assert "CPUExecutionProvider" in report["onnxruntime_providers"]
    assert 1 <= report["cpus_usable"] <= report["cpus"]
    text = env.format_report(report)
    assert cpu_info().describe() in text
    assert "\ntensorrt   unavailable: no TensorRT (test)\n" in text


def test_cli_prints_lines_or_json(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("edge ") and "int8 dot product:" in out
    assert main(["env", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cpu_line"] == cpu_info().describe()
    assert isinstance(report["torch_installed"], bool)
    assert report["tensorrt"] == "available" or report["tensorrt"].startswith("unavailable: ")
