"""`pipelines package`: `spacy package` a built pipeline into an installable wheel. spaCy's own wheel
step needs the `build` package; the package folder it writes is built here with pip (`pip wheel
--no-build-isolation`, so nothing is downloaded)."""
import subprocess
import sys
from pathlib import Path
from typing import Optional

import srsly


def package_pipeline(pipeline_dir: Path, out_dir: Path, name: Optional[str] = None,
                     version: Optional[str] = None) -> Path:
    """Write `out_dir/{lang}_{name}-{version}/` with `spacy package` and its wheel into `out_dir/dist`;
    returns the wheel. The wheel needs spacy-clinalign installed (its factories), nothing else."""
    from spacy.cli.package import package

    pipeline_dir, out_dir = Path(pipeline_dir), Path(out_dir)
    if not (pipeline_dir / "meta.json").is_file():
        raise ValueError(f"{pipeline_dir} is not a saved spaCy pipeline (no meta.json)")
    meta = srsly.read_json(pipeline_dir / "meta.json")
    name, version = name or meta["name"], version or meta["version"]
    out_dir.mkdir(parents=True, exist_ok=True)
    package(pipeline_dir, out_dir, name=name, version=version, create_sdist=False, create_wheel=False,
            force=True, silent=True)
    package_dir = out_dir / f"{meta['lang']}_{name}-{version}"
    if not (package_dir / "setup.py").is_file():
        raise ValueError(f"spacy package did not write {package_dir}/setup.py")
    dist = out_dir / "dist"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(dist), str(package_dir)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ValueError(f"building the wheel of {package_dir} failed:\n{result.stderr[-2000:]}")
    stem = f"{meta['lang']}_{name}".replace("-", "_")
    wheels = sorted(dist.glob(f"{stem}-{version}-*.whl"))
    if not wheels:
        raise ValueError(f"no wheel for {stem} {version} in {dist}")
    return wheels[-1]
