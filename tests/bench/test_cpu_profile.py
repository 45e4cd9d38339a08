"""bench/cpu_profile.py: perf's on-CPU samples as collapsed stacks with Python's frames."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bench import cpu_profile

# Three samples as `perf script` prints them after `perf inject --jit` (shortened paths).
SCRIPT = """\
python 14320  2101.419298:    5025125 cpu-clock:ppp:
\t           96175 _int_free+0x55 (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t           98f5e __GI___libc_free+0x6e (inlined)
\t          2ab0b2 tb_dealloc+0x72 (/root/.pyenv/versions/3.13.0/lib/libpython3.13.so.1.0)
\t              85 py::BaseCache.validate_key:/srv/.venv/lib/python3.13/site-packages/django/core/cache/backends/base.py+0x5 (/tmp/jitted-14304-11068.so)
\t          2bc5f0 py_trampoline_evaluator+0x70 (/root/.pyenv/versions/3.13.0/lib/libpython3.13.so.1.0)
\t              85 py::run:/root/.pyenv/versions/3.13.0/lib/python3.13/asyncio/runners.py+0x5 (/tmp/jitted-14304-2.so)

python 14320  2101.424323:    5025125 cpu-clock:ppp:
\tffffffff8223cb30 do_syscall_64+0x250 ([kernel.kallsyms])
\t           20ce7 __GI___send+0x7 (inlined)
\t              85 py::_WireProtocol.flush:/srv/config/redis_wire.py+0x5 (/tmp/jitted-14304-9.so)
\t              85 py::run:/root/.pyenv/versions/3.13.0/lib/python3.13/asyncio/runners.py+0x5 (/tmp/jitted-14304-2.so)

python 14320  2101.429348:    5025125 cpu-clock:ppp:
\t              85 py::_WireProtocol.flush:/srv/config/redis_wire.py+0x5 (/tmp/jitted-14304-9.so)
\t              85 py::run:/root/.pyenv/versions/3.13.0/lib/python3.13/asyncio/runners.py+0x5 (/tmp/jitted-14304-2.so)
"""


def test_samples_become_python_stacks_root_first_with_the_native_place_on_top() -> None:
    stacks = cpu_profile.collapse(SCRIPT.splitlines())
    assert stacks == {
        "run (asyncio/runners.py);BaseCache.validate_key (django/core/cache/backends/base.py);"
        "[_int_free (libc.so.6)]": 1,
        "run (asyncio/runners.py);_WireProtocol.flush (/srv/config/redis_wire.py);[kernel]": 1,
        "run (asyncio/runners.py);_WireProtocol.flush (/srv/config/redis_wire.py);[python]": 1,
    }


def test_a_running_python_process_is_profiled_with_its_own_functions_named(tmp_path: Path) -> None:
    reason = cpu_profile.unavailable()
    if reason is not None:
        pytest.skip(reason)
    busy = textwrap.dedent(
        """
        import time
        def spin_for_the_profile():
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                sum(range(1000))
        spin_for_the_profile()
        """
    )
    child = subprocess.Popen([sys.executable, "-c", busy], env={**cpu_profile.ENV, "PATH": "/usr/bin:/bin"})
    raw, out = tmp_path / "perf.data", tmp_path / "collapsed.txt"
    try:
        time.sleep(0.5)
        assert cpu_profile.start(child.pid, 1, raw).wait(60) == 0
        # Ended as a server's processes end before their profile is read: CPython writes the
        # last functions' records to its jitdump at exit.
        assert child.wait(30) == 0
    finally:
        child.kill()
    assert cpu_profile.finish(raw, out, [child.pid]) is None
    lines = out.read_text().splitlines()
    samples = sum(int(line.rpartition(" ")[2]) for line in lines)
    in_function = sum(int(line.rpartition(" ")[2]) for line in lines if "spin_for_the_profile (" in line)
    assert samples > 0 and in_function / samples > 0.8, lines[:5]
    # What the profile left behind is gone.
    assert not raw.exists() and not Path(f"/tmp/jit-{child.pid}.dump").exists()
    assert not list(Path("/tmp").glob(f"jitted-{child.pid}-*.so"))
