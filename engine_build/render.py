"""Render `model_repository/` templates for one profile into a build folder.

One small renderer for every `config.pbtxt`: `${key}` placeholders are filled from the profile; a value whose
key no template uses is refused (a typo would otherwise be silently ignored); a placeholder left unfilled is only
allowed inside a `string_value`, where the models' parameter reader treats it as unset.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from pathlib import Path

PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
UNSET_PARAMETER = re.compile(r'string_value:\s*"\$\{[A-Za-z0-9_]+\}"')
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "model_repository"
MARKER = ".rendered-by-engine-build"  # a folder holding this may be replaced by the next render


class RenderError(ValueError):
    pass


def template_keys(template_dir: Path = TEMPLATE_DIR) -> set[str]:
    keys: set[str] = set()
    for config in template_dir.glob("*/config.pbtxt"):
        keys.update(PLACEHOLDER.findall(config.read_text(encoding="utf-8")))
    return keys


def fill(text: str, values: Mapping[str, str], source: str = "template") -> str:
    filled = PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)
    leftover = PLACEHOLDER.findall(UNSET_PARAMETER.sub("", filled))
    if leftover:
        raise RenderError(f"{source}: no value for {', '.join(sorted(set(leftover)))}")
    return filled


def _rendered_before(out_dir: Path, template_dir: Path) -> bool:
    """Our marker is there, or the folder holds nothing but the template's model folders (a render from before
    the marker existed), or it is empty."""
    if (out_dir / MARKER).is_file():
        return True
    if not out_dir.is_dir():
        return False
    return {p.name for p in out_dir.iterdir()} <= {p.name for p in template_dir.iterdir()} | {MARKER}


def render_repository(
    out_dir: Path, values: Mapping[str, str], template_dir: Path = TEMPLATE_DIR, force: bool = False
) -> Path:
    """Copy the model repository to `out_dir` with every config filled; returns `out_dir`.

    An existing `out_dir` is replaced only if an earlier render created it (or it is empty); any other folder is
    refused unless `force`, so a mistyped `--out` never deletes someone's data.
    """
    unknown = set(values) - template_keys(template_dir)
    if unknown:
        raise RenderError(f"unknown template keys: {', '.join(sorted(unknown))}")
    if out_dir.exists():
        if not _rendered_before(out_dir, template_dir) and not force:
            raise RenderError(f"{out_dir} exists and was not rendered here; refusing to delete it (use --force)")
        shutil.rmtree(out_dir) if out_dir.is_dir() else out_dir.unlink()
    shutil.copytree(template_dir, out_dir, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (out_dir / MARKER).write_text("rendered by `python -m engine_build render`; safe to replace\n", encoding="utf-8")
    for config in out_dir.glob("*/config.pbtxt"):
        (config.parent / "1").mkdir(exist_ok=True)  # an ensemble's version folder is empty, which git does not keep
        config.write_text(fill(config.read_text(encoding="utf-8"), values, str(config)), encoding="utf-8")
    return out_dir
