"""aiayn.runtime: glibc malloc tuned for training loops, only where aiayn owns the process."""

import os
import platform
import subprocess
import sys

import pytest

from aiayn.cli import main
from aiayn.runtime import allocator as runtime

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                           reason="mallopt tuning applies on Linux with glibc only")

BLOCK = 64 << 20  # above glibc's largest dynamic mmap threshold (32 MiB): mapped afresh each time by default
CHURN = f"""
import resource, sys
line = None
if sys.argv[1] == "tune":
    from aiayn.runtime.allocator import tune_cpu_allocator
    line = tune_cpu_allocator()
def churn():
    block = bytearray({BLOCK}); block[::4096] = b"x" * len(block[::4096]); del block
churn(); churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    churn()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
print(line)
"""


def _churn(mode: str, **env: str) -> tuple[float, str]:
    """Minor page faults per allocate-touch-free of a 64 MiB block in a fresh process, and tune's line."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", CHURN, mode], env={**clean, **env}, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    return float(out[0]), out[1]


@glibc
def test_tuning_stops_the_page_faults_of_a_freed_large_block():
    pages = BLOCK // 4096
    untuned, _ = _churn("plain")
    tuned, line = _churn("tune")
    assert untuned > 0.5 * pages  # glibc's default: unmapped on free, faulted in again
    assert tuned < 0.05 * pages, line  # kept in the heap and reused
    assert line.startswith("malloc: mmap threshold 1024 MiB, trim threshold 2047 MiB")


@glibc
@pytest.mark.parametrize("env, named", [({"MALLOC_MMAP_THRESHOLD_": "131072"}, "MALLOC_MMAP_THRESHOLD_"),
                                        ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"},
                                         "glibc.malloc.mmap_threshold")])
def test_the_users_malloc_settings_win(env, named):
    faults, line = _churn("tune", **env)
    assert faults > 0.5 * BLOCK // 4096  # the user's 128 KiB threshold still maps the block: not overridden
    assert line == f"malloc: left as the environment sets it ({named})"


FRAGMENTED = """
import sys
from pathlib import Path
from aiayn.runtime.allocator import trim_heap
def rss():
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) >> 10
blocks = [bytes(2000) for _ in range(100_000)]  # ~200 MiB of glibc heap (each over pymalloc's 512 bytes)
kept = blocks[::64]  # a few live blocks pin the heap's top: free() alone cannot give the pages back
del blocks
before = rss()
trimmed = sys.argv[1] == "trim" and trim_heap()
print(before - rss(), trimmed)
"""


def _freed_mib(mode: str) -> tuple[int, str]:
    """MiB of RSS given back after freeing most of a fragmented heap, with or without trim_heap(), in a fresh
    process."""
    out = subprocess.run([sys.executable, "-c", FRAGMENTED, mode], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), out[1]


@glibc
def test_trim_heap_gives_a_fragmented_heaps_free_pages_back():
    untrimmed, _ = _freed_mib("plain")
    trimmed, done = _freed_mib("trim")
    assert untrimmed < 20  # free() keeps the pages: a few live blocks pin the heap
    assert trimmed > 120 and done == "True"  # of ~190 MiB freed


def test_trim_heap_is_a_no_op_off_glibc(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda *args, **kwargs: ("", ""))
    monkeypatch.setattr(runtime, "_TRIM", False)  # looked up again
    assert runtime.trim_heap() is False


def test_no_op_off_glibc(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda *args, **kwargs: ("", ""))
    assert runtime.tune_cpu_allocator() is None


def test_train_help_lists_the_opt_out(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0
    assert "--no-tune-allocator" in capsys.readouterr().out


@glibc
def test_aiayn_train_tunes_its_own_process_only(tmp_path, capsys):
    missing = ["train", "--data", str(tmp_path / "missing.tsv"), "--out", str(tmp_path / "run")]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    for extra, said in (([], True), (["--no-tune-allocator"], False)):
        run = subprocess.run([sys.executable, "-m", "aiayn", *missing, *extra], env=clean, capture_output=True,
                             text=True)
        assert run.returncode == 1  # the missing corpus, after the allocator line
        assert ("malloc: mmap threshold" in run.stderr) is said, run.stderr
    assert main(missing) == 1  # called from Python (this test process): left alone
    assert "malloc:" not in capsys.readouterr().err
