"""edge.cpu_info: the CPU features that speed figures are recorded with."""

import json
import os

from edge.cpu_info import CpuInfo, cpu_info, cpu_name, parse_cpuinfo, usable_cpus

# Two x86 processors as /proc/cpuinfo lists them (shortened): the first block counts.
ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni

processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni
"""
AVX2_ONLY = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx fma avx2

processor\t: 1
model name\t: Other CPU
flags\t\t: avx512_vnni
"""
SAPPHIRE = "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t: avx2 avx512f avx512_vnni " \
           "avx_vnni amx_tile amx_int8 amx_bf16\n"
ORIN = """processor\t: 0
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes crc32 atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd42
"""


def test_same_name_different_int8_hardware_is_told_apart():
    zen4, avx2 = parse_cpuinfo(ZEN4, "x86_64"), parse_cpuinfo(AVX2_ONLY, "x86_64")
    assert zen4.name == avx2.name == "AMD EPYC"
    assert zen4.int8_dot == "avx512_vnni"
    assert avx2.int8_dot is None  # the second processor's flags are not read
    assert avx2.features == ("avx2", "fma")
    assert zen4.features == ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16")
    assert "int8 dot product: avx512_vnni" in zen4.describe()
    assert "int8 dot product: none" in avx2.describe()
    assert zen4.native_bf16 == ("avx512_bf16",) and avx2.native_bf16 == ()


def test_amx_ranks_above_vnni():
    info = parse_cpuinfo(SAPPHIRE, "x86_64")
    assert info.int8_dot == "amx_int8"
    assert {"avx_vnni", "amx_bf16"} <= set(info.features)


def test_arm_features_and_name_fallback():
    info = parse_cpuinfo(ORIN, "aarch64")
    assert info.name == "CPU part 0xd42"
    assert info.int8_dot == "asimddp"
    assert info.features == ("asimd", "asimddp")


def test_empty_cpuinfo_falls_back_to_platform_name():
    assert parse_cpuinfo("", "arm64", fallback_name="arm").name == "arm"
    assert parse_cpuinfo("", "x86_64").name == "x86_64"
    info = parse_cpuinfo("", "", fallback_name="")
    assert info == CpuInfo("unknown CPU", "", (), None)
    assert "no listed features" in info.describe()


def test_this_machine_is_json_ready_and_cached():
    info = cpu_info()
    assert cpu_info() is info
    assert cpu_name() == info.name
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)
    record = json.loads(json.dumps(info.to_json()))
    assert record["name"] == info.name and record["features"] == list(info.features)
