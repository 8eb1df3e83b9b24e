import subprocess
import sys
import textwrap


def test_backend_imports_without_torch():
    """Every backend module imports in a process where torch cannot be imported at all."""
    code = textwrap.dedent("""
        import importlib, pkgutil, sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None

        sys.meta_path.insert(0, NoTorch())
        import backend
        for mod in pkgutil.walk_packages(backend.__path__, "backend."):
            importlib.import_module(mod.name)
        assert "torch" not in sys.modules
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_backend_imports_without_ray():
    """Every backend module imports where Ray cannot be imported: only `m3 infer --ray` needs the scale extra."""
    code = textwrap.dedent("""
        import importlib, pkgutil, sys

        class NoRay:
            def find_spec(self, name, path=None, target=None):
                if name == "ray" or name.startswith("ray."):
                    raise ImportError("ray is blocked in this test")
                return None

        sys.meta_path.insert(0, NoRay())
        import backend
        for mod in pkgutil.walk_packages(backend.__path__, "backend."):
            importlib.import_module(mod.name)
        import backend.cli, model.cli, model.sweep
        assert "ray" not in sys.modules
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
