"""Importing NeMo-Run without what this tool never uses.

``import nemo_run`` pulls in torch (only to register a YAML representer, guarded by
``except ModuleNotFoundError``) and the Lepton and DGX Cloud SDKs: about 12 s on a 2-core
machine. We hide torch during the import (unless it is loaded already) and stand in for the two
cloud executor modules, which brings it to about 3 s. Everything else is NeMo-Run's own code.
"""

from __future__ import annotations

import importlib.abc
import sys
import types

_STUBBED = {
    "nemo_run.core.execution.lepton": "LeptonExecutor",
    "nemo_run.core.execution.dgxcloud": "DGXCloudExecutor",
}


class _HideTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"{name} hidden while importing nemo_run", name=name)
        return None


def import_nemo_run():
    """Return the ``nemo_run`` module, imported as cheaply as possible."""
    if "nemo_run" in sys.modules:
        return sys.modules["nemo_run"]
    stubs = []
    for module_name, class_name in _STUBBED.items():
        if module_name not in sys.modules:
            stub = types.ModuleType(module_name)
            setattr(stub, class_name, type(class_name, (), {"__module__": module_name}))
            sys.modules[module_name] = stub
            stubs.append(module_name)
    hider = None if "torch" in sys.modules else _HideTorch()
    if hider:
        sys.meta_path.insert(0, hider)
    try:
        import nemo_run
    except Exception:
        # fall back to a plain import if NeMo-Run's layout changed
        for name in stubs:
            sys.modules.pop(name, None)
        if hider:
            sys.meta_path.remove(hider)
            hider = None
        for name in [n for n in sys.modules if n.startswith("nemo_run")]:
            sys.modules.pop(name)
        import nemo_run
    finally:
        if hider and hider in sys.meta_path:
            sys.meta_path.remove(hider)
    return nemo_run
