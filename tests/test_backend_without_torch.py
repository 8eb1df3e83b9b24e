import subprocess
import sys
import textwrap

import pytest

#: The backend imports where this package cannot be imported at all; the extra modules are imported too.
BLOCKED = {
    "torch": "",  # the backend never needs the train extra
    "ray": "import backend.cli, model.cli, model.sweep",  # only `m3 infer --ray` and `m3 sweep --ray` need Ray
}


@pytest.mark.parametrize("package", sorted(BLOCKED))
def test_backend_imports_without(package: str) -> None:
    """Every backend module imports in a process where the package cannot be imported, and never loads it."""
    code = textwrap.dedent(f"""
        import importlib, pkgutil, sys

        class Blocked:
            def find_spec(self, name, path=None, target=None):
                if name == {package!r} or name.startswith({package!r} + "."):
                    raise ImportError({package!r} + " is blocked in this test")
                return None

        sys.meta_path.insert(0, Blocked())
        import backend
        for mod in pkgutil.walk_packages(backend.__path__, "backend."):
            importlib.import_module(mod.name)
        {BLOCKED[package]}
        assert {package!r} not in sys.modules
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
