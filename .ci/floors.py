"""Print a pip constraint ``name==floor`` for every direct dependency of the package and of its test and ray
extras that declares a lowest version (``>=``): what `make test-oldest` installs."""

import re
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
for spec in project["dependencies"] + [s for extra in ("test", "ray") for s in project["optional-dependencies"][extra]]:
    found = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([^,;\s]+)", spec)
    if found:
        print(f"{found.group(1)}=={found.group(2)}")
