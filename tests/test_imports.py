"""Every module imports (torchtune's HEAD once shipped a loss module that raised NameError on import)."""

import importlib
import pkgutil

import vlpref


def test_every_module_imports():
    names = [m.name for m in pkgutil.walk_packages(vlpref.__path__, prefix="vlpref.")]
    assert "vlpref.models.vlm" in names and "vlpref.data.store" in names
    for name in names:
        importlib.import_module(name)
